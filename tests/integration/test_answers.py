"""Unit tests for gateway.api.answers: one resolver, and the two answers it renders.

For each kind of answer, ``GET /jobs/<id>/result``'s answer and the stream's frame
must say the same thing: the same result bytes, the same job JSON (with its error and
exception), and a frame's ``refusal`` is the error the single answer raises.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, Response

from gateway.api.answers import Answer, AnswerKind, answer_for, outcome_frame, result_response
from gateway.api.errors import ApiError
from gateway.store import Job, JobSpec, JobStore, Outcome
from wire import limits
from wire.outcome_frames import HEADER_BYTES, read_lengths

TTL = 60.0
ERROR = {"type": "ValueError", "message": "no", "traceback": "..."}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[JobStore]:
    opened = JobStore(tmp_path / "save")
    yield opened
    opened.close()


@pytest.fixture
def request_context() -> Iterator[None]:
    with Flask(__name__).test_request_context():
        yield


def new_job(store: JobStore) -> Job:
    staged = store.stage_payload(io.BytesIO(b"payload"), max_bytes=1 << 20)
    job, _ = store.create(JobSpec(tenant="alice"), staged)
    return job


def recorded(store: JobStore, **outcome: Any) -> tuple[Job, bytes | None]:
    job = new_job(store)
    assert store.record([Outcome(job.id, **outcome)]) == [job.id]
    found = store.get_with_result(job.id)
    assert found is not None
    return found


def frame_of(answer: Answer) -> tuple[dict[str, Any], bytes]:
    """The JSON and result bytes of the one frame rendered for ``answer``."""
    data = b"".join(outcome_frame(answer))
    json_bytes, result_bytes = read_lengths(data[:HEADER_BYTES])
    info = json.loads(data[HEADER_BYTES : HEADER_BYTES + json_bytes])
    result = data[HEADER_BYTES + json_bytes :]
    assert len(result) == result_bytes
    return info, result


def body_of(response: Response) -> bytes:
    response.direct_passthrough = False
    return response.get_data()


def test_an_active_job_is_not_done_and_has_no_frame(store: JobStore, request_context: None):
    job = new_job(store)
    answer = answer_for(store, job, None, TTL)
    assert answer.kind is AnswerKind.NOT_DONE
    assert result_response(answer) == (job.to_json(), 202)
    with pytest.raises(ValueError):
        frame_of(answer)


@pytest.mark.parametrize("size", [5, limits.INLINE_LIMIT + 1], ids=["in_row", "in_file"])
def test_a_finished_job_answers_its_result_bytes(store: JobStore, request_context: None, size: int):
    result = bytes(range(256)) * (size // 256) + b"r" * (size % 256)
    job, in_row = recorded(store, ok=True, body=result)
    assert (in_row is not None) == (size <= limits.INLINE_LIMIT)
    single = result_response(answer_for(store, job, in_row, TTL))
    assert isinstance(single, Response)
    assert single.mimetype == "application/octet-stream"
    assert single.content_length == size  # not chunked
    assert single.headers["Cache-Control"] == "no-cache"
    assert body_of(single) == result
    info, frame_result = frame_of(answer_for(store, job, in_row, TTL))
    assert info == job.to_json()
    assert frame_result == result


@pytest.mark.parametrize("cancelled", [False, True], ids=["failed", "cancelled"])
def test_a_failed_or_cancelled_job_answers_its_json_with_error(
    store: JobStore, request_context: None, cancelled: bool
):
    if cancelled:
        job = new_job(store)
        assert store.cancel(job.id)
        job, result = store.get_with_result(job.id)
        expected = job.to_json()
    else:
        job, result = recorded(store, ok=False, error=ERROR, body=b"pickled exception")
        expected = {**job.to_json(), "exception": base64.b64encode(b"pickled exception").decode()}
        assert expected["error"] == ERROR
    answer = answer_for(store, job, result, TTL)
    assert answer.kind is AnswerKind.ERROR
    assert result_response(answer) == (expected, 200)
    assert frame_of(answer) == (expected, b"")


def _refused_alike(store: JobStore, job: Job, status: int, error: str) -> None:
    """The single answer raises the refusal; the frame carries it after the job JSON."""
    with pytest.raises(ApiError) as raised:
        result_response(answer_for(store, job, None, TTL))
    assert (raised.value.status, raised.value.error) == (status, error)
    info, result = frame_of(answer_for(store, job, None, TTL))
    refusal = {"status": status, "error": error, "message": raised.value.message}
    assert info == {**job.to_json(), "refusal": refusal}
    assert result == b""


def test_an_expired_job_is_refused_410_by_both(store: JobStore, request_context: None):
    job, _ = recorded(store, ok=True, finished_at=1.0, body=b"result")
    assert store.expire(finished_before=2.0) == [job.id]
    expired = store.get(job.id)
    assert expired is not None and expired.status == "expired"
    _refused_alike(store, expired, 410, "result_expired")


def test_a_result_file_gone_is_refused_404_by_both(store: JobStore, request_context: None):
    job, in_row = recorded(store, ok=True, body=b"x" * (limits.INLINE_LIMIT + 1))
    assert in_row is None
    store.result_path(job.id).unlink()
    _refused_alike(store, job, 404, "job_not_found")


def test_the_size_sent_is_the_files_whatever_the_row_says(store: JobStore, request_context: None):
    """A frame and a Content-Length must both match the bytes that follow."""
    result = b"y" * (limits.INLINE_LIMIT + 10)
    job, _ = recorded(store, ok=True, body=result)
    job.result_size = 7  # as if the row disagreed with the file
    single = result_response(answer_for(store, job, None, TTL))
    assert isinstance(single, Response) and single.content_length == len(result)
    single.close()
    assert frame_of(answer_for(store, job, None, TTL))[1] == result
