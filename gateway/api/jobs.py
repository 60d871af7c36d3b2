"""One job at a time: submit a call, list jobs, read, cancel or delete a job."""

from __future__ import annotations

from typing import Any

from flask import Response, request
from flask_restful import Resource

from gateway.api import params
from gateway.api.answers import AnswerKind, answer_for, result_response
from gateway.api.auth import tenant
from gateway.api.bodies import require_payload_type, stage_call
from gateway.api.errors import ApiError
from gateway.api.ownership import own_job, own_job_with_result, visible_tenant
from gateway.api.submit import admit, check_enough_workers, job_headers, job_spec, spmd_ranks
from gateway.services import services
from gateway.store import ACTIVE, STATUSES, Job
from gateway.waiting import Steps, Wait, answer_after

DEFAULT_LIMIT = 50  # jobs per page of a listing
MAX_LIMIT = 1000
MAX_CURSOR_DIGITS = 18  # a cursor is a job's sequence number, in decimal


class JobList(Resource):
    """``/jobs``."""

    def post(self) -> Response | tuple[dict[str, Any], int, dict[str, str]]:
        """Store a call (dill bytes of ``(func, args, kwargs)``) as a job and queue it.

        Answers 201 with the job's JSON once the job is durably stored; 200 with the
        existing job when the ``Idempotency-Key`` was already used by this tenant.
        With ``?wait=SECONDS`` it waits that long for the job: 200 with the result
        bytes if it finished, 201 with its JSON (and error) otherwise.
        """
        shared = services()
        config = shared.config
        require_payload_type()
        spec = job_spec()
        spmd_ranks(spec)
        wait = params.wait(request.args, config.max_wait)
        existing = admit(spec)
        if existing is not None:
            return existing.to_json(), 200, job_headers(existing)
        staged = stage_call(shared.store, config.max_body)
        try:
            check_enough_workers(spec, len(shared.dispatcher.cluster.workers))
        except ApiError:
            shared.store.discard(staged)
            raise
        # A large payload starts on its way to a worker while create() makes it durable.
        upload = shared.dispatcher.upload(staged.view()) if staged.data is None else None
        job, created = shared.store.create(spec, staged)
        headers = job_headers(job)
        if not created:
            return job.to_json(), 200, headers
        shared.metrics.submitted.inc()
        return answer_after(self._submitted(job, staged.data, upload, wait, headers))

    @staticmethod
    def _submitted(
        job: Job, data: bytes | None, upload: Any, wait: float, headers: dict[str, str]
    ) -> Steps:
        """Submit the stored job; with ``wait``, answer its outcome if it comes in time."""
        shared = services()
        config = shared.config
        with shared.waiters.watch([job.id]) as mailbox:
            shared.dispatcher.submit(job, data, upload=upload)
            if not wait:
                return job.to_json(), 201, headers
            yield Wait.up_to(mailbox, wait)
            if not mailbox.has_mail():  # not notified in time (mail, or the gateway stopping)
                return job.to_json(), 201, headers
        # Notified within ?wait: answer the outcome at once (one round trip per call).
        job, result = own_job_with_result(job.id)
        answer = answer_for(shared.store, job, result, config.result_ttl)
        if answer.kind is AnswerKind.REFUSED or answer.kind is AnswerKind.RESULT:
            response = result_response(answer)  # raises the refusal; else the result bytes
            assert isinstance(response, Response)
            response.headers.update(headers)
            return response
        return answer.info(), 201, headers  # the job with its error, or not done yet

    def get(self) -> dict[str, Any]:
        """The caller's jobs, newest first, ``limit`` at a time; with ``idempotency_key``,
        the caller's job submitted with that key (none or one)."""
        args = request.args
        store = services().store
        key = params.idempotency_key(args)
        if key is not None:
            job = store.find_by_key(tenant(), key)
            return {"jobs": [job.to_json()] if job else [], "next_cursor": None}
        status = params.choice(args, "status", STATUSES)
        limit = params.integer(args, "limit", default=DEFAULT_LIMIT, low=1, high=MAX_LIMIT)
        cursor = args.get("cursor")
        before = None
        if cursor:
            if not (cursor.isascii() and cursor.isdigit()) or len(cursor) > MAX_CURSOR_DIGITS:
                raise ApiError(400, "invalid_parameter", f"cursor {cursor!r} is not one we issued")
            before = int(cursor)
        jobs = store.list(tenant=visible_tenant(), status=status, limit=limit, before_seq=before)
        next_cursor = str(jobs[-1].seq) if len(jobs) == limit else None
        return {"jobs": [job.to_json() for job in jobs], "next_cursor": next_cursor}


class JobItem(Resource):
    """``/jobs/<id>``."""

    def get(self, job_id: str) -> dict[str, Any]:
        """The job's JSON."""
        return own_job(job_id).to_json()

    def delete(self, job_id: str) -> dict[str, Any]:
        """Cancel a queued or running job; delete a finished, failed or cancelled one."""
        shared = services()
        job = own_job(job_id)
        if cancel(job):
            return {**own_job(job_id).to_json(), "deleted": False}
        shared.store.delete(job.id)
        shared.waiters.notify([job.id])
        return {"id": job.id, "deleted": True}


class JobCancel(Resource):
    """``/jobs/<id>/cancel``."""

    def post(self, job_id: str) -> dict[str, Any]:
        """Cancel a queued or running job; a job already done is left as it is."""
        cancel(own_job(job_id))
        return own_job(job_id).to_json()


def cancel(job: Job) -> bool:
    """Cancel an active job (restarting its worker if it runs); False if it was done."""
    shared = services()
    if job.status not in ACTIVE or not shared.store.cancel(job.id):
        return False
    shared.dispatcher.cancel(job)
    shared.waiters.notify([job.id])
    return True
