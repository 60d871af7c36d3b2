"""Where the gateway is and how to authenticate: environment, overridable in code."""

from __future__ import annotations

import os
from dataclasses import dataclass

DEFAULT_URL = "http://127.0.0.1:5000"


@dataclass(frozen=True)
class Settings:
    url: str
    token: str | None


_overrides: dict[str, str | None] = {}


def configure(url: str | None = None, token: str | None = None) -> None:
    """Override ``COMPUTETHIS_URL`` / ``COMPUTETHIS_TOKEN`` for this process."""
    if url is not None:
        _overrides["url"] = url
    if token is not None:
        _overrides["token"] = token


def settings() -> Settings:
    url = _overrides.get("url") or os.environ.get("COMPUTETHIS_URL") or DEFAULT_URL
    token = _overrides.get("token") or os.environ.get("COMPUTETHIS_TOKEN")
    return Settings(url.rstrip("/"), token)
