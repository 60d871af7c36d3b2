"""Serve the gateway app with waitress and run it until a signal arrives."""

from __future__ import annotations

import logging
import os
import secrets
import signal
from collections.abc import Callable
from pathlib import Path
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
    *,
    host: str,
    port: int,
    save_dir: str | Path,
    token: str | None,
    max_body: int,
    threads: int = DEFAULT_THREADS,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve the gateway in the foreground until SIGINT/SIGTERM, then stop cleanly."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    token, generated = resolve_token(token)
    config = GatewayConfig(save_dir=Path(save_dir), token=token, max_body=max_body)
    app = create_app(config, scheduler)
    state: Gateway = app.extensions["computethis"]
    server = create_server(
        app,
        host=host,
        port=port,
        threads=threads,
        max_request_body_size=max_body + (1 << 20),
        ident="computethis",
    )
    url = f"http://{host}:{server.effective_port}"
    state.dispatcher.start()
    _raise_keyboard_interrupt_on(signal.SIGTERM)
    print(f"computethis gateway at {url}", flush=True)
    print(
        f"token: {token}" + ("  (generated; pass --token to keep one)" if generated else ""),
        flush=True,
    )
    if on_ready is not None:
        on_ready(url)
    try:
        server.run()  # returns on KeyboardInterrupt
    finally:
        log.info("stopping gateway")
        server.close()
        state.dispatcher.close()
        state.store.close()


def _raise_keyboard_interrupt_on(sig: signal.Signals) -> None:
    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(sig, handler)
