"""Deployed model classes: ``/deployments`` (deploy a class once, list them),
``/deployments/<id>`` (read, close), ``/deployments/<id>/calls`` (call a method: a job
of kind ``model``). The constructor and call payloads are stored and forwarded, never
unpickled. See :mod:`gateway.api.artifacts` for the artifacts a deployment loads."""

from __future__ import annotations

import itertools
import re
import uuid
from typing import Any

from flask import Response, request
from flask_restful import Resource

from gateway.api import params
from gateway.api.artifacts import artifact_not_found, checked_digest
from gateway.api.bodies import require_payload_type, stage_call
from gateway.api.errors import ApiError
from gateway.api.jobs import JobList, cancel
from gateway.api.ownership import visible_tenant
from gateway.api.submit import admit, check_python_version, job_headers, job_spec
from gateway.services import services
from gateway.store import ACTIVE, FAILED, JOB_ID, MODEL, Job, StagedPayload
from gateway.store.deployments import CLOSED, Deployment, Deployments
from gateway.waiting import answer_after
from wire.http import CONSTRUCT_PAYLOAD

MAX_REPLICAS = 64
MAX_ARTIFACTS = 64
MAX_METHODS = 1024
METHOD = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,199}\Z")
_turns = itertools.count()  # which replica goes first among equally busy ones


def _own_deployment(deployment_id: str) -> Deployment:
    deployment = None
    if JOB_ID.match(deployment_id):
        deployment = services().store.deployments.get(deployment_id, tenant=visible_tenant())
    if deployment is None:
        raise ApiError(
            404,
            "deployment_not_found",
            f"you have no deployment {deployment_id[:80]!r}: deploy the class first "
            "(Cls.deploy(...)) or list yours with GET /api/v1/deployments",
        )
    return deployment


STOPPED = frozenset({FAILED, "cancelled"})  # construct job statuses of a replica not built


def _describe(deployment: Deployment) -> dict[str, Any]:
    """The deployment's JSON with its replicas' construct jobs and a status derived from
    them: starting, ready, failed (a constructor raised, and no call of that replica has
    been answered since) or closed."""
    store = services().store.deployments
    construct = store.construct_jobs(deployment.id)
    workers = store.replica_workers(deployment.id, deployment.replicas)
    status = deployment.status
    if status != CLOSED:
        # A replica whose construct job failed but which answered a call since (built
        # again by that call) is ready.
        failed = {item["replica"]: item["job"] for item in construct if item["status"] in STOPPED}
        answering = store.answered_since(deployment.id, failed) if failed else set()
        statuses = {item["status"] for item in construct if item["replica"] not in answering}
        status = (
            "failed" if statuses & STOPPED else "starting" if statuses & set(ACTIVE) else "ready"
        )
    replicas = [
        {
            "replica": item["replica"],
            "construct_job": item["job"],
            "worker": workers.get(item["replica"]),
        }
        for item in construct
    ]
    return deployment.to_json({"status": status, "replica_info": replicas})


class DeploymentList(Resource):
    """``/deployments``."""

    def get(self) -> dict[str, Any]:
        """The caller's deployments, newest first (``?closed=1``: closed ones too)."""
        store = services().store.deployments
        rows = store.list(visible_tenant(), include_closed=params.flag(request.args, "closed"))
        return {"deployments": [_describe(row) for row in rows]}

    def post(self) -> tuple[dict[str, Any], int, dict[str, str]]:
        """Deploy a class: the body is its constructor payload (dill bytes the gateway
        stores and forwards); ``?replicas=N`` instances are built, one construct job each
        (listed in the answer; the SDK waits for them); ``?artifacts=`` the SHA-256 of each
        artifact it loads, comma-separated, each uploaded first. 201 once it is durable."""
        shared = services()
        require_payload_type()
        spec = job_spec()
        replicas = params.integer(request.args, "replicas", default=1, low=1, high=MAX_REPLICAS)
        digests = _artifacts()
        methods = _methods()
        check_python_version(spec.python_version, shared.dispatcher.cluster.python_versions)
        for digest in digests:
            if not shared.store.artifacts.exists(spec.tenant, digest):
                raise artifact_not_found(digest)
        staged = stage_call(shared.store, shared.config.max_body)
        constructor = bytes(staged.view())
        shared.store.discard(staged)
        deployment_id = uuid.uuid4().hex
        deployment = shared.store.deployments.create(
            deployment_id, spec.tenant, spec.name, replicas, digests, methods, constructor
        )
        spec.kind, spec.idempotency_key = MODEL, None
        for replica in range(replicas):
            _create_call(deployment_id, replica, spec, CONSTRUCT_PAYLOAD, construct=True)
        headers = {"Location": f"{request.script_root}{request.path}/{deployment_id}"}
        return _describe(deployment), 201, headers


