"""Where the gateway is, how to authenticate and whom to trust: environment, overridable in code.

``COMPUTETHIS_URL`` (default ``http://127.0.0.1:5000``), ``COMPUTETHIS_TOKEN`` and
``COMPUTETHIS_CA`` (a PEM file of the CA that signed an ``https://`` gateway's
certificate; unset means the system's trusted CAs).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

DEFAULT_URL = "http://127.0.0.1:5000"


@dataclass(frozen=True)
class Settings:
    url: str
    token: str | None
    # CA bundle that verifies an https gateway; None: REQUESTS_CA_BUNDLE or
    # CURL_CA_BUNDLE if set, else the system's CAs (see transport.new_pool).
    ca: str | None = None


_overrides: dict[str, str | None] = {}


def configure(url: str | None = None, token: str | None = None, ca: str | None = None) -> None:
    """Override ``COMPUTETHIS_URL``, ``COMPUTETHIS_TOKEN`` or ``COMPUTETHIS_CA`` in this process."""
    if url is not None:
        _overrides["url"] = url
    if token is not None:
        _overrides["token"] = token
    if ca is not None:
        _overrides["ca"] = ca


def settings() -> Settings:
    url = _overrides.get("url") or os.environ.get("COMPUTETHIS_URL") or DEFAULT_URL
    token = _overrides.get("token") or os.environ.get("COMPUTETHIS_TOKEN")
    ca = _overrides.get("ca") or os.environ.get("COMPUTETHIS_CA")
    return Settings(url.rstrip("/"), token, ca)
