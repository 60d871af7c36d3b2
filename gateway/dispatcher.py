"""Submit stored jobs to Dask and record what comes back.

One long-lived :class:`distributed.Client` per gateway. Request threads call
:meth:`Dispatcher.submit`, which sends the task and keeps no Dask future: the task is
held on the scheduler by :mod:`scheduler.plugin` until the gateway releases it. Outcomes
arrive as events on Dask's event topics (msgpack, never pickle): a worker sends a small
outcome itself, or asks for a larger one to be fetched; the scheduler reports a job
that failed for good. A single recorder thread writes them to the store in batches and
wakes long-polling requests; a small pool fetches the larger results and exceptions.
Holding no futures spares the gateway a task report, a callback and a release per job.

The store is the source of truth. Whenever the gateway (re)connects to a scheduler, and
every SWEEP_INTERVAL while jobs are out, it *reconciles*: it asks the scheduler for the
state of every queued or running job; a job whose task is still alive (also across
gateway restarts) is tracked, one whose outcome is ready but was not heard of is
fetched, and one the scheduler does not know (it restarted) is resubmitted from its
stored payload.
"""

from __future__ import annotations

import contextlib
import heapq
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future as UploadFuture
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from distributed import Client, Future

from gateway.store import ACTIVE, RUNNING, Job, JobStore, Outcome
from gateway.waiters import Waiters
from scheduler.plugin import KEY_PREFIX, LIVE_STATES, KeepJobsAlive
from wire.envelope import RESULT_TOPIC, STARTED_TOPIC, unpack
from wire.errors import error_info
from worker.runner import JobFailed, run_job

log = logging.getLogger(__name__)

# The gateway's Dask client only ever needs raw bytes back from workers: refuse
# pickle on the data path so a result can never be unpickled here.
GATEWAY_DESERIALIZERS = ("dask", "msgpack")
CONNECT_TIMEOUT = 5.0
# Dask's client gives up reconnecting after CONNECT_TIMEOUT and closes itself; one that
# is still "connecting" well after that never will be (its reconnection died: Dask
# iterates the client's futures while request threads add to them), so it is replaced.
STUCK_RECONNECT = 4 * CONNECT_TIMEOUT
_RPC_CHUNK = 1000
# Seconds between checks of the tracked jobs against the scheduler: a safety net for
# outcome events that never arrived (events sent while the connection was down).
SWEEP_INTERVAL = 30.0
FETCH_TIMEOUT = 60.0  # seconds to wait for a task announced as done to be done
GATHER_THREADS = 4
UPLOAD_THREADS = 4  # payloads sent to workers at the same time
SCATTER_ABOVE = 1 << 20  # payloads larger than this go to a worker directly
SEND_INTERVAL = 0.001  # seconds between batches on the client's stream to the scheduler
RELEASE_DELAY = 0.1  # seconds recorded keys wait to be released together (one RPC)
CLOSE_RELEASE_TIMEOUT = 2.0


@dataclass(frozen=True)
class ClusterState:
    """A cached view of the cluster, refreshed in the background."""

    connected: bool
    scheduler: str | None
    workers: dict[str, dict[str, Any]]
    python_versions: frozenset[str]


DISCONNECTED = ClusterState(False, None, {}, frozenset())


def dask_key(job_id: str) -> str:
    return f"{KEY_PREFIX}{job_id}"


def job_id_of(key: Any) -> str:
    return str(key).removeprefix(KEY_PREFIX)