def _artifacts() -> list[str]:
    raw = request.args.get("artifacts", "")
    digests = [item for item in raw.split(",") if item] if raw else []
    if len(digests) > MAX_ARTIFACTS:
        raise ApiError(
            400, "invalid_parameter", f"a deployment loads at most {MAX_ARTIFACTS} artifacts"
        )
    return sorted({checked_digest(digest) for digest in digests})


def _methods() -> list[str]:
    raw = request.args.get("methods", "")
    names = [item for item in raw.split(",") if item]
    if len(names) > MAX_METHODS or not all(METHOD.match(name) for name in names):
        raise ApiError(
            400,
            "invalid_parameter",
            f"methods must be at most {MAX_METHODS} comma-separated public method names",
        )
    return names


def _create_call(
    deployment_id: str, replica: int, spec: Any, payload: bytes, construct: bool = False
) -> tuple[Job, bool]:
    """Store a model job of the deployment's ``replica`` (a construct job is submitted
    here; a call is submitted by its request, which may wait for it)."""
    shared = services()
    staged = StagedPayload(uuid.uuid4().hex, None, len(payload), payload)
    job, created = shared.store.create(
        spec,
        staged,
        also=lambda db: Deployments.add_call(db, staged.job_id, deployment_id, replica, construct),
    )
    if created:
        shared.metrics.submitted.inc()
        if construct:
            shared.dispatcher.submit(job, payload)
    return job, created


class DeploymentItem(Resource):
    """``/deployments/<id>``."""

    def get(self, deployment_id: str) -> dict[str, Any]:
        """The deployment: replicas, their workers, artifacts, status."""
        return _describe(_own_deployment(deployment_id))

    def delete(self, deployment_id: str) -> dict[str, Any]:
        """Close the deployment: its queued and running calls are cancelled, its replicas
        dropped from the workers' memory; later calls are refused (410)."""
        shared = services()
        deployment = _own_deployment(deployment_id)
        closed = shared.store.deployments.close(deployment.id)
        for job_id in shared.store.deployments.active_calls(deployment.id):
            job = shared.store.get(job_id)
            if job is not None:
                cancel(job)
        shared.dispatcher.submitter.models.forget(deployment.id)
        return {"id": deployment.id, "deleted": True, "was_active": closed}


class DeploymentCalls(Resource):
    """``/deployments/<id>/calls``."""

    def post(self, deployment_id: str) -> Response | tuple[dict[str, Any], int, dict[str, str]]:
        """Call a method of a deployment: the body is dill bytes of ``(method name, args,
        kwargs)``. The call is a job (kind ``model``) on the least busy replica, answered
        as ``POST /jobs`` answers (``?wait=SECONDS`` included)."""
        shared = services()
        config = shared.config
        require_payload_type()
        spec = job_spec()
        spec.kind = MODEL
        wait = params.wait(request.args, config.max_wait)
        deployment = _own_deployment(deployment_id)
        staged = stage_call(shared.store, config.max_body)  # 4xx for a body that is no call
        payload = bytes(staged.view())
        shared.store.discard(staged)
        if deployment.status == CLOSED:
            raise ApiError(
                410,
                "deployment_closed",
                f"deployment {deployment.id} was closed: deploy the class again",
            )
        existing = admit(spec)
        if existing is not None:
            return existing.to_json(), 200, job_headers(existing)
        job, created = _create_call(deployment.id, _least_busy(deployment), spec, payload)
        headers = job_headers(job)
        if not created:
            return job.to_json(), 200, headers
        return answer_after(JobList._submitted(job, payload, None, wait, headers))


def _least_busy(deployment: Deployment) -> int:
    busy = services().store.deployments.busy(deployment.id)
    count = deployment.replicas
    turn = next(_turns) % count
    return min(range(count), key=lambda r: (busy.get(r, 0), (r - turn) % count))
