"""Sending stored jobs to Dask, and taking them back (cancel).

A job's task runs its kind's worker function under the job's Dask key: a function
job's :func:`worker.runner.run_job` on its payload, a folder job's
:func:`worker.folder.run_folder` on its run (JSON) and its folder's bundle. The futures
Dask returns are dropped at once (the keep-alive plugin holds the tasks).
Sends and cancels take one lock (the send lock), so a cancel never slips between a
job's check and its sending: a job cancelled meanwhile is either left out, or found
tracked and cancelled in Dask.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future as UploadFuture
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from distributed import Future

from gateway.dask.direct import DirectCalls
from gateway.dask.gangs import gang_workers, send_gang, stop_gang
from gateway.dask.link import DaskLink, dask_key
from gateway.dask.models import ModelSender
from gateway.dask.tracker import JobTracker
from gateway.store import ACTIVE, FOLDER, MODEL, RUNNING, Job, JobStore
from gateway.store.blobs import map_file
from worker.folder import run_folder
from worker.runner import run_job
from worker.task_state import HANDLER as TASK_STATE
from worker.task_state import RUNNING_STATES

log = logging.getLogger(__name__)

UPLOAD_THREADS = 4  # payloads sent to workers at the same time
SCATTER_ABOVE = 1 << 20  # payloads larger than this go to a worker directly
RESTART_TIMEOUT = 60  # seconds a cancelled job's worker has to restart
PLACING_FOR = 0.05  # seconds after a send through Dask without direct calls (see submit)
DROP_WAIT = 5.0  # seconds a worker has to drop a cancelled task it was not running

# A task's payload argument: the payload's bytes, or a large one already on a worker.
TaskArgument = bytes | Future
# Each kind's worker function, and the arguments of its task after the job id.
TASKS = {FOLDER: run_folder}
TaskArguments = tuple[TaskArgument | None, ...]


def active_job(store: JobStore, job_id: str) -> Job | None:
    """The job as stored now, if it is still queued or running."""
    current = store.get(job_id)
    return current if current is not None and current.status in ACTIVE else None


class Submitter:
    """Sends jobs to Dask (one graph update for those sent together) and cancels them."""

    def __init__(
        self,
        link: DaskLink,
        store: JobStore,
        tracker: JobTracker,
        reconcile_needed: threading.Event,
    ) -> None:
        self._link = link
        self._store = store
        self._tracker = tracker
        self._reconcile_needed = reconcile_needed
        self._send_lock = threading.Lock()
        self._outbox: deque[tuple[Job, TaskArguments]] = deque()  # jobs to send to Dask
        self._sent_to_dask_at = float("-inf")  # monotonic time of the last send
        self.models = ModelSender(link, store)  # model jobs: pinned to their replicas
        self.direct = DirectCalls(link, store, self._submit_to_dask)  # single calls
        self._uploaders = ThreadPoolExecutor(
            UPLOAD_THREADS, thread_name_prefix="computethis-upload"
        )

    def close(self) -> None:
        """Drop the uploads not started yet."""
        self._uploaders.shutdown(wait=False, cancel_futures=True)

    def upload(self, data: bytes | memoryview) -> UploadFuture | None:
        """Start sending a large payload to a worker, on a thread of its own (see
        :meth:`gateway.dask.Dispatcher.upload`). None if it is small or Dask unreachable."""
        if len(data) <= SCATTER_ABOVE or not self._link.cluster.connected:
            return None
        return self._uploaders.submit(self._task_argument, data)

    def submit(
        self, job: Job, payload: bytes | None = None, upload: UploadFuture | None = None
    ) -> None:
        """Send a stored job to Dask, or leave it queued until the scheduler is reachable.

        Jobs submitted at the same moment by several request threads go to Dask in
        one ``Client.map`` (one graph update for the scheduler): whichever thread
        gets the lock sends everything waiting, the others find their job sent.
        """
        if not self._link.cluster.connected or self._tracker.is_tracked(job.id):
            return
        if upload is not None:
            arguments: TaskArguments = (upload.result(),)
        else:
            data = payload if payload is not None else self._store.read_payload(job.id)
            if not self._dask_may_be_placing() and self.direct.try_send(job, data):
                return
            arguments = self._task_arguments(job, data)
        self._outbox.append((job, arguments))
        self._send_outbox()

    def _dask_may_be_placing(self) -> bool:
        """Whether a job sent through Dask may still be on its way to a worker that looks
        idle (jobs were sent in the last :data:`PLACING_FOR` seconds, and some job sent
        there is not done): a direct call there would hold it up, and a cancel of the
        call would restart the worker under it."""
        recently = time.monotonic() - self._sent_to_dask_at < PLACING_FOR
        return recently and self._tracker.any_tracked()

    def _submit_to_dask(self, job: Job, payload: bytes) -> None:
        """Send a job through Dask (a direct call that did not happen or was lost)."""
        if not self._link.cluster.connected or self._tracker.is_tracked(job.id):
            self._reconcile_needed.set()
            return
        self._outbox.append((job, self._task_arguments(job, payload)))
        self._send_outbox()

    def submit_many(self, jobs: list[tuple[Job, bytes]]) -> None:
        """Send stored jobs with their (small) payloads to Dask in one graph update,
        or leave them queued until the scheduler is reachable."""
        if not self._link.cluster.connected:
            return
        self._outbox.extend((job, (payload,)) for job, payload in jobs)
        self._send_outbox()

    def resubmit(self, jobs: list[Job]) -> list[Job]:
        """Submit jobs again from their stored payloads; returns those submitted.

        Payloads are read and sent to workers before taking the lock, so request
        threads keep submitting meanwhile; a job cancelled, done or tracked in between
        is left out.
        """
        prepared: list[tuple[Job, TaskArguments]] = []
        for job in jobs:
            try:
                prepared.append((job, self._task_arguments(job, self._store.read_payload(job.id))))
            except FileNotFoundError:
                log.error("payload of job %s is missing; it cannot run", job.id)
        with self._send_lock:
            still_active = [
                (job, argument)
                for job, argument in prepared
                if active_job(self._store, job.id) is not None
            ]
            sent = set(self._send_locked(still_active))
        return [job for job, _ in still_active if job.id in sent]

    def cancel(self, job: Job, then: Callable[[], None] = lambda: None) -> None:
        """Stop a job in Dask; the worker running it is restarted through its nanny.
        ``then`` is called once it is stopped (for an SPMD job, every rank)."""
        with self._send_lock:
            tracked = bool(self._tracker.untrack([job.id]))
        client = self._link.client
        direct = self.direct.worker_of(job.id)
        if client is None or not (tracked or job.gang or direct):  # (a gang's ranks may outlive it)
            then()
            return
        if job.gang:

            def stopped() -> None:
                then()
                # A gang stopped before its ranks met, or to start again, is sent again.
                self._reconcile_needed.set()

            stop_gang(client, job.id, job.ranks or 1, then=stopped)
            return
        worker = direct or self._processing_worker(job)
        try:  # forced: Dask forgets the task even while the plugin or a fetch holds it
            if not direct:  # (a direct call has no task)
                client.cancel([Future(dask_key(job.id), client)], force=True)
        except Exception as exc:
            log.warning("could not cancel job %s in Dask: %s", job.id, exc)
        if worker:
            # A direct call is always running on its worker; a task may only wait there.
            stop, args = (
                (self._restart_worker, (worker,))
                if direct
                else (self._stop_on, (worker, dask_key(job.id)))
            )
            threading.Thread(target=stop, args=args, daemon=True).start()
        then()

    # -- sending ------------------------------------------------------------------

    def _send_outbox(self) -> None:
        with self._send_lock:
            waiting = []
            while self._outbox:
                waiting.append(self._outbox.popleft())
            if self._link.cluster.connected:
                self._send_locked(waiting)
            elif waiting:  # they stay queued in the store until the next reconciliation
                self._reconcile_needed.set()

    def _send_locked(self, jobs: list[tuple[Job, TaskArguments]]) -> list[str]:
        """Track and send the jobs not tracked yet, one ``Client.map`` per kind and retry
        count; returns the ids sent. A job that cannot be sent is untracked and stays
        queued in the store: the next reconciliation submits it."""
        client = self._link.client
        assert client is not None
        self._sent_to_dask_at = time.monotonic()
        newly = set(self._tracker.track(job.id for job, _ in jobs))
        groups: dict[tuple[str, int], dict[str, TaskArguments]] = {}
        gangs: dict[str, tuple[Job, TaskArguments]] = {}
        for job, arguments in jobs:
            if job.id not in newly:  # each job once, and only if this call tracked it
                continue
            if job.ranks is not None:  # SPMD: its ranks go together
                gangs.setdefault(job.id, (job, arguments))
            else:
                groups.setdefault((job.kind, job.retries), {}).setdefault(job.id, arguments)
        sent: list[str] = self._send_gangs(client, list(gangs.values())) if gangs else []
        for (kind, retries), group in groups.items():
            if kind == MODEL:  # see gateway.dask.models
                models = {job.id: (job, group[job.id]) for job, _ in jobs if job.id in group}
                done = self.models.send(client, list(models.values()), retries)
                if self._tracker.untrack(set(models) - set(done)):
                    self._reconcile_needed.set()
                sent += done
                continue
            ids = list(group)
            task = TASKS.get(kind, run_job)
            try:
                keys = [dask_key(job_id) for job_id in ids]
                options = {"pure": False, "retries": retries or None}
                # Under load nearly every call sends one job: Client.submit builds that
                # graph with ~50 us less CPU (of the request thread) than Client.map.
                if len(group) == 1:
                    client.submit(task, ids[0], *group[ids[0]], key=keys[0], **options)
                else:
                    columns = zip(*group.values(), strict=True)
                    client.map(task, ids, *columns, key=keys, **options)
                sent += ids
            except Exception:
                log.exception("could not submit %d jobs; will retry", len(group))
                self._tracker.untrack(ids)
                self._reconcile_needed.set()
        return sent

    def _send_gangs(self, client: Any, jobs: list[tuple[Job, TaskArguments]]) -> list[str]:
        """Send each SPMD job's ranks together (see :mod:`gateway.dask.gangs`); one whose
        ranks outnumber the workers now stays queued (untracked) for a reconciliation."""
        sent = []
        workers = list(self._link.cluster.workers)
        for job, arguments in jobs:
            try:
                placed = gang_workers(client, workers, job.ranks or 1)
                send_gang(client, job, arguments, placed)
                sent.append(job.id)
            except Exception as exc:
                log.warning("could not start SPMD job %s (%s); will retry", job.id, exc)
                self._tracker.untrack([job.id])
                self._reconcile_needed.set()
        return sent

    def _task_arguments(self, job: Job, payload: bytes | memoryview) -> TaskArguments:
        """A job's task arguments after its id: its payload; for a folder job also its
        bundle's bytes (None if the bundle is gone: the worker says so)."""
        if job.kind != FOLDER:
            return (self._task_argument(payload),)
        run = json.loads(bytes(payload))
        try:
            bundle = map_file(self._store.bundles.path(job.tenant, run["bundle"]))
        except FileNotFoundError:
            return bytes(payload), None
        return bytes(payload), self._task_argument(bundle)

    def _task_argument(self, data: bytes | memoryview) -> TaskArgument:
        """The payload as a task argument: bytes, or for a large one a scattered future.

        A large argument inlined in a task travels through the scheduler; scattered
        directly, it goes straight to a worker (a 256 MB payload: ~0.4 s instead of
        ~1.2 s scattered through the scheduler, ~6-13 s inlined). If the workers cannot
        be reached from here, it goes through the scheduler.
        """
        client = self._link.client
        if len(data) <= SCATTER_ABOVE or client is None or not self._link.cluster.workers:
            return bytes(data)  # a task argument must pickle: bytes, not a memory map
        try:  # straight to a worker: through the scheduler takes three times as long
            return client.scatter(data, hash=False, direct=True)
        except Exception as exc:
            log.warning("could not send a payload straight to a worker (%s)", exc)
        try:
            return client.scatter(data, hash=False, direct=False)
        except Exception as exc:
            log.warning("could not scatter a payload (%s); inlining it", exc)
            return bytes(data)

    # -- cancelling ---------------------------------------------------------------

    def _processing_worker(self, job: Job) -> str | None:
        """The worker the scheduler gave this job to, if any.

        The scheduler is asked first: the store's worker may be unrecorded yet, or stale
        (a job resubmitted after a restart still has the worker of its first run until
        its new start is recorded). Without an answer, the recorded worker of a running
        job is the best guess.
        """
        client = self._link.client
        assert client is not None
        key = dask_key(job.id)
        try:
            processing = client.processing()
        except Exception:
            return job.worker if job.status == RUNNING else None
        return next((worker for worker, keys in processing.items() if key in keys), None)

    def _stop_on(self, address: str, key: str) -> None:
        """Restart the worker if it runs ``key``'s task; one that only holds the task,
        waiting behind another job, drops it with the cancel (see
        :mod:`worker.task_state`). Without an answer the worker is restarted."""
        client = self._link.client
        assert client is not None
        deadline = time.monotonic() + DROP_WAIT
        while True:
            try:
                state = client.sync(getattr(client.rpc(address), TASK_STATE), key=key)
            except Exception as exc:  # an older worker, or it is going: restarted
                log.info("no task state of %s from %s (%r)", key, address, exc)
                break
            if state is None:
                return  # dropped, or done: the worker runs something else
            if state in RUNNING_STATES or time.monotonic() >= deadline:
                break
            time.sleep(0.05)  # the cancel has not reached the worker yet
        self._restart_worker(address)

    def _restart_worker(self, address: str) -> None:
        try:
            client = self._link.client
            assert client is not None
            client.restart_workers([address], timeout=RESTART_TIMEOUT, raise_for_error=False)
        except Exception:
            log.exception("could not restart worker %s", address)
