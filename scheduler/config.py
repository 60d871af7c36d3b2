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


# How long Dask's batched streams in computethis's processes wait between two sends.
# Dask hard-codes 10 ms (client to scheduler), 5 ms (scheduler to each worker) and 2 ms
# (worker to scheduler, scheduler to each client): a message sent within that window of
# the previous one waits for the window to pass, which a sequence of small jobs always
# hits. "0ms" sends as soon as the event loop is free (messages still group while a
# write is in progress); "dask" leaves Dask's intervals. See docs/cli.md, "Dask settings".
SEND_INTERVAL_KEY = "computethis.batched-send-interval"
DEFAULT_SEND_INTERVAL = "0ms"


def send_interval() -> float | None:
    """Seconds between batched sends (the ``computethis.batched-send-interval`` Dask
    setting, e.g. ``DASK_COMPUTETHIS__BATCHED_SEND_INTERVAL=2ms``), or None for Dask's."""
    import dask
    from dask.utils import parse_timedelta

    value = dask.config.get(SEND_INTERVAL_KEY, default=DEFAULT_SEND_INTERVAL)
    if str(value).strip().lower() == "dask":
        return None
    return parse_timedelta(value, default="ms")


def shorten_stream(stream: object, interval: float | None) -> None:
    """Make a Dask ``BatchedSend`` wait at most ``interval`` seconds between sends
    (None: leave it). Dask reads the attribute before each send."""
    if interval is not None and stream is not None and getattr(stream, "interval", 0) > interval:
        stream.interval = interval  # type: ignore[attr-defined]
