"""Where a gateway is, how to authenticate and whom to trust: a :class:`Settings`.

A setting not given in code comes from the environment: ``COMPUTETHIS_URL`` (default
``http://127.0.0.1:5000``), ``COMPUTETHIS_TOKEN`` and ``COMPUTETHIS_CA`` (a PEM file of
the CA that signed an ``https://`` gateway's certificate; unset means the system's
trusted CAs).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

DEFAULT_URL = "http://127.0.0.1:5000"


@dataclass(frozen=True)
class Settings:
    """One gateway's address, API token and CA bundle."""

    url: str
    token: str | None = field(repr=False)
    # CA bundle that verifies an https gateway; None: REQUESTS_CA_BUNDLE or
    # CURL_CA_BUNDLE if set, else the system's CAs (see transport.new_pool).
    ca: str | None = None

    @classmethod
    def from_environment(
        cls, url: str | None = None, token: str | None = None, ca: str | None = None
    ) -> Settings:
        """The given settings; each one not given (or empty) from ``COMPUTETHIS_URL``,
        ``COMPUTETHIS_TOKEN`` or ``COMPUTETHIS_CA``, read now."""
        url = url or os.environ.get("COMPUTETHIS_URL") or DEFAULT_URL
        token = token or os.environ.get("COMPUTETHIS_TOKEN")
        ca = ca or os.environ.get("COMPUTETHIS_CA")
        return cls(url.rstrip("/"), token, ca)
