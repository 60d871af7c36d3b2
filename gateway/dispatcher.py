"""Submit stored jobs to Dask and record what comes back.

One long-lived :class:`distributed.Client` per gateway. Request threads call
:meth:`Dispatcher.submit`; Dask's callback thread hands finished futures to a single
recorder thread, which gathers results in batches, writes them to the store in one
transaction and wakes long-polling requests. Start events come from workers through
Dask's event topics (msgpack, never pickle).
"""

from __future__ import annotations

import heapq
import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any

from distributed import Client, Future

from gateway.store import ACTIVE, RUNNING, Job, JobStore, Outcome
from gateway.waiters import Waiters
from worker.envelope import unpack
from worker.runner import STARTED_TOPIC, JobFailed, run_job

log = logging.getLogger(__name__)

# The gateway's Dask client only ever needs raw bytes back from workers: refuse
# pickle on the data path so a result can never be unpickled here.
GATEWAY_DESERIALIZERS = ("dask", "msgpack")


@dataclass(frozen=True)
class ClusterState:
    """A cached view of the cluster, refreshed in the background."""

    connected: bool
    scheduler: str | None
    workers: dict[str, dict[str, Any]]
    python_versions: frozenset[str]


def dask_key(job_id: str) -> str:
    return f"computethis-{job_id}"


