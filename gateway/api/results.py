"""Waiting for outcomes: one job's (``GET /jobs/<id>/result``, a long-poll) or several
jobs' as a stream of frames, each sent as its job is done (``POST /results``)."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from typing import Any

from flask import Response, request
from flask_restful import Resource

from gateway.api import params
from gateway.api.answers import answer_for, outcome_frame, result_response
from gateway.api.bodies import requested_job_ids
from gateway.api.ownership import check_own_jobs, own_job_with_result, read_when_done
from gateway.services import services
from gateway.store import JobStore
from gateway.waiters import Waiters
from gateway.waiting import Steps, Wait, answer_after, stream_body
from wire import outcome_frames


class JobResult(Resource):
    """``/jobs/<id>/result``."""

    def get(self, job_id: str) -> Response | tuple[dict[str, Any], int]:
        """Long-poll for the outcome: bytes when finished, error JSON when failed."""
        wait = params.wait(request.args, services().config.max_wait)
        return answer_after(self._steps(job_id, wait))

    @staticmethod
    def _steps(job_id: str, wait: float) -> Steps:
        job, result = yield from read_when_done(job_id, wait, own_job_with_result)
        config = services().config
        return result_response(answer_for(services().store, job, result, config.result_ttl))


class JobResults(Resource):
    """``/results``."""

    def post(self) -> Response:
        """Wait for several jobs and stream each one's outcome as soon as it is done.

        The body is ``{"jobs": [id, ...]}`` (at most ``MAX_JOBS`` ids, all the caller's).
        The answer is a stream of frames (:mod:`wire.outcome_frames`) in the order the
        jobs finish; it ends when every job is sent or ``?wait=SECONDS`` (default 0:
        only the jobs already done) has passed.
        """
        wait = params.wait(request.args, services().config.max_wait)
        job_ids = requested_job_ids()
        check_own_jobs(job_ids)
        return outcomes_answer(job_ids, wait)


def outcomes_answer(
    job_ids: list[str], wait: float, status: int = 200, head: list[bytes] | None = None
) -> Response:
    """A stream of the jobs' outcome frames (after the frames ``head``) as they are done."""
    shared = services()
    outcomes = outcome_stream(shared.store, shared.waiters, job_ids, wait, shared.config.result_ttl)
    frames = itertools.chain(head or [], outcomes)
    return Response(stream_body(frames), status=status, mimetype=outcome_frames.MEDIA_TYPE)


def outcome_stream(
    store: JobStore, waiters: Waiters, job_ids: list[str], wait: float, result_ttl: float
) -> Iterator[bytes | Wait]:
    """Each job's outcome frame as soon as the job is done, in the order they finish,
    until all are sent or ``wait`` seconds pass.

    The first query looks at every job; after that, only at the jobs whose outcome
    was recorded since. A job not done in time (or when the gateway stops) is left
    out: the caller asks again.
    """
    pending = dict.fromkeys(job_ids)
    deadline = time.monotonic() + wait
    with waiters.watch(pending) as mailbox:
        check = list(pending)
        while True:
            for job, result in store.done_with_results(check):
                if job.id in pending:
                    del pending[job.id]
                    yield from outcome_frame(answer_for(store, job, result, result_ttl))
            if not pending or time.monotonic() >= deadline or mailbox.closed:
                return
            yield Wait(mailbox, deadline)
            check = mailbox.take(0)
