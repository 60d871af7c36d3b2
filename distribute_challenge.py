"""The distribute challenge's import path.

Level 1: ``from distribute_challenge import compute_this``. Level 2: ``from
distribute_challenge import artifacts, NpuModel, XgboostModel, PytorchModel`` (see
docs/models.md).
"""

from client_sdk import compute_this
from client_sdk.models import (
    NpuModel,
    PytorchModel,
    SklearnModel,
    XgboostModel,
    artifacts,
)

__all__ = [
    "NpuModel",
    "PytorchModel",
    "SklearnModel",
    "XgboostModel",
    "artifacts",
    "compute_this",
]
