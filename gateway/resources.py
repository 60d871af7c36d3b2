"""REST resources of API v1. Request bodies and results are stored and forwarded as bytes."""

from __future__ import annotations

import itertools
from typing import IO, Any, TypeVar

from flask import Response, request
from flask_restful import Resource

from gateway import params
from gateway.context import gateway, is_admin, tenant, tenant_scope
from gateway.errors import ApiError, not_found
from gateway.outcomes import (
    PAYLOAD_TYPE,
    job_json_with_exception,
    outcome_response,
    stream_outcomes,
)
from gateway.payload import InvalidPayload, check_call_payload
from gateway.store import (
    ACTIVE,
    STATUSES,
    IncompleteBody,
    Job,
    JobSpec,
    PayloadTooLarge,
    batch_keys,
)
from wire import batch_body, limits, outcome_frames
from wire.http import (
    DILL_HEADER,
    JOB_HEADER,
    JOBS_PATH,
    PYTHON_HEADER,
)

IDEMPOTENCY_HEADER = "Idempotency-Key"
MAX_TIMEOUT = 30 * 24 * 3600.0
BATCH_FORMAT = "send each call's dill bytes after its length as 8 bytes, big-endian"
T = TypeVar("T")


def _body_stream(length: int | None) -> IO[bytes]:
    """The request body: the server's own input when the Content-Length is known.

    stage_payload reads no more than ``length`` from it. werkzeug's ``request.stream``
    wrapper copies every block twice more: ~0.5 s of a 256 MB upload here, against
    ~0.1-0.3 s read directly. A chunked body goes through the wrapper.
    """
    return request.environ["wsgi.input"] if length is not None else request.stream


def _too_large(max_body: int) -> ApiError:
    return ApiError(413, "payload_too_large", f"the body is larger than {max_body} bytes")


def own_job(job_id: str) -> Job:
    """The caller's job, or 404 (another tenant's job looks exactly like a missing one)."""
    return found(job_id, gateway().store.get(job_id, tenant=tenant_scope()))


def own_job_with_result(job_id: str) -> tuple[Job, bytes | None]:
    """Like :func:`own_job`, plus the result bytes when they are in the job's row."""
    return found(job_id, gateway().store.get_with_result(job_id, tenant=tenant_scope()))


def found(job_id: str, read: T | None) -> T:
    """What the store read for the job; 404 if it read nothing (no such job, or not
    the caller's: the store's reads take the caller's ``tenant_scope()``)."""
    if read is None:
        raise not_found(job_id)
    return read


def cancel(job: Job) -> bool:
    """Cancel an active job (restarting its worker if it runs); False if it was done."""
    gw = gateway()
    if job.status not in ACTIVE or not gw.store.cancel(job.id):
        return False
    gw.dispatcher.cancel(job)
    gw.waiters.notify([job.id])
    return True


