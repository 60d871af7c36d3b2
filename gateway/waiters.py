"""Wake HTTP requests that long-poll a job when its outcome is recorded."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager


class Notified:
    """The ids notified to one :meth:`Waiters.watch_any` block and not yet taken."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._ids: list[str] = []
        self.closed = False  # the gateway is stopping: stop waiting

    def add(self, job_id: str) -> None:
        with self._condition:
            self._ids.append(job_id)
            self._condition.notify()

    def close(self) -> None:
        with self._condition:
            self.closed = True
            self._condition.notify_all()

    def take(self, timeout: float) -> list[str]:
        """The ids notified since the last call, waiting up to ``timeout`` s for one
        (not at all once closed)."""
        with self._condition:
            if not self._ids and not self.closed:
                self._condition.wait(timeout)
            ids, self._ids = self._ids, []
        return ids


class Waiters:
    """Per-job events that the recorder sets and long-polling requests wait on."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: dict[str, tuple[threading.Event, int]] = {}
        self._any_of: dict[str, set[Notified]] = {}  # see watch_any
        self._closed = False

    def close(self) -> None:
        """Wake every waiting request, and every later one at once: the gateway is
        stopping, and its HTTP server waits for the requests in flight to end."""
        with self._lock:
            self._closed = True
            for event, _ in self._events.values():
                event.set()
            for watchers in self._any_of.values():
                for notified in watchers:
                    notified.close()

    @contextmanager
    def watch(self, job_id: str) -> Iterator[threading.Event]:
        """Register interest in ``job_id`` *before* checking its status, then wait."""
        with self._lock:
            event, count = self._events.get(job_id, (threading.Event(), 0))
            self._events[job_id] = (event, count + 1)
            if self._closed:
                event.set()
        try:
            yield event
        finally:
            with self._lock:
                event, count = self._events[job_id]
                if count == 1:
                    del self._events[job_id]
                else:
                    self._events[job_id] = (event, count - 1)

    @contextmanager
    def watch_any(self, job_ids: Iterable[str]) -> Iterator[Notified]:
        """Collect which of ``job_ids`` are notified from now on, until the block ends.

        As with :meth:`watch`, register first, then check the jobs: an outcome
        recorded in between is in the collection.
        """
        ids = list(dict.fromkeys(job_ids))
        notified = Notified()
        with self._lock:
            for job_id in ids:
                self._any_of.setdefault(job_id, set()).add(notified)
            if self._closed:
                notified.close()
        try:
            yield notified
        finally:
            with self._lock:
                for job_id in ids:
                    watchers = self._any_of.get(job_id)
                    if watchers is not None:
                        watchers.discard(notified)
                        if not watchers:
                            del self._any_of[job_id]

    def notify(self, job_ids: list[str] | tuple[str, ...]) -> None:
        with self._lock:
            for job_id in job_ids:
                entry = self._events.get(job_id)
                if entry is not None:
                    entry[0].set()
                for notified in self._any_of.get(job_id, ()):
                    notified.add(job_id)
