"""Releasing recorded jobs' keys on the scheduler, together.

The keep-alive plugin holds every job's task until the gateway releases its key. Keys of
recorded outcomes are collected for RELEASE_DELAY and released in one RPC, sent from a
thread of its own: one RPC per RELEASE_DELAY instead of one per recorded batch (under
load, nearly one per job), and recording never waits for it.
"""

from __future__ import annotations

import contextlib
import time
from concurrent.futures import ThreadPoolExecutor

from gateway.dask.link import DaskLink, dask_key

RELEASE_DELAY = 0.1  # seconds recorded keys wait to be released together (one RPC)
CLOSE_RELEASE_TIMEOUT = 2.0  # seconds the last release may take when the gateway stops


class Releases:
    """Keys waiting to be released; used by the recorder thread only (and at close)."""

    def __init__(self, link: DaskLink) -> None:
        self._link = link
        self._keys: list[str] = []  # recorded keys the scheduler still holds for us
        self._due_at = 0.0  # monotonic time to release them
        self._sender = ThreadPoolExecutor(1, thread_name_prefix="computethis-release")

    def add(self, job_ids: list[str]) -> None:
        """Release these recorded jobs' keys within RELEASE_DELAY."""
        if not job_ids:
            return
        if not self._keys:
            self._due_at = time.monotonic() + RELEASE_DELAY
        self._keys += [dask_key(job_id) for job_id in job_ids]

    def seconds_to_next(self) -> float | None:
        """Seconds until the waiting keys are due (0 if now), None if none wait."""
        if not self._keys:
            return None
        return max(0.0, self._due_at - time.monotonic())

    def send_due(self) -> None:
        """Send the waiting keys' release, off this thread, once they are due."""
        if self._keys and time.monotonic() >= self._due_at:
            keys, self._keys = self._keys, []
            self._sender.submit(self._link.release, keys)

    def close(self) -> None:
        """Release the waiting keys now, if the scheduler answers soon, and stop."""
        keys, self._keys = self._keys, []
        if keys:  # recorded outcomes: let the scheduler forget them
            with contextlib.suppress(Exception):
                self._sender.submit(self._link.release, keys).result(timeout=CLOSE_RELEASE_TIMEOUT)
        self._sender.shutdown(wait=False, cancel_futures=True)