class JobList(Resource):
    def post(self) -> Response | tuple[dict[str, Any], int, dict[str, str]]:
        """Store a call (dill bytes of ``(func, args, kwargs)``) as a job and queue it.

        Answers 201 with the job's JSON once the job is durably stored; 200 with the
        existing job when the ``Idempotency-Key`` was already used by this tenant.
        With ``?wait=SECONDS`` it waits that long for the job: 200 with the result
        bytes if it finished, 201 with its JSON (and error) otherwise.
        """
        gw = gateway()
        _require_payload_type()
        spec = _job_spec()
        wait = params.number(request.args, "wait", default=0.0, low=0.0, high=gw.config.max_wait)
        existing, active = gw.store.admission(spec.tenant, spec.idempotency_key)
        if existing is not None:
            return existing.to_json(), 200, _job_headers(existing)
        _check_python_version(spec.python_version, gw.dispatcher.cluster.python_versions)
        if active >= gw.config.max_queued:
            raise _too_many_queued(gw.config.max_queued)
        length = request.content_length
        if length is not None and length > gw.config.max_body:
            raise _too_large(gw.config.max_body)
        try:
            staged = gw.store.stage_payload(_body_stream(length), gw.config.max_body, length)
        except PayloadTooLarge:
            raise _too_large(gw.config.max_body) from None
        except IncompleteBody as exc:
            raise ApiError(400, "incomplete_body", f"{exc}; send the whole body") from None
        try:
            if staged.size == 0:
                raise InvalidPayload("the body is empty; send dill.dumps((func, args, kwargs))")
            check_call_payload(staged.view())
        except InvalidPayload as exc:
            gw.store.discard(staged)
            raise ApiError(400, "invalid_payload", str(exc)) from None
        # A large payload starts on its way to a worker while create() makes it durable.
        upload = gw.dispatcher.upload(staged.view()) if staged.data is None else None
        job, created = gw.store.create(spec, staged)
        headers = _job_headers(job)
        if not created:
            return job.to_json(), 200, headers
        gw.metrics.submitted.inc()
        with gw.waiters.watch(job.id) as done:
            gw.dispatcher.submit(job, staged.data, upload=upload)
            if not wait or not done.wait(wait):
                return job.to_json(), 201, headers
        # Done within ?wait: answer the outcome at once (one round trip per call).
        job, result = own_job_with_result(job.id)
        outcome = outcome_response(job, result)
        if isinstance(outcome, Response):
            outcome.headers.update(headers)
            return outcome
        return job_json_with_exception(job), 201, headers

    def get(self) -> dict[str, Any]:
        """The caller's jobs, newest first, ``limit`` at a time; with ``idempotency_key``,
        the caller's job submitted with that key (none or one)."""
        args = request.args
        key = params.idempotency_key(args)
        if key is not None:
            job = gateway().store.find_by_key(tenant(), key)
            return {"jobs": [job.to_json()] if job else [], "next_cursor": None}
        status = params.choice(args, "status", STATUSES)
        limit = params.integer(args, "limit", default=50, low=1, high=1000)
        cursor = args.get("cursor")
        before = None
        if cursor:
            if not (cursor.isascii() and cursor.isdigit()) or len(cursor) > 18:
                raise ApiError(400, "invalid_parameter", f"cursor {cursor!r} is not one we issued")
            before = int(cursor)
        store = gateway().store
        jobs = store.list(tenant=tenant_scope(), status=status, limit=limit, before_seq=before)
        next_cursor = str(jobs[-1].seq) if len(jobs) == limit else None
        return {"jobs": [job.to_json() for job in jobs], "next_cursor": next_cursor}


class JobBatch(Resource):
    def post(self) -> Response | tuple[dict[str, Any], int]:
        """Store several calls as jobs in one request and one transaction, and queue them.

        The body holds each call's dill bytes after its length (8 bytes, big-endian;
        see :mod:`wire.batch_body`); each call is at most ``MAX_CALL_BYTES``
        (64 KiB, stored in its job's row).
        The query options apply to every job. Answers 201 with ``{"jobs": [...]}`` in
        the body's order once all are stored; 200 with the same jobs when the
        ``Idempotency-Key`` was already used. Any bad call refuses the whole batch.
        With ``?wait=SECONDS`` the answer is a stream of outcome frames, as from
        ``POST /results``, whose first frame holds ``{"jobs": [...]}``: the jobs' outcomes
        follow as they finish, within that many seconds.
        """
        gw = gateway()
        _require_payload_type()
        spec = _job_spec()
        wait = params.number(request.args, "wait", default=0.0, low=0.0, high=gw.config.max_wait)
        payloads = _batch_payloads(_read_body(min(gw.config.max_body, limits.MAX_BATCH_BYTES)))
        if len(payloads) > gw.config.max_queued:  # would never fit: a 429 would be retried
            raise ApiError(
                413,
                "batch_too_large",
                f"the batch holds {len(payloads)} calls and a tenant may have at most "
                f"{gw.config.max_queued} queued or running jobs (see --max-queued): send at "
                f"most {gw.config.max_queued} calls per batch",
            )
        first_key = batch_keys(spec.idempotency_key, 1)[0]
        existing, active = gw.store.admission(spec.tenant, first_key)
        if existing is not None:
            jobs = gw.store.find_batch(spec.tenant, spec.idempotency_key, len(payloads))
            return _batch_answer(jobs, 200, wait)
        _check_python_version(spec.python_version, gw.dispatcher.cluster.python_versions)
        if active + len(payloads) > gw.config.max_queued:
            room = max(0, gw.config.max_queued - active)
            raise _too_many_queued(gw.config.max_queued, room=room)
        jobs, created = gw.store.create_many(spec, payloads)
        if created:
            gw.metrics.submitted.inc(len(jobs))
            gw.dispatcher.submit_many(list(zip(jobs, payloads, strict=True)))
        return _batch_answer(jobs, 201 if created else 200, wait)


