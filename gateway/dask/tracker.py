"""Which jobs in flight this gateway follows on the current scheduler.

A job the tracker knows is in one of these states (a job it does not know is
*untracked*: never sent, done, cancelled, or sent to a scheduler or client now gone):

- *tracked*: sent to the current scheduler, or found on it; its events are ours.
- *missing*: tracked, but the last reconciliation did not find its task on the
  scheduler (maybe only just submitted). Not found twice in a row, it is lost.
- *fetching*: a fetch thread is getting its outcome from Dask. This flag is
  independent of the others: a fetch started stays until it ends (:meth:`end_fetching`),
  even if its job is untracked meanwhile (cancelled, or the client replaced).

Every transition is one method taking the tracker's lock, so no set is ever read and
written from two threads without it; the tracker does no I/O itself (a reconciliation
passes the store read that must happen under the lock as a callable).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

J = TypeVar("J")


@dataclass
class Reconciled(Generic[J]):
    """What a reconciliation found, sorted by what to do with each job."""

    attached: list[J] = field(default_factory=list)  # live, untracked till now: tracked
    fetch: list[str] = field(default_factory=list)  # outcome ready and unheard of: fetch it
    lost: list[str] = field(default_factory=list)  # unknown to the scheduler: resubmit it


class JobTracker:
    """The tracked, missing and fetching jobs, behind one lock; see the module docstring."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tracked: set[str] = set()
        self._missing: set[str] = set()  # always a subset of _tracked
        self._fetching: set[str] = set()

    # -- questions ----------------------------------------------------------------

    def is_tracked(self, job_id: str) -> bool:
        """Whether ``job_id`` was sent to (or found on) the current scheduler."""
        with self._lock:
            return job_id in self._tracked

    def is_fetching(self, job_id: str) -> bool:
        """Whether a fetch thread is getting ``job_id``'s outcome."""
        with self._lock:
            return job_id in self._fetching

    def is_missing(self, job_id: str) -> bool:
        """Whether the last reconciliation did not find tracked ``job_id``."""
        with self._lock:
            return job_id in self._missing

    def any_tracked(self) -> bool:
        """Whether any job is tracked (then the periodic sweep has work to do)."""
        with self._lock:
            return bool(self._tracked)

    # -- transitions --------------------------------------------------------------

    def track(self, job_ids: Iterable[str]) -> list[str]:
        """untracked -> tracked, for each of ``job_ids`` not tracked yet.

        Returns those (in order, each once): the jobs the caller now sends to Dask.
        A job is tracked before it is sent: a quick job's outcome event may arrive
        before the sending thread runs again.
        """
        newly: list[str] = []
        with self._lock:
            for job_id in job_ids:
                if job_id not in self._tracked:
                    self._tracked.add(job_id)
                    newly.append(job_id)
        return newly

    def untrack(self, job_ids: Iterable[str]) -> list[str]:
        """tracked or missing -> untracked: the job is done, cancelled, or could not be
        sent. Returns the ids that were tracked. A fetch in progress is not stopped."""
        was: list[str] = []
        with self._lock:
            for job_id in job_ids:
                if job_id in self._tracked:
                    self._tracked.discard(job_id)
                    self._missing.discard(job_id)
                    was.append(job_id)
        return was

    def untrack_all(self) -> None:
        """Every job -> untracked: a new client or scheduler (the earlier scheduler's
        tasks died with it; the reconciliation that follows finds the live ones again).
        Fetches in progress go on."""
        with self._lock:
            self._tracked.clear()
            self._missing.clear()

    def start_fetching(self, job_id: str) -> bool:
        """-> fetching, unless a fetch of ``job_id`` is already in progress (False)."""
        with self._lock:
            if job_id in self._fetching:
                return False
            self._fetching.add(job_id)
            return True

    def end_fetching(self, job_ids: Iterable[str], settled: Iterable[str]) -> None:
        """A fetch of ``job_ids`` ended: none is fetching any more, and the ``settled``
        ones (done, or gone from the scheduler) are untracked. The others (not done in
        time) stay tracked: their outcome event, or the next sweep, fetches them again."""
        with self._lock:
            self._fetching.difference_update(job_ids)
            for job_id in settled:
                self._tracked.discard(job_id)
                self._missing.discard(job_id)

    def reconcile(
        self,
        *,
        ready: Sequence[str],
        live: Sequence[str],
        unknown: Sequence[str],
        reread: Callable[[str], J | None],
    ) -> Reconciled[J]:
        """Match the store's active jobs with what the scheduler says of their tasks.

        ``ready``: outcome in memory or erred -> tracked and fetching, unless already
        fetching. ``live``: still to produce an outcome -> tracked if untracked and
        ``reread(job_id)`` (the job as stored now, called under the lock) is not None:
        a job recorded since the caller read the store is left alone, and a recorder
        untracking a job after recording it cannot interleave. ``unknown``: an untracked
        job is lost; a tracked one becomes missing, and a missing one is lost
        (untracked). Every job's missing mark is replaced by this reconciliation's.
        """
        found: Reconciled[J] = Reconciled()
        missing: set[str] = set()
        with self._lock:
            found.fetch = [job_id for job_id in ready if job_id not in self._fetching]
            for job_id in live:
                if job_id not in self._tracked:
                    current = reread(job_id)
                    if current is not None:
                        self._tracked.add(job_id)
                        found.attached.append(current)
            for job_id in unknown:
                if job_id not in self._tracked:
                    found.lost.append(job_id)
                elif job_id in self._missing:  # tracked, yet unknown twice in a row
                    self._tracked.discard(job_id)
                    found.lost.append(job_id)
                else:  # maybe only just submitted: look again next time
                    missing.add(job_id)
            self._missing = missing
            self._tracked.update(found.fetch)
            self._fetching.update(found.fetch)
        return found
