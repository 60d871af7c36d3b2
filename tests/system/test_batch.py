"""Many jobs in one request: ``POST /batches`` and ``func.submit_many``, real stack."""

from __future__ import annotations

import base64
import itertools
import time
import uuid
from datetime import datetime

import dill
import pytest
import requests

from client_sdk import compute_this
from tests.stack import Stack
from tests.system.test_collect import frames
from tests.system.test_rest import assert_json_error, body, post, result
from wire import batch_body, limits, outcome_frames


def post_batch(stack: Stack, data: bytes, params=None, headers=None) -> requests.Response:
    return post(stack, data, params, headers, path="/batches")


def newest_job(stack: Stack) -> str | None:
    listing = requests.get(
        stack.api("/jobs"), params={"limit": 1}, headers=stack.headers(), timeout=30
    )
    jobs = listing.json()["jobs"]
    return jobs[0]["id"] if jobs else None


@compute_this
def square(x: int) -> int:
    return x * x


@compute_this(timeout=60, name="nap")
def nap_then(x: float) -> float:
    time.sleep(x)
    return x


def test_a_batch_becomes_one_job_per_call_in_order(stack: Stack):
    calls = [body(abs, -n) for n in range(12)]
    response = post_batch(stack, batch_body.encode(calls), params={"name": "sweep", "retries": 1})
    assert response.status_code == 201, response.text
    jobs = response.json()["jobs"]
    assert len({job["id"] for job in jobs}) == 12
    assert {(job["name"], job["retries"], job["status"]) for job in jobs} <= {
        ("sweep", 1, "queued"),
        ("sweep", 1, "running"),
        ("sweep", 1, "finished"),
    }
    # One transaction: every job was created at the same instant.
    assert len({job["created_at"] for job in jobs}) == 1
    outcomes = [dill.loads(result(stack, job["id"]).content) for job in jobs]
    assert outcomes == list(range(12))


def test_a_batch_with_wait_streams_its_jobs_then_their_outcomes(stack: Stack):
    stack.wait_for_workers(2)  # the sleep on one, the others on the other: it ends last
    calls = [body(time.sleep, 1.5), body(abs, -4), body(divmod, 1, 0)]
    key = {"Idempotency-Key": uuid.uuid4().hex}
    response = post_batch(stack, batch_body.encode(calls), {"wait": 30}, headers=key)
    assert response.status_code == 201
    assert response.headers["Content-Type"] == outcome_frames.MEDIA_TYPE
    (listing, nothing), *outcomes = frames(response.content)
    jobs = [job["id"] for job in listing["jobs"]]
    assert nothing == b"" and len(jobs) == 3
    # In the order they finished: a job that ended clearly earlier streams earlier.
    streamed = [info["id"] for info, _ in outcomes]
    ended = {info["id"]: datetime.fromisoformat(info["finished_at"]) for info, _ in outcomes}
    for earlier, later in itertools.permutations(streamed, 2):
        if (ended[later] - ended[earlier]).total_seconds() > 0.3:
            assert streamed.index(earlier) < streamed.index(later), ended
    by_id = {info["id"]: (info, result) for info, result in outcomes}
    assert dill.loads(by_id[jobs[1]][1]) == 4
    assert by_id[jobs[2]][0]["status"] == "failed"
    exception = dill.loads(base64.b64decode(by_id[jobs[2]][0]["exception"]))
    assert isinstance(exception, ZeroDivisionError)
    # A repeat answers with the same jobs (200), already done.
    again = post_batch(stack, batch_body.encode(calls), {"wait": 30}, headers=key)
    assert again.status_code == 200
    (listing, _), *outcomes = frames(again.content)
    assert [job["id"] for job in listing["jobs"]] == jobs and len(outcomes) == 3


def test_a_batch_with_a_short_wait_streams_only_the_jobs_done_by_then(stack: Stack):
    response = post_batch(stack, batch_body.encode([body(time.sleep, 3)]), {"wait": 0.5})
    (listing, _), *outcomes = frames(response.content)
    assert len(listing["jobs"]) == 1 and outcomes == []


def test_a_batch_with_an_invalid_wait_is_refused_and_stores_nothing(stack: Stack):
    newest = newest_job(stack)
    response = post_batch(stack, batch_body.encode([body(abs, -1)]), params={"wait": "soon"})
    assert_json_error(response, 400, "invalid_parameter")
    assert newest_job(stack) == newest


