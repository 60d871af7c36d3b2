"""Sending the jobs of deployed model classes to Dask (see :mod:`worker.models`).

Each call is a task of :func:`worker.models.run_model` under its job's key, pinned to
its replica's worker (``workers=[address]``, no stealing: two workers must not both
build the same replica). A small constructor payload (up to 64 KiB) rides in each
task: the worker unpickles it only when it has no replica yet. A larger one, and every
artifact, goes to Dask once as a held task that returns its bytes (keys
``ctmodel-<id>`` and ``ctartifact-<sha256>``, held by this gateway's client): a call
depends on them, so a worker fetches them the first time it serves the deployment and
finds them in its memory afterwards; if a worker holding them dies, Dask computes them
again from the task (the bytes are in the task itself). If a replica's worker dies, the keep-alive
plugin lets its pinned calls run on any worker (:mod:`scheduler.plugin`), where the
replica is rebuilt; later calls are pinned to the least busy worker alive.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from distributed import Client, Future

from gateway.dask.link import DaskLink, dask_key
from gateway.store import Job, JobStore
from gateway.store.blobs import map_file
from worker.models import drop_deployment, run_model

log = logging.getLogger(__name__)

CONSTRUCTOR_PREFIX = "ctmodel-"
ARTIFACT_PREFIX = "ctartifact-"
INLINE_CONSTRUCTOR = 64 * 1024  # bytes: a constructor up to this size rides in each task


def hold(data: bytes) -> bytes:
    """A held task's function: its bytes, as they are."""
    return data


class ModelSender:
    """Sends model jobs pinned to their replicas' workers; holds the deployments'
    constructor and artifact tasks on the gateway's Dask client."""

    def __init__(self, link: DaskLink, store: JobStore) -> None:
        self._link = link
        self._store = store
        self._lock = threading.Lock()
        self._client_id: int | None = None
        self._held: dict[str, Future] = {}  # held keys of the current client
        self._placed: dict[tuple[str, int], str] = {}  # replica: the worker it went to
        self._small: dict[str, bytes] = {}  # small constructors, sent inline with each call

    def send(
        self, client: Client, jobs: list[tuple[Job, tuple[Any, ...]]], retries: int
    ) -> list[str]:
        """Submit model jobs (with their payloads as task arguments); the ids sent."""
        sent = []
        for job, arguments in jobs:
            try:
                self._send_one(client, job, arguments[0], retries)
                sent.append(job.id)
            except Exception:
                log.exception("could not send model job %s", job.id)
        return sent

    def forget(self, deployment_id: str) -> None:
        """A deployment was closed: let its constructor go and drop its replicas on
        every worker (in the background)."""
        with self._lock:
            self._held.pop(CONSTRUCTOR_PREFIX + deployment_id, None)
            self._small.pop(deployment_id, None)
            for key in [key for key in self._placed if key[0] == deployment_id]:
                del self._placed[key]
        client = self._link.client
        if client is not None:
            threading.Thread(
                target=_drop_everywhere, args=(client, deployment_id), daemon=True
            ).start()

    def _send_one(self, client: Client, job: Job, payload: Any, retries: int) -> None:
        found = self._store.deployments.call_of(job.id)
        if found is None:
            raise LookupError(f"job {job.id} is of no deployment")
        deployment_id, replica = found
        deployment = self._store.deployments.get(deployment_id)
        constructor = self._constructor(client, deployment_id)
        artifacts: dict[str, Future] = {}
        if deployment is not None and constructor is not None:
            for digest in deployment.artifacts:
                try:
                    artifacts[digest] = self._artifact(client, deployment.tenant, digest)
                except FileNotFoundError:  # deleted: a replica still to build says so
                    log.warning("artifact %s of deployment %s is gone", digest, deployment_id)
        worker = self._worker_for(client, deployment_id, replica)
        options: dict[str, Any] = {"key": dask_key(job.id), "pure": False}
        if retries:
            options["retries"] = retries
        if worker is not None:
            options.update(workers=[worker], allow_other_workers=False)
        client.submit(
            run_model, job.id, payload, deployment_id, replica, constructor, artifacts, **options
        )

    def _worker_for(self, client: Client, deployment_id: str, replica: int) -> str | None:
        """The worker the replica lives on: where it was placed, else where it last ran,
        else the worker with the fewest replicas of this deployment and jobs."""
        alive = set(self._link.cluster.workers)
        key = (deployment_id, replica)
        with self._lock:
            placed = self._placed.get(key)
        if placed in alive:
            return placed
        recorded = self._store.deployments.replica_worker(deployment_id, replica)
        if recorded not in alive:
            recorded = self._least_busy(client, deployment_id, alive)
        if recorded is not None:
            with self._lock:
                self._placed[key] = recorded
        return recorded

    def _least_busy(self, client: Client, deployment_id: str, alive: set[str]) -> str | None:
        try:
            processing = client.processing()
        except Exception:
            processing = {}
        candidates = sorted(set(processing) & alive or alive)
        if not candidates:
            return None
        with self._lock:
            siblings = [w for (dep, _), w in self._placed.items() if dep == deployment_id]
        return min(
            candidates,
            key=lambda w: (siblings.count(w), len(processing.get(w, ())), w),
        )

    def _constructor(self, client: Client, deployment_id: str) -> bytes | Future | None:
        """The constructor as a task argument: its bytes if small (cheaper for Dask than a
        dependency), else a held task; None once the deployment is closed."""
        key = CONSTRUCTOR_PREFIX + deployment_id
        with self._lock:
            small = self._small.get(deployment_id)
        if small is not None:
            return small
        future = self._held_future(client, key)
        if future is not None:
            return future
        data = self._store.deployments.constructor(deployment_id)
        if data is None:
            return None
        if len(data) <= INLINE_CONSTRUCTOR:
            with self._lock:
                self._small[deployment_id] = data
            return data
        return self._hold(client, key, data)

    def _artifact(self, client: Client, tenant: str, digest: str) -> Future:
        key = ARTIFACT_PREFIX + digest
        future = self._held_future(client, key)
        if future is not None:
            return future
        data = bytes(map_file(self._store.artifacts.path(tenant, digest)))
        return self._hold(client, key, data)

    def _held_future(self, client: Client, key: str) -> Future | None:
        with self._lock:
            if self._client_id != id(client):  # a new Dask client: hold everything again
                self._client_id = id(client)
                self._held.clear()
                self._placed.clear()
            future = self._held.get(key)
        if future is not None and future.status in ("lost", "cancelled", "error"):
            return None
        return future

    def _hold(self, client: Client, key: str, data: bytes) -> Future:
        future = client.submit(hold, data, key=key, pure=False)
        with self._lock:
            self._held[key] = future
        return future


def _drop_everywhere(client: Client, deployment_id: str) -> None:
    try:
        client.run(drop_deployment, deployment_id)
    except Exception as exc:
        log.warning("could not drop deployment %s on the workers: %s", deployment_id, exc)
