"""Serve the gateway app with waitress and run it until a signal arrives."""

from __future__ import annotations

import logging
import os
import secrets
import signal
from typing import Any

from waitress import create_server

from gateway.app import create_app
from gateway.config import GatewayConfig
from gateway.context import Gateway

log = logging.getLogger("computethis")

# Long-polls hold a thread each while they wait, so keep plenty.
DEFAULT_THREADS = 64
TOKEN_ENV = "COMPUTETHIS_TOKEN"


def resolve_token(token: str | None) -> tuple[str, bool]:
    """``--token``, else ``$COMPUTETHIS_TOKEN``, else a new random one (generated=True)."""
    if token:
        return token, False
    if os.environ.get(TOKEN_ENV):
        return os.environ[TOKEN_ENV], False
    return secrets.token_urlsafe(24), True


def run_gateway(
    scheduler: Any,
    config: GatewayConfig,
    *,
    host: str,
    port: int,
    token_generated: bool = False,
    threads: int = DEFAULT_THREADS,
) -> None:
    """Serve the gateway in the foreground until SIGINT/SIGTERM, then stop cleanly."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    app = create_app(config, scheduler)
    state: Gateway = app.extensions["computethis"]
    server = create_server(
        app,
        host=host,
        port=port,
        threads=threads,
        max_request_body_size=config.max_body + (1 << 20),
        ident="computethis",
    )
    url = f"http://{host}:{server.effective_port}"
    state.start()
    _raise_keyboard_interrupt_on(signal.SIGTERM)
    note = "  (generated; pass --token or set COMPUTETHIS_TOKEN to keep one)"
    print(f"computethis gateway at {url}", flush=True)
    print(f"token: {config.token}" + (note if token_generated else ""), flush=True)
    try:
        server.run()  # returns on KeyboardInterrupt
    finally:
        log.info("stopping gateway")
        server.close()
        state.close()


def _raise_keyboard_interrupt_on(sig: signal.Signals) -> None:
    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(sig, handler)
