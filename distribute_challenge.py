"""The distribute challenge's import path: ``from distribute_challenge import compute_this``."""

from client_sdk import compute_this

__all__ = ["compute_this"]