def test_a_retried_batch_returns_the_same_jobs(stack: Stack):
    data = batch_body.encode([body(abs, -1), body(abs, -2)])
    key = {"Idempotency-Key": uuid.uuid4().hex}
    first = post_batch(stack, data, headers=key)
    second = post_batch(stack, data, headers=key)
    assert first.status_code == 201 and second.status_code == 200
    assert [job["id"] for job in first.json()["jobs"]] == [
        job["id"] for job in second.json()["jobs"]
    ]
    # The key of a batch does not stop a single job from using the same key.
    assert post(stack, body(abs, -3), headers=key).status_code == 201


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"", "invalid_batch"),
        (b"\x00\x00\x00", "invalid_batch"),  # ends inside a length
        (b"\x00" * 7 + b"\x09" + b"short", "invalid_batch"),  # says 9 bytes, 5 follow
        (batch_body.encode([b"not a pickle"]), "invalid_payload"),
        (batch_body.encode([b""]), "invalid_payload"),
        (batch_body.encode([body(abs, 1), dill.dumps([1, 2])]), "invalid_payload"),
    ],
)
def test_a_bad_batch_is_a_400_and_stores_nothing(stack: Stack, data: bytes, error: str):
    before = newest_job(stack)
    payload = assert_json_error(post_batch(stack, data), 400, error)
    if error == "invalid_payload":
        assert payload["message"].startswith("call ")
    assert newest_job(stack) == before


def test_batch_limits_are_413s(stack: Stack):
    before = newest_job(stack)
    big = body(abs, b"x" * (limits.MAX_CALL_BYTES + 1))
    payload = assert_json_error(
        post_batch(stack, batch_body.encode([body(abs, 1), big])), 413, "call_too_large"
    )
    assert "call 1" in payload["message"] and "/api/v1/jobs" in payload["message"]
    too_many = batch_body.encode([body(abs, 1)] * (limits.MAX_CALLS + 1))
    assert_json_error(post_batch(stack, too_many), 400, "invalid_batch")
    assert newest_job(stack) == before


def test_a_batch_needs_the_token_and_octet_stream(stack: Stack):
    data = batch_body.encode([body(abs, 1)])
    assert requests.post(stack.api("/batches"), data=data, timeout=30).status_code == 401
    wrong_type = post_batch(stack, data, headers={"Content-Type": "application/json"})
    assert_json_error(wrong_type, 415, "unsupported_media_type")


def test_submit_many_queues_one_job_per_item(sdk: Stack):
    jobs = square.submit_many(range(30))
    assert len({job.id for job in jobs}) == 30
    assert [job.result(timeout=60) for job in jobs] == [n * n for n in range(30)]
    infos = [job.info() for job in jobs]
    assert len({info["created_at"] for info in infos}) == 1  # one request
    assert {info["name"] for info in infos} == {"square"}


def test_submit_many_ships_a_closure_once_for_all_its_calls(sdk: Stack):
    offset = 100
    add = compute_this(lambda x: x + offset)
    assert [job.result(timeout=60) for job in add.submit_many([1, 2, 3])] == [101, 102, 103]


def test_submit_many_posts_a_large_call_on_its_own(sdk: Stack):
    items = [b"a", b"b" * (2 * limits.MAX_CALL_BYTES), b"c"]
    jobs = compute_this(len).submit_many(items)
    assert [job.result(timeout=60) for job in jobs] == [1, 2 * limits.MAX_CALL_BYTES, 1]
    created = [job.info()["created_at"] for job in jobs]
    assert created[0] != created[2]  # the large call split the batch in two


def test_submit_many_jobs_run_in_parallel_and_keep_their_options(sdk: Stack):
    sdk.wait_for_workers(2)
    start = time.monotonic()
    jobs = nap_then.submit_many([1.0, 1.0])
    assert [job.result(timeout=60) for job in jobs] == [1.0, 1.0]
    assert time.monotonic() - start < 1.9  # both workers, at once
    assert {(job.info()["name"], job.info()["timeout"]) for job in jobs} == {("nap", 60.0)}


def test_submit_many_checks_arguments_before_sending(sdk: Stack):
    before = newest_job(sdk)
    with pytest.raises(TypeError, match="square"):
        compute_this(lambda x, y: x + y, name="square").submit_many([1, 2])
    assert newest_job(sdk) == before


def test_batch_body_round_trip_and_limits():
    calls = [b"", b"a", b"bc" * 1000]
    body = batch_body.encode(calls)
    assert len(body) == sum(len(call) for call in calls) + 8 * len(calls)
    assert [bytes(view) for view in batch_body.decode(body, max_items=3)] == calls
    with pytest.raises(batch_body.InvalidBatch, match="at most 2"):
        batch_body.decode(body, max_items=2)
    with pytest.raises(batch_body.InvalidBatch, match="2000 bytes, but only 1999"):
        batch_body.decode(body[:-1], max_items=3)