def _batch_answer(
    jobs: list[Job], status: int, wait: float
) -> Response | tuple[dict[str, Any], int]:
    """The batch's jobs as JSON; with ``wait``, as the first frame of their outcomes."""
    body = {"jobs": [job.to_json() for job in jobs]}
    if not wait:
        return body, status
    head = [outcome_frames.frame_head(body, 0)]
    return _outcomes_answer([job.id for job in jobs], wait, status, head)


def _outcomes_answer(
    job_ids: list[str], wait: float, status: int = 200, head: list[bytes] | None = None
) -> Response:
    """A stream of the jobs' outcome frames (after ``head``) as they are done."""
    gw = gateway()
    outcomes = stream_outcomes(gw.store, gw.waiters, job_ids, wait, gw.config.result_ttl)
    frames = itertools.chain(head or [], outcomes)
    return Response(frames, status=status, mimetype=outcome_frames.MEDIA_TYPE)


def _batch_payloads(body: bytes) -> list[bytes]:
    """The calls of a batch body, each checked like a single call's body; else 4xx."""
    try:
        views = batch_body.decode(body, limits.MAX_CALLS)
    except batch_body.InvalidBatch as exc:
        raise ApiError(400, "invalid_batch", f"{exc}; {BATCH_FORMAT}") from None
    if not views:
        raise ApiError(400, "invalid_batch", f"the batch holds no calls; {BATCH_FORMAT}")
    for index, view in enumerate(views):
        if len(view) > limits.MAX_CALL_BYTES:
            raise ApiError(
                413,
                "call_too_large",
                f"call {index} is {len(view)} bytes; a batch holds calls of up to "
                f"{limits.MAX_CALL_BYTES} bytes: post larger ones alone to {JOBS_PATH}",
            )
        try:
            if not len(view):
                raise InvalidPayload("it is empty; send dill.dumps((func, args, kwargs))")
            check_call_payload(view)
        except InvalidPayload as exc:
            raise ApiError(400, "invalid_payload", f"call {index}: {exc}") from None
    return [bytes(view) for view in views]


class JobItem(Resource):
    def get(self, job_id: str) -> dict[str, Any]:
        return own_job(job_id).to_json()

    def delete(self, job_id: str) -> dict[str, Any]:
        """Cancel a queued or running job; delete a finished, failed or cancelled one."""
        gw = gateway()
        job = own_job(job_id)
        if cancel(job):
            return {**own_job(job_id).to_json(), "deleted": False}
        gw.store.delete(job.id)
        gw.waiters.notify([job.id])
        return {"id": job.id, "deleted": True}


class JobCancel(Resource):
    def post(self, job_id: str) -> dict[str, Any]:
        """Cancel a queued or running job; a job already done is left as it is."""
        cancel(own_job(job_id))
        return own_job(job_id).to_json()


class JobResult(Resource):
    def get(self, job_id: str) -> Response | tuple[dict[str, Any], int]:
        """Long-poll for the outcome: bytes when finished, error JSON when failed."""
        gw = gateway()
        wait = params.number(request.args, "wait", default=0.0, low=0.0, high=gw.config.max_wait)
        with gw.waiters.watch(job_id) as done:
            job, result = own_job_with_result(job_id)
            if not job.done and wait:
                done.wait(wait)
                job, result = own_job_with_result(job_id)
        return outcome_response(job, result) or (job.to_json(), 202)


class JobResults(Resource):
    def post(self) -> Response:
        """Wait for several jobs and stream each one's outcome as soon as it is done.

        The body is ``{"jobs": [id, ...]}`` (at most 10,000 ids, all the caller's). The
        answer is a stream of frames (:mod:`wire.outcome_frames`) in the order
        the jobs finish; it ends when every job is sent or ``?wait=SECONDS`` (default
        0: only the jobs already done) has passed.
        """
        gw = gateway()
        wait = params.number(request.args, "wait", default=0.0, low=0.0, high=gw.config.max_wait)
        job_ids = _requested_job_ids()
        owned = gw.store.tenants(job_ids, tenant=tenant_scope())
        for job_id in job_ids:
            found(job_id, owned.get(job_id))
        return _outcomes_answer(job_ids, wait)


def _requested_job_ids() -> list[str]:
    """The ``jobs`` list of a JSON body (400 unless it is 1 to MAX_JOBS job ids)."""
    if request.mimetype != "application/json":
        raise ApiError(
            415,
            "unsupported_media_type",
            'send {"jobs": [job ids]} with Content-Type: application/json',
        )
    body = request.get_json(silent=True)
    job_ids = body.get("jobs") if isinstance(body, dict) else None
    if (
        not isinstance(job_ids, list)
        or not 1 <= len(job_ids) <= limits.MAX_JOBS
        or not all(isinstance(job_id, str) for job_id in job_ids)
    ):
        raise ApiError(
            400,
            "invalid_body",
            f'send {{"jobs": [job ids]}}: a JSON object whose "jobs" is a list of 1 to '
            f"{limits.MAX_JOBS} job ids",
        )
    return job_ids


