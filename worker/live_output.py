"""A running job's output: its end kept for the job's stored logs, and sent to the gateway
as it is printed, for ``logs?follow``.

Text written is sent in batches, at most every :data:`SEND_EVERY` seconds, as Dask events
on :data:`wire.envelope.LOGS_TOPIC` (``{"job", "offset", "text"}``, then one with
``"end": true`` if anything was sent). A job that prints nothing sends no event.
"""

from __future__ import annotations

import io
import threading
from collections import deque
from typing import Any

from wire.envelope import LOGS_TOPIC

SEND_EVERY = 0.2  # seconds between two batches of a job's output
MAX_LOGS = 1 << 20  # bytes of a job's stdout + stderr kept (the last ones)


class OutputTail(io.TextIOBase):
    """A text stream that keeps only the last ``limit`` bytes written to it."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._parts: deque[str] = deque()
        self._size = 0
        self._dropped = False

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._parts.append(text)
        self._size += len(text)
        while self._size > self.limit:
            excess = self._size - self.limit
            oldest = self._parts[0]
            if len(oldest) <= excess:
                self._parts.popleft()
                self._size -= len(oldest)
            else:
                self._parts[0] = oldest[excess:]
                self._size -= excess
            self._dropped = True
        return len(text)

    def encoded(self) -> bytes:
        data = "".join(self._parts).encode("utf-8", "replace")
        if len(data) > self.limit:
            data, self._dropped = data[-self.limit :], True
        if self._dropped:
            data = b"[earlier output cut]\n" + data
        return data


class LiveOutput(io.TextIOBase):
    """A writable text stream for one job's output (stdout and stderr together)."""

    def __init__(self, job_id: str, worker: Any | None, keep: int = MAX_LOGS) -> None:
        self.job_id = job_id
        self.tail = OutputTail(keep)
        self._worker = worker  # the Dask worker, None outside one (nothing is sent)
        self._lock = threading.Lock()
        self._pending: list[str] = []
        self._scheduled = False
        self._ended = False
        self._sent = 0  # characters sent so far

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        """Keep ``text`` in the tail and send it with the next batch."""
        self.tail.write(text)
        if self._worker is None or not text:
            return len(text)
        with self._lock:
            if self._ended:
                return len(text)
            self._pending.append(text)
            schedule, self._scheduled = not self._scheduled, True
        if schedule:
            loop = self._worker.loop
            loop.add_callback(lambda: loop.call_later(SEND_EVERY, self._send_batch))
        return len(text)

    def end(self) -> None:
        """The job is done: send what is left, then the end mark (if anything was sent)."""
        if self._worker is None:
            return
        with self._lock:
            self._ended = True
            message = self._take()
            if not self._sent:
                return
            end = {"job": self.job_id, "offset": self._sent, "text": "", "end": True}
        self._worker.loop.add_callback(self._log, [message, end])

    def encoded(self) -> bytes:
        """The kept end of the output (what the job's stored logs are)."""
        return self.tail.encoded()

    def _send_batch(self) -> None:  # on the worker's event loop
        with self._lock:
            self._scheduled = False
            message = None if self._ended else self._take()
        self._log([message])

    def _take(self) -> dict[str, Any] | None:
        """The pending text as one message (under the lock), or None."""
        if not self._pending:
            return None
        text = "".join(self._pending)
        self._pending.clear()
        message = {"job": self.job_id, "offset": self._sent, "text": text}
        self._sent += len(text)
        return message

    def _log(self, messages: list[dict[str, Any] | None]) -> None:  # on the event loop
        for message in messages:
            if message is not None:
                self._worker.log_event(LOGS_TOPIC, message)
