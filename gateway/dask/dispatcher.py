"""The Dispatcher: the one object the rest of the gateway holds to use Dask."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future as UploadFuture
from typing import Any

from distributed import Client

from gateway.dask.deadlines import Deadlines
from gateway.dask.link import ClusterState, DaskLink, Link
from gateway.dask.reconcile import Reconciler
from gateway.dask.record import Recorder
from gateway.dask.submit import Submitter
from gateway.dask.tracker import JobTracker
from gateway.store import Job, JobStore, Outcome
from gateway.waiters import Waiters
from wire.envelope import RESULT_TOPIC, STARTED_TOPIC

log = logging.getLogger(__name__)

JOIN_TIMEOUT = 5.0


class Dispatcher:
    """Submits stored jobs to Dask, cancels them and records their outcomes.

    ``scheduler`` is an address or a Dask cluster object; ``refresh_interval`` the
    seconds between connection checks; ``on_recorded`` (also settable later) is called
    with the outcomes recorded. :meth:`start` starts the connection thread (which
    reconciles) and the recorder thread; :meth:`close` stops them.
    """

    def __init__(
        self,
        store: JobStore,
        waiters: Waiters,
        scheduler: Any,
        *,
        refresh_interval: float = 1.0,
        on_recorded: Callable[[list[Outcome]], None] | None = None,
    ) -> None:
        self.store = store
        self.waiters = waiters
        self.refresh_interval = refresh_interval
        self.tracker = JobTracker()
        reconcile_needed = threading.Event()
        deadlines = Deadlines()
        self.link = DaskLink(scheduler, on_tasks_lost=self.tracker.untrack_all)
        self.submitter = Submitter(self.link, store, self.tracker, reconcile_needed)
        self.recorder = Recorder(
            store,
            waiters,
            self.link,
            self.tracker,
            deadlines,
            self.submitter.cancel,
            reconcile_needed,
        )
        self.recorder.on_recorded = on_recorded
        self.submitter.direct.on_result = self.recorder.on_result_event
        self.link.listen(STARTED_TOPIC, self.recorder.on_started_event)
        self.link.listen(RESULT_TOPIC, self.recorder.on_result_event)
        self.reconciler = Reconciler(
            store,
            self.link,
            self.tracker,
            self.submitter,
            self.recorder,
            deadlines,
            reconcile_needed,
        )
        self._stopping = threading.Event()
        self._connector = threading.Thread(
            target=self._connect_loop, name="computethis-connector", daemon=True
        )

    # -- what the gateway reads ---------------------------------------------------

    @property
    def cluster(self) -> ClusterState:
        """The cached view of the cluster (connected, scheduler, workers, versions)."""
        return self.link.cluster

    @property
    def client(self) -> Client | None:
        """The Dask client in use, if one is open."""
        return self.link.client

    @property
    def on_recorded(self) -> Callable[[list[Outcome]], None] | None:
        """Called by the recorder thread with the outcomes it recorded (for metrics)."""
        return self.recorder.on_recorded

    @on_recorded.setter
    def on_recorded(self, callback: Callable[[list[Outcome]], None] | None) -> None:
        self.recorder.on_recorded = callback

    def workers(self, tenant: str | None = None) -> list[dict[str, Any]]:
        """Each worker's address, name, threads, memory, CPU, whether it runs a job, and
        job counts; with ``tenant``, the job it runs is named only if it is theirs."""
        stats = self.store.worker_stats()
        rows = []
        for address, info in sorted(self.cluster.workers.items()):
            metrics = info.get("metrics", {})
            own = stats.get(address, {})
            current = own.get("current_job")
            cpu = metrics.get("cpu")
            # Running a job, or a task of one (an SPMD job's rank other than rank 0).
            executing = (metrics.get("task_counts") or {}).get("executing", 0)
            rows.append(
                {
                    "address": address,
                    "name": str(info.get("name")),
                    "threads": info.get("nthreads"),
                    "memory_limit": info.get("memory_limit"),
                    "memory": metrics.get("memory"),
                    "cpu": round(float(cpu), 1) if cpu is not None else None,
                    "busy": current is not None or executing > 0,
                    "current_job": current if tenant in (None, own.get("tenant")) else None,
                    "jobs_completed": own.get("completed", 0),
                }
            )
        return rows

    # -- lifecycle ----------------------------------------------------------------

    def start(self) -> None:
        """Start connecting to the scheduler and recording outcomes."""
        self._connector.start()
        self.recorder.start()

    def close(self) -> None:
        """Stop both threads; recorded keys still waiting are released if Dask answers."""
        self._stopping.set()
        self.recorder.stop()
        self.link.close()  # first: unblocks threads waiting on the scheduler
        if self._connector.is_alive():
            self._connector.join(timeout=JOIN_TIMEOUT)
        self.recorder.join()
        self.submitter.close()

    # -- what request threads call ------------------------------------------------

    def upload(self, data: bytes | memoryview) -> UploadFuture | None:
        """Start sending a large payload to a worker, on a thread of its own.

        The caller makes the job durable meanwhile (a large file's fsync takes as long
        as the transfer) and then passes this to :meth:`submit`; dropping it instead
        lets Dask forget the data. None if the payload is small or Dask unreachable.
        """
        return self.submitter.upload(data)

    def submit(
        self, job: Job, payload: bytes | None = None, upload: UploadFuture | None = None
    ) -> None:
        """Send a stored job to Dask, or leave it queued until the scheduler is reachable.

        ``payload`` saves reading the stored payload back when the caller has it;
        ``upload`` is the payload already on its way (see :meth:`upload`).
        """
        self.submitter.submit(job, payload, upload)

    def submit_many(self, jobs: list[tuple[Job, bytes]]) -> None:
        """Send stored jobs with their (small) payloads to Dask in one graph update,
        or leave them queued until the scheduler is reachable."""
        self.submitter.submit_many(jobs)

    def cancel(self, job: Job) -> None:
        """Stop a job in Dask; the worker running it is restarted through its nanny."""
        self.submitter.cancel(job)

    # -- the connection thread ----------------------------------------------------

    def _connect_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self._check()
            except Exception:
                log.exception("connection check failed")
            self._stopping.wait(self.refresh_interval)

    def _check(self) -> None:
        """One connection check, then a reconciliation if the link is new or one is due."""
        state = self.link.check()
        if state is not Link.DOWN and self.cluster.workers:  # (none yet: a new scheduler)
            self.submitter.direct.forget_gone(self.cluster.workers)
        if state is Link.RENEWED or (state is Link.UP and self.reconciler.due()):
            self.reconciler.run()
