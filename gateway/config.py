"""Gateway settings."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DEFAULT_MAX_BODY = 64 * 1024 * 1024
DEFAULT_RESULT_TTL = 7 * 24 * 3600.0
DEFAULT_MAX_QUEUED = 10_000
DEFAULT_MAX_BUNDLE = 1 << 30  # bytes of one uploaded folder (its tar)
DEFAULT_MAX_OUTPUTS = 1 << 30  # bytes of the files one folder job keeps
DEFAULT_HEADER_TIMEOUT = 5.0  # seconds for a request's headers (and small body) to arrive
DEFAULT_MAX_CONNECTIONS_PER_ADDRESS = 1024  # open connections per client address
SMALL_BODY = 64 * 1024  # bodies up to this size must arrive within the header timeout


@dataclass
class GatewayConfig:
    """Everything the gateway process needs to know."""

    save_dir: Path
    token: str
    max_body: int = DEFAULT_MAX_BODY
    max_wait: float = 300.0
    durable: bool = True
    result_ttl: float = DEFAULT_RESULT_TTL  # seconds a done job's result is kept
    max_queued: int = DEFAULT_MAX_QUEUED  # queued + running jobs per tenant
    header_timeout: float = DEFAULT_HEADER_TIMEOUT
    max_connections_per_address: int = DEFAULT_MAX_CONNECTIONS_PER_ADDRESS
    max_bundle: int = DEFAULT_MAX_BUNDLE
    max_outputs: int = DEFAULT_MAX_OUTPUTS


@dataclass(frozen=True)
class TlsFiles:
    """The PEM files the gateway serves HTTPS with."""

    certfile: str
    keyfile: str | None = None  # None: the key is in certfile