class Dispatcher:
    """Owns the Dask client: submits jobs, cancels them and records their outcomes."""

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
        self.on_recorded = on_recorded
        self.waiters = waiters
        self.scheduler = scheduler
        self.refresh_interval = refresh_interval
        self.client: Client | None = None
        self.cluster = DISCONNECTED
        self._scheduler_id: str | None = None
        self._not_running_since: float | None = None  # monotonic time the client left "running"
        self._tracked: set[str] = set()  # jobs sent to (or found on) this scheduler
        self._fetching: set[str] = set()  # jobs whose outcome a fetch thread is getting
        self._missing: set[str] = set()  # tracked jobs the last reconciliation did not find
        self._swept_at = 0.0  # monotonic time of the last reconciliation
        self._stream: Any = None  # the client's stream to the scheduler at the last check
        self._lock = threading.Lock()
        self._inbox: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._outbox: deque[tuple[Job, bytes | Future]] = deque()  # jobs to send to Dask
        self._deadlines: list[tuple[float, str, int]] = []
        self._unreleased: list[str] = []  # recorded keys the scheduler still holds for us
        self._release_at = 0.0  # monotonic time to release them
        self._reconcile_needed = threading.Event()
        self._gatherers = ThreadPoolExecutor(
            GATHER_THREADS, thread_name_prefix="computethis-gather"
        )
        self._uploaders = ThreadPoolExecutor(
            UPLOAD_THREADS, thread_name_prefix="computethis-upload"
        )
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- lifecycle ----------------------------------------------------------------

    def start(self) -> None:
        for target, name in ((self._connect_loop, "connector"), (self._record_loop, "recorder")):
            thread = threading.Thread(target=target, name=f"computethis-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def close(self) -> None:
        self._stopping.set()
        self._inbox.put(("stop", None))
        keys, self._unreleased = self._unreleased, []
        if keys:  # recorded outcomes: let the scheduler forget them (if it answers soon)
            with contextlib.suppress(Exception):
                self._gatherers.submit(self._release, keys).result(timeout=CLOSE_RELEASE_TIMEOUT)
        if self.client is not None:  # first: unblocks threads waiting on the scheduler
            self.client.close(timeout=5)
        for thread in self._threads:
            thread.join(timeout=5)
        self._gatherers.shutdown(wait=False, cancel_futures=True)
        self._uploaders.shutdown(wait=False, cancel_futures=True)

    # -- submission ---------------------------------------------------------------

    def upload(self, data: bytes | memoryview) -> UploadFuture | None:
        """Start sending a large payload to a worker, on a thread of its own.

        The caller makes the job durable meanwhile (a large file's fsync takes as long
        as the transfer) and then passes this to :meth:`submit`; dropping it instead
        lets Dask forget the data. None if the payload is small or Dask unreachable.
        """
        if len(data) <= SCATTER_ABOVE or not self.cluster.connected:
            return None
        return self._uploaders.submit(self._payload_for_dask, data)

    def submit(
        self, job: Job, payload: bytes | None = None, upload: UploadFuture | None = None
    ) -> None:
        """Send a stored job to Dask, or leave it queued until the scheduler is reachable.

        ``payload`` saves reading the stored payload back when the caller has it;
        ``upload`` is the payload already on its way (see :meth:`upload`).
        Jobs submitted at the same moment by several request threads go to Dask in
        one ``Client.map`` (one graph update for the scheduler): whichever thread
        gets the lock sends everything waiting, the others find their job sent.
        """
        if not self.cluster.connected or job.id in self._tracked:
            return
        if upload is not None:
            argument = upload.result()
        else:
            argument = self._payload_for_dask(
                payload if payload is not None else self.store.read_payload(job.id)
            )
        self._outbox.append((job, argument))
        self._send_outbox()

    def submit_many(self, jobs: list[tuple[Job, bytes]]) -> None:
        """Send stored jobs with their (small) payloads to Dask in one graph update,
        or leave them queued until the scheduler is reachable."""
        if not self.cluster.connected:
            return
        self._outbox.extend(jobs)
        self._send_outbox()

    def _send_outbox(self) -> None:
        with self._lock:
            waiting = []
            while self._outbox:
                waiting.append(self._outbox.popleft())
            if self.cluster.connected:
                self._submit_many_locked(waiting)
            elif waiting:  # they stay queued in the store until the next reconciliation
                self._reconcile_needed.set()

    def _payload_for_dask(self, data: bytes | memoryview) -> bytes | Future:
        """The payload as a task argument: bytes, or for a large one a scattered future.

        A large argument inlined in a task travels through the scheduler; scattered
        directly, it goes straight to a worker (a 256 MB payload: ~0.4 s instead of
        ~1.2 s scattered through the scheduler, ~6-13 s inlined). If the workers cannot
        be reached from here, it goes through the scheduler.
        """
        client = self.client
        if len(data) <= SCATTER_ABOVE or client is None or not self.cluster.workers:
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

    def _submit_many_locked(self, jobs: list[tuple[Job, bytes | Future]]) -> None:
        """Submit jobs with their payloads, one ``Client.map`` per retry count.

        The futures Dask returns are dropped at once (the plugin holds the tasks). A
        job that cannot be submitted stays queued in the store; the next
        reconciliation submits it.
        """
        client = self.client
        assert client is not None
        by_retries: dict[int, list[tuple[Job, bytes | Future]]] = {}
        for job, payload in jobs:
            if job.id not in self._tracked:
                by_retries.setdefault(job.retries, []).append((job, payload))
        for retries, group in by_retries.items():
            ids = [job.id for job, _ in group]
            # Tracked before they are sent: a quick job's outcome event may arrive
            # before this thread runs again.
            self._tracked.update(ids)
            try:
                payloads = [payload for _, payload in group]
                keys = [dask_key(job_id) for job_id in ids]
                options = {"pure": False, "retries": retries or None}
                # Under load nearly every call sends one job: Client.submit builds that
                # graph with ~50 us less CPU (of the request thread) than Client.map.
                if len(group) == 1:
                    client.submit(run_job, ids[0], payloads[0], key=keys[0], **options)
                else:
                    client.map(run_job, ids, payloads, key=keys, **options)
            except Exception:
                log.exception("could not submit %d jobs; will retry", len(group))
                self._tracked.difference_update(ids)
                self._reconcile_needed.set()

    def cancel(self, job: Job) -> None:
        """Stop a job in Dask; the worker running it is restarted through its nanny."""
        with self._lock:
            tracked = job.id in self._tracked
            self._tracked.discard(job.id)
        client = self.client
        if not tracked or client is None:
            return
        worker = self._processing_worker(job)
        try:  # forced: Dask forgets the task even while the plugin or a fetch holds it
            client.cancel([Future(dask_key(job.id), client)], force=True)
        except Exception as exc:
            log.warning("could not cancel job %s in Dask: %s", job.id, exc)
        if worker:
            threading.Thread(target=self._restart_worker, args=(worker,), daemon=True).start()

    def _processing_worker(self, job: Job) -> str | None:
        """The worker the scheduler gave this job to, if any.

        The scheduler is asked first: the store's worker may be unrecorded yet, or stale
        (a job resubmitted after a restart still has the worker of its first run until
        its new start is recorded). Without an answer, the recorded worker of a running
        job is the best guess.
        """
        assert self.client is not None
        key = dask_key(job.id)
        try:
            processing = self.client.processing()
        except Exception:
            return job.worker if job.status == RUNNING else None
        return next((worker for worker, keys in processing.items() if key in keys), None)

    def _restart_worker(self, address: str) -> None:
        try:
            assert self.client is not None
            self.client.restart_workers([address], timeout=60, raise_for_error=False)
        except Exception:
            log.exception("could not restart worker %s", address)

    # -- connection ---------------------------------------------------------------

    def _connect_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self._tick()
            except Exception:
                log.exception("connection check failed")
            self._stopping.wait(self.refresh_interval)

    def _tick(self) -> None:
        """One connection check: (re)connect, refresh the cluster view, reconcile."""
        client = self.client
        if self._needs_new_client(client):
            self.cluster = DISCONNECTED
            client = self._open_client()
            if client is None:
                return
        if client.status != "running":  # Dask is reconnecting by itself
            self.cluster = DISCONNECTED
            return
        try:
            info = client.scheduler_info(n_workers=-1)
        except Exception as exc:
            log.warning("scheduler unreachable: %s", exc)
            self.cluster = DISCONNECTED
            return
        new_scheduler = info.get("id") != self._scheduler_id
        # Dask makes a new stream on each (re)connection: events sent while the link was
        # down are lost, so the reconciliation below looks for their outcomes.
        reconnected = client.scheduler_comm is not self._stream
        self._stream = client.scheduler_comm
        _shorten_send_interval(client)
        if new_scheduler:
            # Before anything is submitted: the plugin must hold every job's task.
            log.info("connected to scheduler %s", info.get("address"))
            client.register_plugin(KeepJobsAlive())
            with self._lock:
                self._tracked.clear()  # an earlier scheduler's tasks died with it
            # A reconnecting client keeps its subscriptions on the scheduler (by client id).
            client.subscribe_topic(STARTED_TOPIC, self._on_started_event)
            client.subscribe_topic(RESULT_TOPIC, self._on_result_event)
            self._scheduler_id = info.get("id")
        self._update_cluster(client, info)
        sweep_due = bool(self._tracked) and time.monotonic() - self._swept_at > SWEEP_INTERVAL
        if new_scheduler or reconnected or sweep_due or self._reconcile_needed.is_set():
            self._reconcile()

    def _needs_new_client(self, client: Client | None) -> bool:
        """No client, a closed one, or one whose reconnection never ends (STUCK_RECONNECT)."""
        if client is None or client.status in ("closing", "closed", "failed"):
            return True
        if client.status == "running":
            self._not_running_since = None
            return False
        now = time.monotonic()
        if self._not_running_since is None:
            self._not_running_since = now
        if now - self._not_running_since <= STUCK_RECONNECT:
            return False
        log.warning("Dask's reconnection is stuck; opening a new client")
        return True

    def _open_client(self) -> Client | None:
        old = self.client
        if old is not None:
            old.close(timeout=1)
        try:
            client = Client(
                self.scheduler,
                timeout=CONNECT_TIMEOUT,
                set_as_default=False,
                deserializers=list(GATEWAY_DESERIALIZERS),
            )
        except Exception as exc:
            reason = str(exc) or type(exc).__name__
            if isinstance(exc, TimeoutError):  # the address took the connection, no scheduler
                reason += f": no answer in {CONNECT_TIMEOUT:g} s"
            log.warning("scheduler %s not reachable (%s); retrying", self.scheduler, reason)
            return None
        with self._lock:
            self.client = client
            self._tracked.clear()  # the reconciliation finds them again
        self._scheduler_id = None
        self._not_running_since = None
        return client

    def _update_cluster(self, client: Client, info: dict[str, Any]) -> None:
        workers = info.get("workers", {})
        versions = self.cluster.python_versions
        if set(workers) != set(self.cluster.workers):
            versions = self._worker_python_versions(client) or versions
        self.cluster = ClusterState(True, info.get("address"), workers, versions)

    def _worker_python_versions(self, client: Client) -> frozenset[str]:
        try:
            reported = client.get_versions(check=False).get("workers", {})
        except Exception:
            return frozenset()
        versions = set()
        for info in reported.values():
            python = (info or {}).get("host", {}).get("python", "")
            versions.add(".".join(python.split(".")[:2]))
        return frozenset(v for v in versions if v)

    def _reconcile(self) -> None:
        """Match every active job in the store with its task on the scheduler.

        A live task is tracked; a task whose outcome is ready (its event was missed) is
        fetched; a job the scheduler does not know is resubmitted.
        """
        self._reconcile_needed.clear()
        self._swept_at = time.monotonic()
        active = self.store.active()
        if not active:
            return
        states = self._scheduler_states([dask_key(job.id) for job in active])
        attached: list[Job] = []
        done: list[str] = []
        lost: list[Job] = []
        missing: set[str] = set()
        with self._lock:
            for job in active:
                state = states.get(dask_key(job.id))
                if state in ("memory", "erred"):
                    if job.id not in self._fetching:
                        done.append(job.id)
                elif state in LIVE_STATES:
                    # Not tracked: found after a restart, or recorded since `active` was
                    # read (then it is done in the store: leave it).
                    current = None if job.id in self._tracked else self._active_job(job.id)
                    if current is not None:
                        attached.append(current)
                elif job.id not in self._tracked:
                    lost.append(job)
                elif job.id in self._missing:  # tracked, yet unknown twice in a row
                    self._tracked.discard(job.id)
                    lost.append(job)
                else:  # maybe only just submitted: look again next time
                    missing.add(job.id)
            self._missing = missing
            self._tracked.update(job.id for job in attached)
            self._tracked.update(done)
            self._fetching.update(done)
        for job in attached:
            if job.status == RUNNING and job.timeout and job.started_at:
                self._arm_deadline(job)
        if done:
            self._gatherers.submit(self._fetch, done)
        resubmit = self._resubmit(lost)
        if attached or done or resubmit:
            log.info(
                "reconciled: %d jobs re-attached, %d resubmitted, %d outcomes fetched",
                len(attached),
                len(resubmit),
                len(done),
            )

    def _active_job(self, job_id: str) -> Job | None:
        """The job as stored now, if it is still queued or running."""
        current = self.store.get(job_id)
        return current if current is not None and current.status in ACTIVE else None

    def _resubmit(self, jobs: list[Job]) -> list[Job]:
        """Submit jobs again from their stored payloads; returns those submitted.

        Payloads are read and sent to workers before taking the lock, so request
        threads keep submitting meanwhile; a job cancelled or tracked in between is
        left out.
        """
        prepared: list[tuple[Job, bytes | Future]] = []
        for job in jobs:
            try:
                prepared.append((job, self._payload_for_dask(self.store.read_payload(job.id))))
            except FileNotFoundError:
                log.error("payload of job %s is missing; it cannot run", job.id)
        with self._lock:
            still_active = [
                (job, payload)
                for job, payload in prepared
                if job.id not in self._tracked and self._active_job(job.id) is not None
            ]
            self._submit_many_locked(still_active)
        return [job for job, _ in still_active]

    def _scheduler_states(self, keys: list[str]) -> dict[str, str]:
        """The scheduler's state of each key it knows; the client is (again) subscribed
        to the outcome events first, so none sent after the states were read is missed."""
        client = self.client
        assert client is not None
        states: dict[str, str] = {}
        for start in range(0, len(keys), _RPC_CHUNK):
            states.update(
                client.sync(
                    client.scheduler.computethis_states,
                    keys=keys[start : start + _RPC_CHUNK],
                    client_id=client.id,
                    topics=[STARTED_TOPIC, RESULT_TOPIC],
                )
            )
        return states

    def _release(self, keys: list[str]) -> None:
        """Let the scheduler forget recorded/cancelled keys held by the keep-alive plugin."""
        client = self.client
        if not keys or client is None or client.status != "running":
            return
        try:
            for start in range(0, len(keys), _RPC_CHUNK):
                client.sync(
                    client.scheduler.computethis_release, keys=keys[start : start + _RPC_CHUNK]
                )
        except Exception as exc:
            log.warning("could not release %d keys: %s", len(keys), exc)

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

    def _on_result_event(self, event: tuple[float, dict[str, Any]]) -> None:
        self._inbox.put(("result", event[1]))

    def _record_loop(self) -> None:
        self.store.lazy_commits_on_this_thread()
        self.store.writes_first_on_this_thread()
        while True:
            timeout = None
            if self._deadlines:
                timeout = max(0.0, self._deadlines[0][0] - time.time())
            if self._unreleased:
                due = max(0.0, self._release_at - time.monotonic())
                timeout = due if timeout is None else min(timeout, due)
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
                self._release_due()
            except Exception:
                log.exception("recorder failed on a batch of %d events", len(batch))
                self._reconcile_needed.set()
            del batch  # may hold large results: not kept until the next event

    def _handle(self, batch: list[tuple[str, Any]]) -> None:
        """Apply one batch of events: starts, outcomes, and fetched outcomes.

        An outcome event either carries the outcome (a small one) or says where to get
        it (a larger result, or a failure the scheduler reported): those are fetched by
        a small pool of threads, so a result stuck on an unreachable worker delays only
        its own fetch; the pool sends them back here as a "fetched" event.
        """
        outcomes: list[Outcome] = []
        fetch: list[str] = []
        for kind, item in batch:
            if kind == "started":
                self._started(item)
            elif kind == "result":
                self._result_event(item, outcomes, fetch)
            elif kind == "fetched":
                outcomes += item
        if fetch:
            self._gatherers.submit(self._fetch, fetch)
        recorded = self._record(outcomes) if outcomes else []
        if outcomes:  # done, whether recorded now or before: no more events to take
            with self._lock:
                self._tracked.difference_update(outcome.job_id for outcome in outcomes)
        if recorded:
            if not self._unreleased:
                self._release_at = time.monotonic() + RELEASE_DELAY
            self._unreleased += [dask_key(job_id) for job_id in recorded]

    def _result_event(
        self, event: dict[str, Any], outcomes: list[Outcome], fetch: list[str]
    ) -> None:
        """Sort one outcome event of a tracked job into ``outcomes`` or ``fetch``."""
        job_id = event.get("job")
        if not isinstance(job_id, str) or not self._is_tracked(job_id):
            return  # another gateway's job, or one already recorded or cancelled
        if "envelope" in event:
            try:
                outcome = _outcome(job_id, event["envelope"])
            except (KeyError, TypeError, ValueError) as exc:
                log.warning("malformed outcome for %s (%s); fetching it", job_id, exc)
            else:
                outcomes.append(outcome)  # untracked by _handle once recorded
                return
        with self._lock:
            if job_id in self._fetching:
                return
            self._fetching.add(job_id)
        fetch.append(job_id)

    def _is_tracked(self, job_id: str) -> bool:
        """Whether events of ``job_id`` are ours to record: a tracked job, or one still
        active in the store that a reconciliation is about to attach (the job ended after
        the scheduler's states were read, before it was tracked), which is tracked now."""
        if job_id in self._tracked:
            return True
        if self._active_job(job_id) is None:
            return False
        with self._lock:
            self._tracked.add(job_id)
        return True

    def _release_due(self) -> None:
        """Release recorded keys once RELEASE_DELAY has passed since the first of them.

        One RPC per RELEASE_DELAY instead of one per recorded batch (under load,
        nearly one per job), sent off this thread: recording need not wait for it.
        """
        if self._unreleased and time.monotonic() >= self._release_at:
            keys, self._unreleased = self._unreleased, []
            self._gatherers.submit(self._release, keys)

    def _record(self, outcomes: list[Outcome]) -> list[str]:
        """Store outcomes (each once), wake their waiters and count them; returns the
        ids recorded (a job already done or cancelled is not recorded again)."""
        recorded = self.store.record(outcomes)
        self.waiters.notify(recorded)
        if self.on_recorded is not None:
            ids = set(recorded)
            self.on_recorded([outcome for outcome in outcomes if outcome.job_id in ids])
        return recorded

    def _fetch(self, job_ids: list[str]) -> None:
        """(fetch thread) Get the outcomes of finished tasks and hand them to the recorder.

        A task not done within FETCH_TIMEOUT stays tracked (its outcome event, or the
        next sweep, brings it back here); one the scheduler no longer has is left to
        the reconciliation.
        """
        outcomes: list[Outcome] = []
        settled: list[str] = []
        try:
            futures = self._futures_when_done(job_ids)
            pending = {job_id_of(f.key) for f in futures if f.status == "pending"}
            settled = [job_id for job_id in job_ids if job_id not in pending]
            outcomes = self._outcomes_of([f for f in futures if f.status in ("finished", "error")])
            for outcome in outcomes:  # large results written here, not on the recorder
                self.store.stage_result(outcome)
        except Exception:
            log.exception("fetching %d outcomes failed; will reconcile", len(job_ids))
            for outcome in outcomes:
                if outcome.result_file is not None:
                    outcome.result_file.unlink(missing_ok=True)
            outcomes = []
            self._reconcile_needed.set()
        if len(outcomes) < len(settled):
            self._reconcile_needed.set()  # gone, cancelled, or failed here: look again
        with self._lock:
            self._fetching.difference_update(job_ids)
            self._tracked.difference_update(settled)
        self._inbox.put(("fetched", outcomes))

    def _futures_when_done(self, job_ids: list[str]) -> list[Future]:
        """Futures for the jobs' tasks the scheduler has, once all are done or
        FETCH_TIMEOUT has passed."""
        client = self.client
        if client is None:
            return []
        # The futures first: the scheduler's answer to the attach goes to their state.
        futures = [Future(dask_key(job_id), client) for job_id in job_ids]
        known: set[str] = set()
        for start in range(0, len(futures), _RPC_CHUNK):
            chunk = [future.key for future in futures[start : start + _RPC_CHUNK]]
            known.update(
                client.sync(client.scheduler.computethis_attach, keys=chunk, client_id=client.id)
            )
        futures = [future for future in futures if future.key in known]
        deadline = time.monotonic() + FETCH_TIMEOUT
        for future in futures:
            with contextlib.suppress(TimeoutError):  # exception() waits until it is done
                future.exception(timeout=max(0.0, deadline - time.monotonic()))
        return futures

    def _outcomes_of(self, futures: list[Future]) -> list[Outcome]:
        """The outcomes of done futures: gathered results, or their failures."""
        assert self.client is not None
        finished = [future for future in futures if future.status == "finished"]
        outcomes = [self._failure(future) for future in futures if future.status == "error"]
        try:
            results = self.client.gather(finished)
        except Exception:  # one result lost: fetch one by one, skip what is gone
            results = []
            for future in finished:
                try:
                    results.append(future.result(timeout=30))
                except Exception as exc:
                    log.warning("result of %s lost (%s); will reconcile", future.key, exc)
                    results.append(None)
                    self._reconcile_needed.set()
        outcomes += [
            _outcome(job_id_of(future.key), data)
            for future, data in zip(finished, results, strict=True)
            if data is not None
        ]
        return outcomes

    def _started(self, event: dict[str, Any]) -> None:
        job_id = event.get("job")
        if not isinstance(job_id, str) or not self._is_tracked(job_id):
            return
        if self.store.mark_started(job_id, event["worker"], event["time"], event.get("attempt")):
            job = self.store.get(job_id)
            if job is not None and job.timeout:
                self._arm_deadline(job)

    def _arm_deadline(self, job: Job) -> None:
        assert job.timeout and job.started_at
        heapq.heappush(self._deadlines, (job.started_at + job.timeout, job.id, job.attempts))

    def _failure(self, future: Future) -> Outcome:
        job_id = job_id_of(future.key)
        try:
            exc = future.exception(timeout=5)
        except Exception as error:  # the exception itself could not be fetched
            exc = error
        if isinstance(exc, JobFailed):
            return _outcome(job_id, exc.envelope)
        if type(exc).__name__ == "KilledWorker":
            deaths = getattr(exc, "allowed_failures", 0) + 1
            message = (
                f"the worker died while running this job, {deaths} times (killed, out of "
                "memory, or os._exit in the function); it will not be retried"
            )
            error = error_info("WorkerDied", message)
        else:
            error = error_info(type(exc).__name__, str(exc))
        return Outcome(job_id, ok=False, error=error)

    def _expire_deadlines(self) -> None:
        now = time.time()
        while self._deadlines and self._deadlines[0][0] <= now:
            _, job_id, attempt = heapq.heappop(self._deadlines)
            job = self.store.get(job_id)
            if job is None or job.status not in ACTIVE or job.attempts != attempt:
                continue
            error = error_info(
                "TimeoutError",
                f"the job ran longer than its timeout of {job.timeout:g} s and was stopped",
            )
            outcome = Outcome(job_id, ok=False, error=error, worker=job.worker)
            self._record([outcome])
            self.cancel(job)


def _shorten_send_interval(client: Client) -> None:
    """Let the client's stream to the scheduler send every 1 ms instead of every 10 ms.

    Dask batches a client's messages and sends at most one batch per interval (10 ms,
    not configurable). A gateway sends a release of the last job's key and then, a
    moment later, the next job: with 10 ms, that next job waits for the window. The
    stream object is recreated on every reconnection, so this runs on each check.
    """
    comm = getattr(client, "scheduler_comm", None)
    if comm is not None and getattr(comm, "interval", 0) > SEND_INTERVAL:
        comm.interval = SEND_INTERVAL


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
        logs=envelope.logs,
    )
