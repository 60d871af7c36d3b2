"""Many jobs' outcomes over one connection: ``POST /results``, ``as_completed``, ``gather``."""

from __future__ import annotations

import json
import struct
import threading
import time

import dill
import numpy as np
import pytest
import requests

from client_sdk import (
    ApiError,
    Job,
    JobCancelled,
    ResultTimeout,
    as_completed,
    compute_this,
    gather,
    outcomes,
)
from tests.stack import Stack
from tests.system.conftest import WORKERS
from tests.system.test_rest import assert_json_error
from wire.limits import MAX_JOBS
from wire.outcome_frames import MEDIA_TYPE


@compute_this(timeout=60)
def nap(seconds: float) -> float:
    import time

    time.sleep(seconds)
    return seconds


@compute_this
def divide(a: float, b: float) -> float:
    return a / b


@compute_this
def half(x: float) -> float:
    return x / 2


@compute_this
def zeros(count: int) -> np.ndarray:
    import numpy as np

    return np.arange(count, dtype=np.int64)


def post_results(stack: Stack, job_ids: list[str], wait: float = 30, **kwargs) -> requests.Response:
    return requests.post(
        stack.api("/results"),
        params={"wait": wait},
        json={"jobs": job_ids},
        headers=stack.headers(),
        timeout=wait + 30,
        **kwargs,
    )


def frames(data: bytes) -> list[tuple[dict, bytes]]:
    """Split an answer of ``POST /results`` into (job JSON, result bytes) frames."""
    out = []
    offset = 0
    while offset < len(data):
        json_bytes, result_bytes = struct.unpack_from(">QQ", data, offset)
        offset += 16
        info = json.loads(data[offset : offset + json_bytes])
        offset += json_bytes
        out.append((info, data[offset : offset + result_bytes]))
        offset += result_bytes
    assert offset == len(data)
    return out


def test_rest_streams_each_outcome_as_its_job_finishes(sdk: Stack):
    sdk.wait_for_workers(WORKERS)  # not one still restarting after an earlier test's cancel
    slow, quick, failing = nap.submit(3.0), nap.submit(0.0), divide.submit(1, 0)
    started = time.monotonic()
    arrivals: list[float] = []
    with post_results(sdk, [slow.id, quick.id, failing.id], stream=True) as response:
        assert response.status_code == 200
        assert response.headers["Content-Type"] == MEDIA_TYPE
        data = b""
        for block in response.iter_content(chunk_size=None):
            data += block
            arrivals.append(time.monotonic() - started)
    outcomes = frames(data)
    assert [info["id"] for info, _ in outcomes][-1] == slow.id  # last to finish, last sent
    by_id = {info["id"]: (info, body) for info, body in outcomes}
    assert dill.loads(by_id[quick.id][1]) == 0.0 and by_id[quick.id][0]["status"] == "finished"
    assert dill.loads(by_id[slow.id][1]) == 3.0
    info, body = by_id[failing.id]
    assert info["status"] == "failed" and body == b""
    assert info["error"]["type"] == "ZeroDivisionError" and info["exception"]
    # The quick outcomes came before the slow job finished: streamed, not held back.
    assert arrivals[0] < 2.5 < arrivals[-1]


def test_rest_leaves_out_jobs_not_done_within_wait(sdk: Stack):
    slow, quick = nap.submit(3.0), nap.submit(0.0)
    assert quick.result(timeout=30) == 0.0
    started = time.monotonic()
    response = post_results(sdk, [slow.id, quick.id, quick.id], wait=0.5)
    assert 0.4 < time.monotonic() - started < 2.5
    assert [info["id"] for info, _ in frames(response.content)] == [quick.id]
    now = post_results(sdk, [slow.id], wait=0)  # wait=0: only what is done already
    assert frames(now.content) == []
    assert slow.result(timeout=30) == 3.0


@pytest.mark.parametrize(
    "payload, status, error",
    [
        ({"jobs": []}, 400, "invalid_body"),
        ({"jobs": "abc"}, 400, "invalid_body"),
        ({"jobs": [1, 2]}, 400, "invalid_body"),
        ([1, 2], 400, "invalid_body"),
        ({"jobs": ["0" * 32] * (MAX_JOBS + 1)}, 400, "invalid_body"),
        ({"jobs": ["f" * 32]}, 404, "job_not_found"),
        ({"jobs": ["not-an-id"]}, 404, "job_not_found"),
    ],
)
def test_rest_bad_requests_are_json_errors(sdk: Stack, payload, status: int, error: str):
    response = requests.post(sdk.api("/results"), json=payload, headers=sdk.headers(), timeout=30)
    body = assert_json_error(response, status, error)
    if status == 404:
        assert payload["jobs"][0] in body["message"]


