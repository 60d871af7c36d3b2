"""Running jobs' output as it is printed, for ``GET /jobs/<id>/logs?follow=1``.

Workers send a running job's output in chunks, as Dask events on
:data:`wire.envelope.LOGS_TOPIC` (``{"job", "offset", "text"}``, and a last one with
``"end": true``). The gateway keeps the end of each job's output here (at most
:data:`KEEP_PER_JOB` characters, and :data:`KEEP_TOTAL` for all jobs, the least
recently written dropped first), and wakes the requests following it. Nothing here is
durable: once a job is done, its stored logs are the record.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from gateway.waiters import Mailbox, Waiters

KEEP_PER_JOB = 1 << 20  # characters of one job's latest output
KEEP_TOTAL = 64 << 20  # characters of every job's, together


@dataclass
class Output:
    """One job's latest output: ``text`` is what came after ``start`` characters."""

    start: int = 0
    text: str = ""
    ended: bool = False

    @property
    def end(self) -> int:
        """Characters received so far."""
        return self.start + len(self.text)


class LiveLogs:
    """The latest output of running jobs, and the requests following them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._outputs: OrderedDict[str, Output] = OrderedDict()
        self._total = 0
        self._waiters = Waiters()

    def on_event(self, event: tuple[float, dict[str, Any]]) -> None:
        """Dask's handler of LOGS_TOPIC events (timestamp, event)."""
        message = event[1]
        job_id = message.get("job")
        if not isinstance(job_id, str):
            return
        self.add(job_id, int(message.get("offset") or 0), str(message.get("text") or ""))
        if message.get("end"):
            self.end(job_id)

    def add(self, job_id: str, offset: int, text: str) -> None:
        """Output of ``job_id`` that starts ``offset`` characters into it."""
        with self._lock:
            output = self._outputs.pop(job_id, None) or Output(start=offset)
            self._outputs[job_id] = output  # now the most recently written
            if offset > output.end:  # a gap (chunks dropped on the way): start afresh
                self._total -= len(output.text)
                output.start, output.text = offset, ""
            text = text[output.end - offset :]  # a repeat of what is here already: skip
            output.text += text
            self._total += len(text)
            if len(output.text) > KEEP_PER_JOB:
                cut = len(output.text) - KEEP_PER_JOB
                output.start, output.text = output.start + cut, output.text[cut:]
                self._total -= cut
            while self._total > KEEP_TOTAL and len(self._outputs) > 1:
                _, oldest = self._outputs.popitem(last=False)
                self._total -= len(oldest.text)
        self._waiters.notify([job_id])

    def end(self, job_id: str) -> None:
        """The job printed its last output."""
        with self._lock:
            output = self._outputs.get(job_id)
            if output is not None:
                output.ended = True
        self._waiters.notify([job_id])

    def jobs_ended(self, job_ids: list[str]) -> None:
        """Wake the followers of jobs whose outcome was recorded."""
        self._waiters.notify(job_ids)

    def read(self, job_id: str, position: int) -> tuple[str, int, bool]:
        """``(text, next position, ended)``: the output of ``job_id`` from ``position``
        characters in (or from the oldest kept, if that is later)."""
        with self._lock:
            output = self._outputs.get(job_id)
            if output is None:
                return "", position, False
            start = max(position, output.start)
            return output.text[start - output.start :], output.end, output.ended

    @contextmanager
    def watch(self, job_id: str) -> Iterator[Mailbox]:
        """A mailbox that gets ``job_id`` each time it prints (see :class:`Waiters`)."""
        with self._waiters.watch([job_id]) as mailbox:
            yield mailbox

    def close(self) -> None:
        """Wake every follower: the gateway is stopping."""
        self._waiters.close()
