"""Wake the HTTP requests that wait for jobs when the jobs' outcomes are recorded.

A request that waits (a long-poll of one job, a stream of several) opens a
:class:`Mailbox` on the ids it waits for with :meth:`Waiters.watch`, *then* checks the
jobs' status, then takes from the mailbox: an outcome recorded between the check and
the wait is already in the mailbox, so it is never missed. The dispatcher calls
:meth:`Waiters.notify` with the ids of the outcomes it recorded.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager


class Mailbox:
    """The ids of one :meth:`Waiters.watch` block notified and not yet taken."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._ids: list[str] = []
        self._listener: Callable[[], None] | None = None
        self.closed = False  # the gateway is stopping: stop waiting

    def put(self, job_id: str) -> None:
        """Leave ``job_id`` for :meth:`take`, waking a waiting take (or the listener)."""
        with self._condition:
            self._ids.append(job_id)
            self._condition.notify()
            listener, self._listener = self._listener, None
        if listener is not None:
            listener()

    def close(self) -> None:
        """Wake a waiting take now, and make every later take return at once."""
        with self._condition:
            self.closed = True
            self._condition.notify_all()
            listener, self._listener = self._listener, None
        if listener is not None:
            listener()

    def take(self, timeout: float) -> list[str]:
        """The ids notified since the last call, in the order they were notified,
        waiting up to ``timeout`` s for one (not at all once closed)."""
        with self._condition:
            if not self._ids and not self.closed:
                self._condition.wait(timeout)
            ids, self._ids = self._ids, []
        return ids

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for an id (taking none); whether one is here or the
        mailbox closed."""
        with self._condition:
            if not self._ids and not self.closed:
                self._condition.wait(timeout)
            return bool(self._ids) or self.closed

    def has_mail(self) -> bool:
        """Whether an id is waiting to be taken, or the mailbox closed."""
        with self._condition:
            return bool(self._ids) or self.closed

    def on_mail(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` once, on whichever thread puts the next id or closes the
        mailbox (now, on this one, if an id is already here): a wait with no thread
        (gateway.parking). It replaces the listener set before, if that one has not
        been called."""
        with self._condition:
            ready = bool(self._ids) or self.closed
            self._listener = None if ready else listener
        if ready:
            listener()


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