def test_rest_needs_json_and_a_sane_wait(sdk: Stack):
    job = nap.submit(0.0)
    as_text = requests.post(
        sdk.api("/results"), data=json.dumps({"jobs": [job.id]}), headers=sdk.headers()
    )
    assert_json_error(as_text, 415, "unsupported_media_type")
    assert_json_error(post_results(sdk, [job.id], wait=-1), 400, "invalid_parameter")
    assert_json_error(post_results(sdk, [job.id], wait=10_000), 400, "invalid_parameter")
    assert_json_error(requests.get(sdk.api("/results"), headers=sdk.headers()), 405)


def test_gather_returns_results_in_order_and_as_completed_in_finishing_order(sdk: Stack):
    jobs = nap.submit_many([1.0, 0.0])  # the stack has two workers
    order = [job.id for job in as_completed(jobs)]
    assert order == [jobs[1].id, jobs[0].id]
    assert gather(jobs) == [1.0, 0.0]  # done already: one request, no waiting
    assert [job.result() for job in jobs] == [1.0, 0.0]


def test_as_completed_yields_a_job_listed_twice_once(sdk: Stack):
    job = nap.submit(0.0)
    again = Job.from_id(job.id)
    assert list(as_completed([job, again, job])) == [job]
    assert again.result() == 0.0


def test_gather_raises_the_first_error_without_waiting_for_the_rest(sdk: Stack):
    slow = nap.submit(5.0)
    failing = divide.submit(1, 0)
    started = time.monotonic()
    with pytest.raises(ZeroDivisionError):
        gather([slow, failing])
    assert time.monotonic() - started < 4.0
    slow.cancel()


def test_gather_return_exceptions_puts_each_error_in_place(sdk: Stack):
    ok, failing, cancelled = divide.submit(6, 3), divide.submit(1, 0), nap.submit(30.0)
    cancelled.cancel()
    outcomes = gather([ok, failing, cancelled], return_exceptions=True)
    assert outcomes[0] == 2.0
    assert isinstance(outcomes[1], ZeroDivisionError)
    assert isinstance(outcomes[2], JobCancelled)


def test_gather_brings_large_results_from_files(sdk: Stack):
    # 80 KiB is stored in a result file; 4 MiB is also read into memory of its own.
    jobs = zeros.submit_many([10_000, 500_000, 3])
    values = gather(jobs)
    assert [len(value) for value in values] == [10_000, 500_000, 3]
    assert all(np.array_equal(value, np.arange(len(value))) for value in values)


def test_timeout_raises_and_the_jobs_keep_running(sdk: Stack):
    slow = nap.submit(2.0)
    started = time.monotonic()
    with pytest.raises(ResultTimeout, match="1 of the jobs were not done after 0.5 s"):
        list(as_completed([slow], timeout=0.5))
    assert time.monotonic() - started < 2.0
    assert gather([slow], timeout=30) == [2.0]


def test_leaving_as_completed_early_closes_its_stream(sdk: Stack):
    jobs = nap.submit_many([0.0, 2.0])
    for job in as_completed(jobs):
        assert job.result() == 0.0
        break
    # The same thread's connection still works for the next request.
    assert gather(jobs) == [0.0, 2.0]


def test_many_waiting_threads_share_no_state(sdk: Stack):
    jobs = half.submit_many([2 * i for i in range(40)])
    results: list[list[float]] = []

    def collect(part: list[Job]) -> None:
        results.append(gather(part))

    threads = [threading.Thread(target=collect, args=(jobs[i::4],)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(sum(results, [])) == [float(i) for i in range(40)]


def test_more_jobs_than_one_request_takes_are_collected_in_turns(sdk: Stack, monkeypatch):
    monkeypatch.setattr(outcomes, "MAX_JOBS", 2)  # 5 jobs: three requests
    jobs = half.submit_many([2 * i for i in range(5)])
    assert gather(jobs) == [float(i) for i in range(5)]
    assert sorted(job.id for job in as_completed(jobs)) == sorted(job.id for job in jobs)


def test_a_job_unknown_to_the_gateway_raises_api_error(sdk: Stack):
    with pytest.raises(ApiError) as caught:
        gather([Job.from_id("e" * 32)])
    assert caught.value.status == 404 and "e" * 32 in caught.value.message
