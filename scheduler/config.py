"""Dask settings every computethis scheduler runs with."""

from __future__ import annotations

import dask

SCHEDULER_CONFIG: dict[str, object] = {
    # One task per worker thread, never more: with one thread per worker a worker
    # holds exactly the job it runs, and idle workers get the next job.
    "distributed.scheduler.worker-saturation": 1.0,
    # A job whose worker dies this many times fails instead of killing more workers.
    "distributed.scheduler.allowed-failures": 3,
}


def apply_config() -> None:
    """Set computethis's scheduler settings in this process's Dask config."""
    dask.config.set(SCHEDULER_CONFIG)
