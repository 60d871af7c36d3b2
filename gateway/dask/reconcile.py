"""Reconciliation: the store is the source of truth for which jobs are in flight.

Whenever the gateway (re)connects to a scheduler, when a part asks for it (a failed
submission, fetch or recorder batch), and every SWEEP_INTERVAL while jobs are tracked,
the store's queued and running jobs are matched with their tasks on the scheduler. A
job whose task is still alive (also across gateway restarts) is tracked; one whose
outcome is ready but was not heard of is fetched; one the scheduler does not know (it
restarted) is resubmitted from its stored payload.
"""

from __future__ import annotations

import logging
import threading
import time

from gateway.dask.deadlines import Deadlines
from gateway.dask.link import DaskLink, dask_key
from gateway.dask.record import Recorder
from gateway.dask.submit import Submitter, active_job
from gateway.dask.tracker import JobTracker
from gateway.store import RUNNING, Job, JobStore
from scheduler.plugin import LIVE_STATES

log = logging.getLogger(__name__)

# Seconds between checks of the tracked jobs against the scheduler: a safety net for
# outcome events that never arrived (events sent while the connection was down).
SWEEP_INTERVAL = 30.0
READY_STATES = ("memory", "erred")  # the task's outcome is on the scheduler's side


class Reconciler:
    """Runs reconciliations (on the connection thread); see the module docstring."""

    def __init__(
        self,
        store: JobStore,
        link: DaskLink,
        tracker: JobTracker,
        submitter: Submitter,
        recorder: Recorder,
        deadlines: Deadlines,
        needed: threading.Event,
    ) -> None:
        self._store = store
        self._link = link
        self._tracker = tracker
        self._submitter = submitter
        self._recorder = recorder
        self._deadlines = deadlines
        self._needed = needed  # set by any part that wants a reconciliation soon
        self._swept_at = 0.0  # monotonic time of the last reconciliation

    def due(self) -> bool:
        """Whether a reconciliation was asked for, or the periodic sweep is due."""
        if self._needed.is_set():
            return True
        return self._tracker.any_tracked() and time.monotonic() - self._swept_at > SWEEP_INTERVAL

    def run(self) -> None:
        """Match every active job in the store with its task on the scheduler."""
        self._needed.clear()
        self._swept_at = time.monotonic()
        direct = self._submitter.direct.in_flight()  # not Dask's: left alone
        active = [job for job in self._store.active() if job.id not in direct]
        if not active:
            return
        states = self._link.task_states([dask_key(job.id) for job in active])
        ready: list[str] = []
        live: list[str] = []
        unknown: list[str] = []
        for job in active:
            state = states.get(dask_key(job.id))
            if state in READY_STATES:
                ready.append(job.id)
            elif state in LIVE_STATES:
                live.append(job.id)
            else:
                unknown.append(job.id)
        found = self._tracker.reconcile(
            ready=ready,
            live=live,
            unknown=unknown,
            reread=lambda job_id: active_job(self._store, job_id),
        )
        for job in found.attached:
            if job.status == RUNNING and job.timeout and job.started_at:
                self._deadlines.arm(job)
        if found.fetch:
            self._recorder.fetch(found.fetch)
        by_id: dict[str, Job] = {job.id: job for job in active}
        resubmitted = self._submitter.resubmit([by_id[job_id] for job_id in found.lost])
        if found.attached or found.fetch or resubmitted:
            log.info(
                "reconciled: %d jobs re-attached, %d resubmitted, %d outcomes fetched",
                len(found.attached),
                len(resubmitted),
                len(found.fetch),
            )
