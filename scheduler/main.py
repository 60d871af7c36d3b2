"""``computethis scheduler``: a Dask scheduler with computethis's settings."""

from __future__ import annotations

import asyncio
import errno
import signal
import sys

from distributed import Scheduler, Security

from scheduler.config import apply_config


async def run_scheduler(host: str, port: int, allowed_failures: int | None = None) -> None:
    """Serve a scheduler until SIGINT or SIGTERM."""
    apply_config(allowed_failures)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    # Security() reads Dask's config (DASK_DISTRIBUTED__COMM__TLS__*). Passed explicitly:
    # a Scheduler given no security object reads it for its connections but still picks
    # tcp:// for its listener, which then refuses to start when encryption is required.
    security = Security()
    async with Scheduler(host=host, port=port, dashboard=False, security=security) as scheduler:
        print(f"computethis scheduler at {scheduler.address}", flush=True)
        finished = asyncio.ensure_future(scheduler.finished())
        stopped = asyncio.ensure_future(stop.wait())
        await asyncio.wait({finished, stopped}, return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()


def main(host: str, port: int, allowed_failures: int | None = None) -> None:
    """``computethis scheduler``: serve until a signal; exit with a message if the port is taken."""
    try:
        asyncio.run(run_scheduler(host, port, allowed_failures))
    except RuntimeError as exc:  # Dask's "Scheduler failed to start.", from the OSError
        cause = exc.__cause__
        if isinstance(cause, OSError) and cause.errno == errno.EADDRINUSE:
            sys.exit(
                f"computethis scheduler: cannot listen on {host}:{port}: the port is already "
                "in use (another scheduler?). Stop what listens there or pass another --port."
            )
        raise
