"""What can be answered about a job now (its *answer*), decided once, and its two renderings.

:func:`answer_for` looks at a job and says what can be answered about it: its result
bytes (finished), its error (failed or cancelled), a refusal (expired, or its result
file is gone) or nothing yet (queued or running). Two renderers answer that:

- :func:`result_response`: the answer of ``GET /jobs/<id>/result`` (and of
  ``POST /jobs?wait`` when the job finished in time);
- :func:`outcome_frame`: one frame of a ``POST /results`` or ``/batches?wait`` stream
  (:mod:`wire.outcome_frames`), which carries a refusal as the error the first would
  have answered.

Result bytes are forwarded as they were stored, never unpickled.
"""

from __future__ import annotations

import base64
import enum
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

from flask import Response, send_file

from gateway.api.errors import ApiError, not_found
from gateway.store import EXPIRED, FINISHED, Job, JobStore
from wire.http import PAYLOAD_MEDIA_TYPE
from wire.outcome_frames import frame_head

_BLOCK = 1 << 20  # bytes of a stored result file read at a time


class AnswerKind(enum.Enum):
    """What can be answered about a job now."""

    NOT_DONE = "not_done"  # queued or running
    RESULT = "result"  # finished: its result bytes
    ERROR = "error"  # failed or cancelled: the job's JSON with its error (and exception)
    REFUSED = "refused"  # its result can no longer be had: expired, or its file is gone


@dataclass
class Answer:
    """A job's answer as :func:`answer_for` found it."""

    kind: AnswerKind
    job: Job
    result: bytes | None = None  # RESULT, when the bytes were in the job's row
    result_file: IO[bytes] | None = None  # RESULT otherwise: the open file, read once
    result_size: int = 0  # RESULT: bytes of the result
    refusal: ApiError | None = None  # REFUSED: what GET /jobs/<id>/result answers

    def info(self) -> dict[str, Any]:
        """The job's JSON plus, for a failed job, the base64 dill bytes of its exception."""
        body = self.job.to_json()
        if self.job.exception:
            body["exception"] = base64.b64encode(self.job.exception).decode()
        return body


def answer_for(store: JobStore, job: Job, result: bytes | None, result_ttl: float) -> Answer:
    """``job``'s answer now. ``result``: its result bytes when they were read with the
    job (:meth:`JobStore.get_with_result`); else a finished job's file is opened here,
    and the renderer that takes the answer closes it."""
    if job.status == EXPIRED:
        return Answer(AnswerKind.REFUSED, job, refusal=expired(job, result_ttl))
    if job.status == FINISHED:
        if result is not None:
            return Answer(AnswerKind.RESULT, job, result=result, result_size=len(result))
        try:
            stored = store.open_result(job.id)
        except FileNotFoundError:  # deleted meanwhile
            return Answer(AnswerKind.REFUSED, job, refusal=not_found(job.id))
        size = stored.seek(0, os.SEEK_END)  # the bytes that will be sent, whatever the row says
        stored.seek(0)
        return Answer(AnswerKind.RESULT, job, result_file=stored, result_size=size)
    if job.done:
        return Answer(AnswerKind.ERROR, job)
    return Answer(AnswerKind.NOT_DONE, job)


def expired(job: Job, result_ttl: float) -> ApiError:
    """410: the job's result was removed after ``--result-ttl``."""
    return ApiError(
        410,
        "result_expired",
        f"job {job.id} finished more than {result_ttl:g} s ago and its result was "
        "removed (see --result-ttl); submit it again",
    )


def result_response(answer: Answer) -> Response | tuple[dict[str, Any], int]:
    """The answer of ``GET /jobs/<id>/result``: 200 with the result bytes, 200 with the
    job's JSON and error, 202 with the job's JSON while it is not done; a refusal is
    raised (410, 404)."""
    if answer.kind is AnswerKind.RESULT:
        if answer.result_file is None:
            response = Response(answer.result, mimetype=PAYLOAD_MEDIA_TYPE)
            response.headers["Cache-Control"] = "no-cache"  # as send_file answers
            return response
        response = send_file(
            answer.result_file, mimetype=PAYLOAD_MEDIA_TYPE, conditional=False, etag=False
        )
        response.content_length = answer.result_size  # not chunked: clients read it in one go
        return response
    if answer.kind is AnswerKind.ERROR:
        return answer.info(), 200
    if answer.kind is AnswerKind.REFUSED:
        assert answer.refusal is not None
        raise answer.refusal
    return answer.job.to_json(), 202


def outcome_frame(answer: Answer) -> Iterator[bytes]:
    """A done job's frame of an answer stream; a result file is read in blocks."""
    if answer.kind is AnswerKind.NOT_DONE:
        raise ValueError(f"job {answer.job.id} is not done: it has no frame yet")
    if answer.kind is AnswerKind.REFUSED:
        assert answer.refusal is not None
        yield frame_head({**answer.info(), "refusal": _refusal(answer.refusal)}, 0)
    elif answer.kind is AnswerKind.ERROR:
        yield frame_head(answer.info(), 0)
    elif answer.result_file is None:
        assert answer.result is not None
        yield frame_head(answer.info(), answer.result_size) + answer.result
    else:
        with answer.result_file as stored:
            yield frame_head(answer.info(), answer.result_size)
            left = answer.result_size
            while left:
                block = stored.read(min(_BLOCK, left))
                if not block:  # cannot happen to a file written once; the frame cannot end
                    raise OSError(f"result of job {answer.job.id} ended {left} bytes early")
                left -= len(block)
                yield block


def _refusal(error: ApiError) -> dict[str, Any]:
    """In a frame, the error ``GET /jobs/<id>/result`` would have answered."""
    return {"status": error.status, "error": error.error, "message": error.message}
