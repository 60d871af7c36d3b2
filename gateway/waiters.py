"""Wake the HTTP requests that wait for jobs when the jobs' outcomes are recorded.

A request that waits (a long-poll of one job, a stream of several) opens a
:class:`Mailbox` on the ids it waits for with :meth:`Waiters.watch`, *then* checks the
jobs' status, then takes from the mailbox: an outcome recorded between the check and
the wait is already in the mailbox, so it is never missed. The dispatcher calls
:meth:`Waiters.notify` with the ids of the outcomes it recorded.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager


class Mailbox:
    """The ids of one :meth:`Waiters.watch` block notified and not yet taken."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._ids: list[str] = []
        self.closed = False  # the gateway is stopping: stop waiting

    def put(self, job_id: str) -> None:
        """Leave ``job_id`` for :meth:`take`, waking a waiting take."""
        with self._condition:
            self._ids.append(job_id)
            self._condition.notify()

    def close(self) -> None:
        """Wake a waiting take now, and make every later take return at once."""
        with self._condition:
            self.closed = True
            self._condition.notify_all()

    def take(self, timeout: float) -> list[str]:
        """The ids notified since the last call, in the order they were notified,
        waiting up to ``timeout`` s for one (not at all once closed)."""
        with self._condition:
            if not self._ids and not self.closed:
                self._condition.wait(timeout)
            ids, self._ids = self._ids, []
        return ids


class Waiters:
    """The open mailboxes, by the job ids they watch."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._mailboxes: dict[str, set[Mailbox]] = {}
        self._closed = False

    def close(self) -> None:
        """Wake every waiting request, and every later one at once: the gateway is
        stopping, and its HTTP server waits for the requests in flight to end."""
        with self._lock:
            self._closed = True
            for mailboxes in self._mailboxes.values():
                for mailbox in mailboxes:
                    mailbox.close()

    @contextmanager
    def watch(self, job_ids: Iterable[str]) -> Iterator[Mailbox]:
        """A mailbox that collects which of ``job_ids`` are notified from now on, until
        the block ends. Open it *before* checking the jobs' status (see the module)."""
        if isinstance(job_ids, str):
            raise TypeError("watch() takes a collection of job ids, not one id")
        ids = list(dict.fromkeys(job_ids))
        mailbox = Mailbox()
        with self._lock:
            for job_id in ids:
                self._mailboxes.setdefault(job_id, set()).add(mailbox)
            if self._closed:
                mailbox.close()
        try:
            yield mailbox
        finally:
            with self._lock:
                for job_id in ids:
                    mailboxes = self._mailboxes.get(job_id)
                    if mailboxes is not None:
                        mailboxes.discard(mailbox)
                        if not mailboxes:
                            del self._mailboxes[job_id]

    def notify(self, job_ids: list[str] | tuple[str, ...]) -> None:
        """Put each of ``job_ids`` in the mailboxes watching it (none: forgotten)."""
        with self._lock:
            for job_id in job_ids:
                for mailbox in self._mailboxes.get(job_id, ()):
                    mailbox.put(job_id)

    def watched(self) -> set[str]:
        """The job ids some open mailbox watches."""
        with self._lock:
            return set(self._mailboxes)