class JobLogs(Resource):
    def get(self, job_id: str) -> Response:
        """The job's captured stdout and stderr (the last 1 MiB), as plain text."""
        logs = found(job_id, gateway().store.logs(job_id, tenant=tenant_scope()))
        return Response(logs, mimetype="text/plain")


class WorkerList(Resource):
    def get(self) -> dict[str, Any]:
        """Worker count for everyone; each worker's details for the admin token only."""
        cluster = gateway().dispatcher.cluster
        body: dict[str, Any] = {"count": len(cluster.workers)}
        if is_admin():
            body["workers"] = gateway().dispatcher.workers()
        return body


class Health(Resource):
    def get(self) -> tuple[dict[str, Any], int]:
        """``ok`` (200) when the scheduler is reachable and has workers, else ``degraded`` (503)."""
        cluster = gateway().dispatcher.cluster
        healthy = cluster.connected and bool(cluster.workers)
        body = {
            "status": "ok" if healthy else "degraded",
            "scheduler": cluster.scheduler,
            "workers": len(cluster.workers),
        }
        return body, 200 if healthy else 503


def _require_payload_type() -> None:
    if request.mimetype != PAYLOAD_TYPE:
        raise ApiError(
            415,
            "unsupported_media_type",
            f"send the dill bytes of (func, args, kwargs) with Content-Type: {PAYLOAD_TYPE}",
        )


def _job_spec() -> JobSpec:
    """The submission's options, from its query and headers."""
    return JobSpec(
        tenant=tenant(),
        name=params.job_name(request.args),
        timeout=params.number(request.args, "timeout", default=None, low=0.001, high=MAX_TIMEOUT),
        retries=params.integer(request.args, "retries", default=0, low=0, high=100),
        python_version=request.headers.get(PYTHON_HEADER),
        dill_version=request.headers.get(DILL_HEADER),
        idempotency_key=_idempotency_key(),
    )


def _too_many_queued(max_queued: int, room: int | None = None) -> ApiError:
    """429: the tenant's queue is full (``room``: how many more a batch could have held)."""
    limit = f"{max_queued} queued or running jobs (see --max-queued)"
    if room is None:
        message = f"you already have {limit}; retry after some finish"
    else:
        message = (
            f"you may have {limit} and there is room for {room} more: send a smaller "
            "batch, or retry after some finish"
        )
    return ApiError(429, "too_many_queued_jobs", message, {"Retry-After": "2"})


def _read_body(limit: int) -> bytes:
    """The whole request body, at most ``limit`` bytes (413 past it, 400 if cut short)."""
    length = request.content_length
    if length is not None and length > limit:
        raise _too_large(limit)
    stream = _body_stream(length)
    parts = []
    size = 0
    while length is None or size < length:
        part = stream.read(1 << 20 if length is None else min(1 << 20, length - size))
        if not part:
            if length is not None:
                raise ApiError(
                    400,
                    "incomplete_body",
                    f"the body ended after {size} of {length} bytes; send the whole body",
                )
            break
        size += len(part)
        if size > limit:
            raise _too_large(limit)
        parts.append(part)
    return b"".join(parts)


def _job_headers(job: Job) -> dict[str, str]:
    # The job's URL, built directly: url_for costs ~40 us per request here, and job ids
    # are plain hex.
    return {"Location": f"{request.script_root}{JOBS_PATH}/{job.id}", JOB_HEADER: job.id}


def _idempotency_key() -> str | None:
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is not None and not params.is_idempotency_key(key):
        raise ApiError(
            400,
            "invalid_header",
            f"Idempotency-Key must be 1 to {params.MAX_KEY} printable characters",
        )
    return key


def _check_python_version(client: str | None, workers: frozenset[str]) -> None:
    if not client or not workers:
        return
    major_minor = ".".join(client.split(".")[:2])
    if major_minor not in workers:
        raise ApiError(
            400,
            "python_version_mismatch",
            f"your Python {major_minor} cannot run on workers with Python "
            f"{', '.join(sorted(workers))}: pickled code only loads on the same Python "
            "major.minor; use that version on the client",
        )
