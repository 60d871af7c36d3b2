"""Several calls in one request: ``POST /batches``, stored in one transaction."""

from __future__ import annotations

from typing import Any

from flask import Response, request
from flask_restful import Resource

from gateway.api import params
from gateway.api.bodies import batch_calls, require_payload_type
from gateway.api.errors import ApiError
from gateway.api.results import outcomes_answer
from gateway.api.submit import check_python_version, job_spec, too_many_queued
from gateway.services import services
from gateway.store import Job, batch_keys
from wire import outcome_frames


class JobBatch(Resource):
    """``/batches``."""

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
        shared = services()
        config = shared.config
        require_payload_type()
        spec = job_spec()
        wait = params.wait(request.args, config.max_wait)
        payloads = batch_calls(config.max_body)
        if len(payloads) > config.max_queued:  # would never fit: a 429 would be retried
            raise ApiError(
                413,
                "batch_too_large",
                f"the batch holds {len(payloads)} calls and a tenant may have at most "
                f"{config.max_queued} queued or running jobs (see --max-queued): send at "
                f"most {config.max_queued} calls per batch",
            )
        first_key = batch_keys(spec.idempotency_key, 1)[0]
        existing, active = shared.store.admission(spec.tenant, first_key)
        if existing is not None:
            jobs = shared.store.find_batch(spec.tenant, spec.idempotency_key, len(payloads))
            return _batch_answer(jobs, 200, wait)
        check_python_version(spec.python_version, shared.dispatcher.cluster.python_versions)
        if active + len(payloads) > config.max_queued:
            room = max(0, config.max_queued - active)
            raise too_many_queued(config.max_queued, room=room)
        jobs, created = shared.store.create_many(spec, payloads)
        if created:
            shared.metrics.submitted.inc(len(jobs))
            shared.dispatcher.submit_many(list(zip(jobs, payloads, strict=True)))
        return _batch_answer(jobs, 201 if created else 200, wait)


def _batch_answer(
    jobs: list[Job], status: int, wait: float
) -> Response | tuple[dict[str, Any], int]:
    """The batch's jobs as JSON; with ``wait``, as the first frame of their outcomes."""
    body = {"jobs": [job.to_json() for job in jobs]}
    if not wait:
        return body, status
    head = [outcome_frames.frame_head(body, 0)]
    return outcomes_answer([job.id for job in jobs], wait, status, head)
