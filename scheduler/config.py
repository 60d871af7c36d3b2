"""Dask settings every computethis scheduler runs with."""

from __future__ import annotations

import os

DEFAULT_ALLOWED_FAILURES = 3

SCHEDULER_CONFIG: dict[str, object] = {
    # One task per worker thread, never more: with one thread per worker a worker
    # holds exactly the job it runs, and idle workers get the next job.
    "distributed.scheduler.worker-saturation": 1.0,
    # A job whose worker dies this many times fails instead of killing more workers.
    "distributed.scheduler.allowed-failures": DEFAULT_ALLOWED_FAILURES,
    # A worker host that silently drops off the network is declared dead (and its
    # job re-run elsewhere) after this long without a heartbeat (Dask's default: 5 min).
    "distributed.scheduler.worker-ttl": "30s",
}


def env_name(key: str) -> str:
    """The DASK_* environment variable Dask reads for a config key."""
    return "DASK_" + key.upper().replace(".", "__").replace("-", "_")


def set_defaults(settings: dict[str, object]) -> None:
    """Set Dask config values, except those a DASK_* environment variable already sets."""
    import dask  # here, not at the top: the CLI reads this module's default without Dask

    dask.config.set(
        {key: value for key, value in settings.items() if env_name(key) not in os.environ}
    )


def apply_config(allowed_failures: int | None = None) -> None:
    """Set computethis's scheduler settings, unless a DASK_* variable already sets one."""
    set_defaults(SCHEDULER_CONFIG)
    if allowed_failures is not None:
        import dask

        dask.config.set({"distributed.scheduler.allowed-failures": allowed_failures})
