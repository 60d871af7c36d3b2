"""The recorder thread: writes what Dask reports about jobs to the store.

Events arrive on Dask's event topics (msgpack, never pickle) and are queued here:

- a *started* event (``{"job", "worker", "time", "attempt"?}``) marks the job running and
  arms its deadline;
- a *result* event carries the job's envelope (``{"job", "envelope"}``, a small
  outcome), or asks for it to be fetched (``{"job", "fetch": True}`` from a worker with
  a larger one, ``{"job", "erred": True}`` from the scheduler for a final failure);
- a *fetched* item carries outcomes a fetch thread got (:mod:`gateway.dask.fetch`).

One thread takes them in batches: it records outcomes in one transaction, wakes the
requests waiting for them, untracks their jobs, queues their keys' release, and
stops jobs past their deadline. Events of jobs that are not ours are ignored.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

from gateway.dask.deadlines import Deadlines, timed_out
from gateway.dask.fetch import Fetcher, outcome_from_envelope
from gateway.dask.link import DaskLink
from gateway.dask.release import Releases
from gateway.dask.submit import active_job
from gateway.dask.tracker import JobTracker
from gateway.store import QUEUED, JobStore, Outcome
from gateway.waiters import Waiters
from wire.errors import error_info

log = logging.getLogger(__name__)

STARTED, RESULT, FETCHED, STOP = "started", "result", "fetched", "stop"
JOIN_TIMEOUT = 5.0

# One item of the recorder's queue: (STARTED, event), (RESULT, event),
# (FETCHED, outcomes) or (STOP, None).
Item = tuple[str, Any]


class Recorder:
    """Owns the recorder thread, its queue, the fetch threads and the key releases.

    ``cancel`` stops a job in Dask (for a deadline); ``on_recorded``, if set, is called
    with the outcomes recorded (for metrics).
    """

    def __init__(
        self,
        store: JobStore,
        waiters: Waiters,
        link: DaskLink,
        tracker: JobTracker,
        deadlines: Deadlines,
        cancel: Callable[..., None],
        reconcile_needed: threading.Event,
    ) -> None:
        self.on_recorded: Callable[[list[Outcome]], None] | None = None
        self.queue: queue.Queue[Item] = queue.Queue()
        self._store = store
        self._waiters = waiters
        self._tracker = tracker
        self._deadlines = deadlines
        self._cancel = cancel
        self._restarting: set[str] = set()  # SPMD jobs whose ranks are being stopped, to run again
        self._reconcile_needed = reconcile_needed
        self._fetcher = Fetcher(link, store, tracker, reconcile_needed, self._take_fetched)
        self._releases = Releases(link)
        self._thread = threading.Thread(target=self._run, name="computethis-recorder", daemon=True)

    # -- lifecycle ----------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to stop, and release the recorded keys still waiting."""
        self.queue.put((STOP, None))
        self._releases.close()

    def join(self) -> None:
        """Wait (a while) for the thread to end; drop the fetches not started."""
        if self._thread.is_alive():
            self._thread.join(timeout=JOIN_TIMEOUT)
        self._fetcher.close()

    # -- what comes in ------------------------------------------------------------

    def on_started_event(self, event: tuple[float, dict[str, Any]]) -> None:
        """Dask's handler of STARTED_TOPIC events (timestamp, event)."""
        self.queue.put((STARTED, event[1]))

    def on_result_event(self, event: tuple[float, dict[str, Any]]) -> None:
        """Dask's handler of RESULT_TOPIC events (timestamp, event)."""
        self.queue.put((RESULT, event[1]))

    def fetch(self, job_ids: list[str]) -> None:
        """Fetch these jobs' outcomes (marked fetching in the tracker) and record them."""
        self._fetcher.fetch(job_ids)

    def _take_fetched(self, outcomes: list[Outcome]) -> None:
        self.queue.put((FETCHED, outcomes))

    # -- the thread ---------------------------------------------------------------

    def _run(self) -> None:
        self._store.lazy_commits_on_this_thread()
        self._store.writes_first_on_this_thread()
        while True:
            waits = [self._deadlines.seconds_to_next(), self._releases.seconds_to_next()]
            timeout = min((wait for wait in waits if wait is not None), default=None)
            try:
                batch = [self.queue.get(timeout=timeout)]
            except queue.Empty:
                batch = []
            while True:
                try:
                    batch.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            if any(kind == STOP for kind, _ in batch):
                return
            try:
                self._handle(batch)
                self._stop_overdue()
                self._releases.send_due()
            except Exception:
                log.exception("recorder failed on a batch of %d events", len(batch))
                self._reconcile_needed.set()
            del batch  # may hold large results: not kept until the next event

    def _handle(self, batch: list[Item]) -> None:
        """Apply one batch: starts, outcomes in events, fetches to start, fetched ones."""
        outcomes: list[Outcome] = []
        fetch: list[str] = []
        for kind, item in batch:
            if kind == STARTED:
                self._started(item)
            elif kind == RESULT:
                self._sort_result_event(item, outcomes, fetch)
            elif kind == FETCHED:
                outcomes += item
        if fetch:
            self._fetcher.fetch(fetch)
        if outcomes:
            recorded = self._record(outcomes)
            # Done, whether recorded now or before: no more events to take.
            self._tracker.untrack(outcome.job_id for outcome in outcomes)
            self._releases.add(recorded)

    def _sort_result_event(
        self, event: dict[str, Any], outcomes: list[Outcome], fetch: list[str]
    ) -> None:
        """Sort one result event of a job of ours into ``outcomes`` or ``fetch``."""
        job_id = event.get("job")
        if not isinstance(job_id, str) or job_id in self._restarting or not self._is_ours(job_id):
            return  # another gateway's job, one already recorded or cancelled, or restarting
        if event.get("lost"):  # an SPMD job's rank lost the only worker it may run on
            job = self._store.get(job_id)
            if job is not None and job.status == QUEUED:  # its ranks never met: again
                self._cancel(job)  # stopped and untracked; a reconciliation sends it again
                return
            error = error_info(
                "WorkerDied",
                f"the worker of rank {event.get('rank', 0)} died; the other ranks were "
                "stopped. Run the job again",
            )
            outcomes.append(Outcome(job_id, ok=False, error=error))
            return
        if "envelope" in event:
            try:
                outcome = outcome_from_envelope(job_id, event["envelope"])
            except (KeyError, TypeError, ValueError) as exc:
                log.warning("malformed outcome for %s (%s); fetching it", job_id, exc)
            else:
                outcomes.append(outcome)  # untracked by _handle once recorded
                return
        if self._tracker.start_fetching(job_id):
            fetch.append(job_id)

    def _is_ours(self, job_id: str) -> bool:
        """Whether events of ``job_id`` are ours to record: a tracked job, or one still
        active in the store that a reconciliation is about to attach (the job ended after
        the scheduler's states were read, before it was tracked), which is tracked now."""
        if self._tracker.is_tracked(job_id):
            return True
        if active_job(self._store, job_id) is None:
            return False
        self._tracker.track([job_id])
        return True

    def _started(self, event: dict[str, Any]) -> None:
        job_id = event.get("job")
        if not isinstance(job_id, str) or job_id in self._restarting or not self._is_ours(job_id):
            return
        if self._store.mark_started(job_id, event["worker"], event["time"], event.get("attempt")):
            job = self._store.get(job_id)
            if job is not None and job.timeout:
                self._deadlines.arm(job)

    def _record(self, outcomes: list[Outcome], retry: bool = True) -> list[str]:
        """Store outcomes (each once), wake their waiters and count them; returns the
        ids recorded (a job already done or cancelled is not recorded again) whose keys
        the scheduler may forget now. A failed SPMD job's other ranks may still be
        running: they are stopped (see :func:`gateway.dask.gangs.stop_gang`), which
        ends with their keys forgotten; one with retries left starts again instead
        (with ``retry``: not after a timeout)."""
        outcomes = self._retry_gangs(outcomes) if retry else outcomes
        recorded = self._store.record(outcomes)
        self._waiters.notify(recorded)
        failed = {outcome.job_id for outcome in outcomes if not outcome.ok}
        stopping = set()
        for job_id in failed.intersection(recorded):
            job = self._store.get(job_id)
            if job is not None and job.gang:
                self._cancel(job)
                stopping.add(job_id)
        if self.on_recorded is not None:
            ids = set(recorded)
            self.on_recorded([outcome for outcome in outcomes if outcome.job_id in ids])
        return [job_id for job_id in recorded if job_id not in stopping]

    def _retry_gangs(self, outcomes: list[Outcome]) -> list[Outcome]:
        """The outcomes to record: those of SPMD jobs being restarted left out, and a
        failed SPMD job with retries left queued again, its ranks stopped and then sent
        again together. Until they are stopped, what its old ranks report is ignored."""
        kept = []
        for outcome in outcomes:
            if outcome.job_id in self._restarting:
                continue
            job = None if outcome.ok else self._store.get(outcome.job_id)
            if (
                job is not None
                and job.gang
                and max(job.attempts, 1) <= job.retries
                and self._store.requeue(job.id)
            ):
                log.info("SPMD job %s failed on attempt %d; running it again", job.id, job.attempts)
                self._restarting.add(job.id)
                self._cancel(job, then=lambda job_id=job.id: self._restarting.discard(job_id))
                continue
            kept.append(outcome)
        return kept

    def _stop_overdue(self) -> None:
        """Record a timeout for each job past its deadline, and stop it in Dask."""
        for job in self._deadlines.overdue(self._store):
            self._record([timed_out(job)], retry=False)
            self._cancel(job)