class Dispatcher:
    """Owns the Dask client: submits jobs, cancels them and records their outcomes."""

    def __init__(
        self,
        store: JobStore,
        waiters: Waiters,
        scheduler: Any,
        *,
        refresh_interval: float = 1.0,
    ) -> None:
        self.store = store
        self.waiters = waiters
        self.scheduler = scheduler
        self.refresh_interval = refresh_interval
        self.client: Client | None = None
        self.cluster = ClusterState(False, None, {}, frozenset())
        self._futures: dict[str, Future] = {}
        self._lock = threading.Lock()
        self._inbox: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._deadlines: list[tuple[float, str, int]] = []
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- lifecycle ----------------------------------------------------------------

    def start(self) -> None:
        for target, name in ((self._connect_loop, "connector"), (self._record_loop, "recorder")):
            thread = threading.Thread(target=target, name=f"computethis-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def wait_connected(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.cluster.connected:
                return True
            time.sleep(0.05)
        return False

    def close(self) -> None:
        self._stopping.set()
        self._inbox.put(("stop", None))
        for thread in self._threads:
            thread.join(timeout=10)
        if self.client is not None:
            self.client.close(timeout=5)

    # -- submission ---------------------------------------------------------------

    def submit(self, job: Job) -> None:
        """Send a stored job to Dask, or leave it queued until the scheduler is reachable."""
        with self._lock:
            if not self.cluster.connected or job.id in self._futures:
                return
            self._submit_locked(job, self.store.read_payload(job.id))

    def _submit_locked(self, job: Job, payload: bytes) -> None:
        assert self.client is not None
        future = self.client.submit(
            run_job,
            job.id,
            payload,
            key=dask_key(job.id),
            pure=False,
            retries=job.retries or None,
        )
        self._futures[job.id] = future
        future.add_done_callback(self._on_done)

    def _submit_active(self) -> None:
        for job in self.store.active():
            self.submit(job)

    def cancel(self, job: Job) -> None:
        """Stop a job in Dask; a running job's worker is restarted through its nanny."""
        with self._lock:
            future = self._futures.pop(job.id, None)
        if future is None or self.client is None:
            return
        worker = job.worker if job.status == RUNNING else self._processing_worker(job.id)
        future.cancel()
        if worker:
            threading.Thread(target=self._restart_worker, args=(worker,), daemon=True).start()

    def _processing_worker(self, job_id: str) -> str | None:
        """The worker the scheduler gave this job to, if any (its start may be unrecorded)."""
        assert self.client is not None
        key = dask_key(job_id)
        try:
            processing = self.client.processing()
        except Exception:
            return None
        return next((worker for worker, keys in processing.items() if key in keys), None)

    def _restart_worker(self, address: str) -> None:
        try:
            assert self.client is not None
            self.client.restart_workers([address], timeout=60, raise_for_error=False)
        except Exception:
            log.exception("could not restart worker %s", address)

    # -- cluster ------------------------------------------------------------------

    def _connect_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self.client = Client(
                    self.scheduler,
                    timeout=5,
                    set_as_default=False,
                    deserializers=list(GATEWAY_DESERIALIZERS),
                )
                break
            except Exception as exc:
                log.warning("scheduler %s not reachable (%s); retrying", self.scheduler, exc)
                self._stopping.wait(1.0)
        if self._stopping.is_set() or self.client is None:
            return
        self.client.subscribe_topic(STARTED_TOPIC, self._on_started_event)
        self._refresh_cluster()
        self._submit_active()
        while not self._stopping.wait(self.refresh_interval):
            self._refresh_cluster()

    def _refresh_cluster(self) -> None:
        assert self.client is not None
        try:
            info = self.client.scheduler_info(n_workers=-1)
        except Exception as exc:
            log.warning("scheduler unreachable: %s", exc)
            self.cluster = ClusterState(False, self.cluster.scheduler, {}, frozenset())
            return
        workers = info.get("workers", {})
        versions = self.cluster.python_versions
        if set(workers) != set(self.cluster.workers):
            versions = self._worker_python_versions()
        with self._lock:
            self.cluster = ClusterState(True, info.get("address"), workers, versions)

    def _worker_python_versions(self) -> frozenset[str]:
        assert self.client is not None
        try:
            reported = self.client.get_versions(check=False).get("workers", {})
        except Exception:
            return self.cluster.python_versions
        versions = set()
        for info in reported.values():
            python = (info or {}).get("host", {}).get("python", "")
            versions.add(".".join(python.split(".")[:2]))
        return frozenset(v for v in versions if v)

    def workers(self) -> list[dict[str, Any]]:
        """Each worker's address, name, threads, memory and job counts."""
        stats = self.store.worker_stats()
        rows = []
        for address, info in sorted(self.cluster.workers.items()):
            metrics = info.get("metrics", {})
            own = stats.get(address, {})
            rows.append(
                {
                    "address": address,
                    "name": str(info.get("name")),
                    "threads": info.get("nthreads"),
                    "memory_limit": info.get("memory_limit"),
                    "memory": metrics.get("memory"),
                    "current_job": own.get("current_job"),
                    "jobs_completed": own.get("completed", 0),
                }
            )
        return rows

    # -- outcomes -----------------------------------------------------------------

    def _on_started_event(self, event: tuple[float, dict[str, Any]]) -> None:
        self._inbox.put(("started", event[1]))

    def _on_done(self, future: Future) -> None:
        self._inbox.put(("done", future))

    def _record_loop(self) -> None:
        while True:
            timeout = None
            if self._deadlines:
                timeout = max(0.0, self._deadlines[0][0] - time.time())
            try:
                batch = [self._inbox.get(timeout=timeout)]
            except queue.Empty:
                batch = []
            while True:
                try:
                    batch.append(self._inbox.get_nowait())
                except queue.Empty:
                    break
            if any(kind == "stop" for kind, _ in batch):
                return
            try:
                self._handle(batch)
                self._expire_deadlines()
            except Exception:
                log.exception("recorder failed on a batch of %d events", len(batch))

    def _handle(self, batch: list[tuple[str, Any]]) -> None:
        for kind, item in batch:
            if kind == "started":
                self._started(item)
        finished = [f for kind, f in batch if kind == "done" and f.status == "finished"]
        outcomes: list[Outcome] = []
        if finished:
            assert self.client is not None
            for future, data in zip(finished, self.client.gather(finished), strict=True):
                outcomes.append(_outcome(_job_id(future), data))
        for kind, future in batch:
            if kind != "done" or future.status == "finished":
                continue
            if future.status == "error":
                outcomes.append(self._failure(future))
            # "cancelled": either our own cancel (already recorded) or the
            # scheduler lost the task; the job stays active and is resubmitted.
        if outcomes:
            recorded = self.store.record(outcomes)
            self.waiters.notify(recorded)
        with self._lock:
            for kind, future in batch:
                if kind == "done":
                    job_id = _job_id(future)
                    if self._futures.get(job_id) is future:
                        del self._futures[job_id]

    def _started(self, event: dict[str, Any]) -> None:
        job_id = event.get("job")
        if not isinstance(job_id, str) or job_id not in self._futures:
            return
        if self.store.mark_started(job_id, event["worker"], event["time"]):
            job = self.store.get(job_id)
            if job is not None and job.timeout:
                heapq.heappush(self._deadlines, (event["time"] + job.timeout, job_id, job.attempts))

    def _failure(self, future: Future) -> Outcome:
        job_id = _job_id(future)
        try:
            exc = future.exception(timeout=5)
        except Exception as error:  # the exception itself could not be fetched
            exc = error
        if isinstance(exc, JobFailed):
            return _outcome(job_id, exc.envelope)
        if type(exc).__name__ == "KilledWorker":
            message = (
                "the worker died while running this job, "
                f"{getattr(exc, 'allowed_failures', '?')} times (killed, out of memory, "
                "or os._exit in the function); the job will not be retried"
            )
            error = {"type": "WorkerDied", "message": message, "traceback": ""}
        else:
            error = {"type": type(exc).__name__, "message": str(exc), "traceback": ""}
        return Outcome(job_id, ok=False, error=error)

    def _expire_deadlines(self) -> None:
        now = time.time()
        while self._deadlines and self._deadlines[0][0] <= now:
            _, job_id, attempt = heapq.heappop(self._deadlines)
            job = self.store.get(job_id)
            if job is None or job.status not in ACTIVE or job.attempts != attempt:
                continue
            error = {
                "type": "TimeoutError",
                "message": (
                    f"the job ran longer than its timeout of {job.timeout:g} s and was stopped"
                ),
                "traceback": "",
            }
            recorded = self.store.record(
                [Outcome(job_id, ok=False, error=error, worker=job.worker)]
            )
            self.waiters.notify(recorded)
            self.cancel(job)


def _job_id(future: Future) -> str:
    return str(future.key).removeprefix("computethis-")


def _outcome(job_id: str, data: bytes) -> Outcome:
    envelope = unpack(data)
    return Outcome(
        job_id,
        ok=envelope.ok,
        worker=envelope.worker,
        started_at=envelope.started,
        finished_at=envelope.finished,
        error=envelope.error,
        body=envelope.body,
    )
