"""Wake HTTP requests that long-poll a job when its outcome is recorded."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class Waiters:
    """Per-job events that the recorder sets and long-polling requests wait on."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: dict[str, tuple[threading.Event, int]] = {}

    @contextmanager
    def watch(self, job_id: str) -> Iterator[threading.Event]:
        """Register interest in ``job_id`` *before* checking its status, then wait."""
        with self._lock:
            event, count = self._events.get(job_id, (threading.Event(), 0))
            self._events[job_id] = (event, count + 1)
        try:
            yield event
        finally:
            with self._lock:
                event, count = self._events[job_id]
                if count == 1:
                    del self._events[job_id]
                else:
                    self._events[job_id] = (event, count - 1)

    def notify(self, job_ids: list[str] | tuple[str, ...]) -> None:
        with self._lock:
            for job_id in job_ids:
                entry = self._events.get(job_id)
                if entry is not None:
                    entry[0].set()
