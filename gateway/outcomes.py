"""How a done job's outcome is answered: one job's (``GET /jobs/<id>/result``) or a
stream of several as they finish (``POST /results``). Result bytes are forwarded as
they were stored, never unpickled."""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Iterator
from typing import Any

from flask import Response, send_file

from gateway.context import gateway
from gateway.errors import ApiError, not_found
from gateway.store import EXPIRED, FINISHED, Job, JobStore
from gateway.waiters import Waiters
from wire.http import PAYLOAD_MEDIA_TYPE as PAYLOAD_TYPE
from wire.outcome_frames import frame_head

_BLOCK = 1 << 20  # bytes of a stored result file read at a time


def outcome_response(
    job: Job, result: bytes | None = None
) -> Response | tuple[dict[str, Any], int] | None:
    """A done job's outcome: result bytes, or its JSON with the error; None if not done.

    ``result`` is the result when it was read from the job's row with the job
    (:meth:`JobStore.get_with_result`): answered from memory, without ``send_file``.
    """
    gw = gateway()
    if job.status == EXPIRED:
        raise expired(job, gw.config.result_ttl)
    if job.status == FINISHED:
        if result is not None:
            response = Response(result, mimetype=PAYLOAD_TYPE)
            response.headers["Cache-Control"] = "no-cache"  # as send_file answers
            return response
        try:
            stored = gw.store.open_result(job.id)
        except FileNotFoundError:
            raise not_found(job.id) from None
        response = send_file(stored, mimetype=PAYLOAD_TYPE, conditional=False, etag=False)
        response.content_length = job.result_size  # not chunked: clients read it in one go
        return response
    if job.done:
        return job_json_with_exception(job), 200
    return None


def expired(job: Job, result_ttl: float) -> ApiError:
    """410: the job's result was removed after ``--result-ttl``."""
    return ApiError(
        410,
        "result_expired",
        f"job {job.id} finished more than {result_ttl:g} s ago and its result was "
        "removed (see --result-ttl); submit it again",
    )


def job_json_with_exception(job: Job) -> dict[str, Any]:
    """The job's JSON plus, for a failed job, the base64 dill bytes of its exception."""
    body = job.to_json()
    if job.exception:
        body["exception"] = base64.b64encode(job.exception).decode()
    return body


def stream_outcomes(
    store: JobStore, waiters: Waiters, job_ids: list[str], wait: float, result_ttl: float
) -> Iterator[bytes]:
    """Each job's outcome frame (see :mod:`wire.outcome_frames`) as soon as the job
    is done, in the order they finish, until all are sent or ``wait`` seconds pass.

    The first query looks at every job; after that, only at the jobs whose outcome
    was recorded since. A job not done in time (or when the gateway stops) is left
    out: the caller asks again.
    """
    pending = dict.fromkeys(job_ids)
    deadline = time.monotonic() + wait
    with waiters.watch_any(pending) as notified:
        check = list(pending)
        while True:
            for job, result in store.done_with_results(check):
                if job.id in pending:
                    del pending[job.id]
                    yield from _frame(store, job, result, result_ttl)
            remaining = deadline - time.monotonic()
            if not pending or remaining <= 0 or notified.closed:
                return
            check = notified.take(remaining)


def _frame(store: JobStore, job: Job, result: bytes | None, result_ttl: float) -> Iterator[bytes]:
    """One done job's frame, a stored result file read in blocks."""
    if job.status != FINISHED:
        info = job_json_with_exception(job)
        if job.status == EXPIRED:
            info["refusal"] = _refusal(expired(job, result_ttl))
        yield frame_head(info, 0)
        return
    if result is not None:
        yield frame_head(job.to_json(), len(result)) + result
        return
    try:
        stored = store.open_result(job.id)
    except FileNotFoundError:  # deleted meanwhile
        yield frame_head({**job.to_json(), "refusal": _refusal(not_found(job.id))}, 0)
        return
    with stored:
        size = stored.seek(0, os.SEEK_END)
        stored.seek(0)
        yield frame_head(job.to_json(), size)
        left = size
        while left:
            block = stored.read(min(_BLOCK, left))
            if not block:  # cannot happen to a file written once; the frame cannot end
                raise OSError(f"result of job {job.id} ended {left} bytes early")
            left -= len(block)
            yield block


def _refusal(error: ApiError) -> dict[str, Any]:
    """In a frame, the error ``GET /jobs/<id>/result`` would have answered."""
    return {"status": error.status, "error": error.error, "message": error.message}
