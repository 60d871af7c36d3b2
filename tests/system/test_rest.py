"""The REST API over plain HTTP against the real stack."""

from __future__ import annotations

import pickle
import time
import uuid

import dill
import numpy as np
import pytest
import requests

from tests.stack import Stack, scrape_metrics
from wire import buffer_index

OCTET = {"Content-Type": "application/octet-stream"}


def body(func, *args, **kwargs) -> bytes:
    """What a plain REST user posts: dill bytes of (func, args, kwargs)."""
    return dill.dumps((func, args, kwargs), recurse=True)


def post(
    stack: Stack, data: bytes, params=None, headers=None, path: str = "/jobs"
) -> requests.Response:
    """POST a body (as ``application/octet-stream``) with the stack's token, or ``headers``'."""
    return requests.post(
        stack.api(path),
        data=data,
        params=params,
        headers={**stack.headers(), **OCTET, **(headers or {})},
        timeout=30,
    )


def result(stack: Stack, job_id: str, wait: float = 30) -> requests.Response:
    return requests.get(
        stack.api(f"/jobs/{job_id}/result"),
        params={"wait": wait},
        headers=stack.headers(),
        timeout=wait + 30,
    )


def assert_json_error(response: requests.Response, status: int, error: str | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    payload = response.json()
    assert set(payload) == {"error", "message"} and payload["message"]
    if error:
        assert payload["error"] == error
    return payload


def test_health_needs_no_token(stack: Stack):
    stack.wait_for_workers(2)  # workers restarted by earlier cancels rejoin first
    response = requests.get(stack.api("/health"), timeout=10)
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "scheduler": response.json()["scheduler"],
        "workers": 2,
    }


@pytest.mark.parametrize("path", ["/jobs", "/workers", f"/jobs/{'0' * 32}"])
def test_endpoints_need_the_token(stack: Stack, path: str):
    assert_json_error(requests.get(stack.api(path), timeout=10), 401, "unauthorized")
    wrong = {"Authorization": "Bearer nope"}
    response = requests.get(stack.api(path), headers=wrong, timeout=10)
    assert_json_error(response, 401, "unauthorized")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_submit_status_and_result_bytes(stack: Stack):
    response = post(stack, body(pow, 12, 2), params={"name": "twelve squared"})
    assert response.status_code == 201
    job = response.json()
    assert job["status"] == "queued" and job["name"] == "twelve squared"
    assert response.headers["Location"].endswith(f"/api/v1/jobs/{job['id']}")
    done = result(stack, job["id"])
    assert done.status_code == 200
    assert done.headers["Content-Type"] == "application/octet-stream"
    assert dill.loads(done.content) == 144
    assert int(done.headers["Content-Length"]) == len(done.content)  # not chunked
    status = requests.get(stack.api(f"/jobs/{job['id']}"), headers=stack.headers(), timeout=10)
    info = status.json()
    assert info["status"] == "finished"
    for key in ("created_at", "started_at", "finished_at", "worker", "attempts"):
        assert info[key], key


def test_a_large_result_is_a_standard_pickle(stack: Stack):
    """A large result carries the index of its buffers after the pickle (for the SDK);
    a REST user's plain ``pickle.loads`` reads it all the same."""
    response = post(stack, body(np.arange, 400_000.0))
    done = result(stack, response.json()["id"])
    assert done.status_code == 200 and done.content.endswith(buffer_index.MAGIC)
    assert np.array_equal(pickle.loads(done.content), np.arange(400_000.0))


def test_long_poll_answers_202_while_running(stack: Stack):
    job = post(stack, body(time.sleep, 1.5)).json()
    started = time.monotonic()
    pending = result(stack, job["id"], wait=0.3)
    assert pending.status_code == 202
    assert pending.json()["status"] in ("queued", "running")
    assert 0.25 < time.monotonic() - started < 1.4
    done = result(stack, job["id"], wait=30)
    assert done.status_code == 200 and dill.loads(done.content) is None


def test_failed_job_answers_error_json(stack: Stack):
    job = post(stack, body(divmod, 1, 0)).json()
    response = result(stack, job["id"])
    assert response.status_code == 200
    failed = response.json()
    assert failed["status"] == "failed"
    assert failed["error"]["type"] == "ZeroDivisionError"
    assert "division" in failed["error"]["message"]
    assert isinstance(
        dill.loads(__import__("base64").b64decode(failed["exception"])), ZeroDivisionError
    )


def test_payload_module_missing_on_worker_is_a_deserialization_error(stack: Stack):
    missing = b"\x80\x04cnonexistent_module_xyz\nfunc\n)}\x87."
    job = post(stack, missing).json()
    failed = result(stack, job["id"]).json()
    assert failed["error"]["type"] == "DeserializationError"
    assert "nonexistent_module_xyz" in failed["error"]["message"]


@pytest.mark.parametrize(
    "data",
    [
        b"this is not dill",
        b"",
        body(abs, 3)[:-4],
        body(abs, 3) + b"junk",
        dill.dumps(42),
        dill.dumps([pow, (1,), {}]),
    ],
    ids=["garbage", "empty", "truncated", "trailing", "not-a-tuple", "list"],
)
def test_bad_bodies_get_400_and_create_nothing(stack: Stack, data: bytes):
    before = requests.get(stack.api("/jobs"), headers=stack.headers(), timeout=10).json()["jobs"]
    assert_json_error(post(stack, data), 400, "invalid_payload")
    after = requests.get(stack.api("/jobs"), headers=stack.headers(), timeout=10).json()["jobs"]
    assert [j["id"] for j in after] == [j["id"] for j in before]


def test_wrong_content_type_is_415(stack: Stack):
    response = requests.post(
        stack.api("/jobs"),
        data=body(abs, 1),
        headers={**stack.headers(), "Content-Type": "application/json"},
        timeout=10,
    )
    assert_json_error(response, 415)
    response = requests.post(stack.api("/jobs"), data=b"", headers=stack.headers(), timeout=10)
    assert_json_error(response, 415)


@pytest.mark.parametrize(
    "params",
    [
        {"timeout": "-1"},
        {"timeout": "soon"},
        {"retries": "-2"},
        {"retries": "1.5"},
        {"name": "x" * 201},
    ],
)
def test_bad_submit_options_are_400(stack: Stack, params: dict):
    assert_json_error(post(stack, body(abs, 1), params=params), 400, "invalid_parameter")


@pytest.mark.parametrize(
    "path, params",
    [
        ("/jobs", {"limit": "100000"}),
        ("/jobs", {"limit": "0"}),
        ("/jobs", {"status": "exploded"}),
        ("/jobs", {"cursor": "abc"}),
        (f"/jobs/{'0' * 32}/result", {"wait": "forever"}),
        (f"/jobs/{'0' * 32}/result", {"wait": "-3"}),
        (f"/jobs/{'0' * 32}/result", {"wait": "nan"}),
        (f"/jobs/{'0' * 32}/result", {"wait": ""}),  # empty is not a number
        ("/jobs", {"limit": ""}),
    ],
)
def test_bad_query_values_are_400(stack: Stack, path: str, params: dict):
    response = requests.get(stack.api(path), params=params, headers=stack.headers(), timeout=10)
    assert_json_error(response, 400, "invalid_parameter")


@pytest.mark.parametrize("job_id", ["0" * 32, "not-a-job", "..%2F..%2Fetc", "A" * 500])
def test_unknown_or_malformed_ids_are_404(stack: Stack, job_id: str):
    for suffix in ("", "/result"):
        response = requests.get(
            stack.api(f"/jobs/{job_id}{suffix}"), headers=stack.headers(), timeout=10
        )
        assert_json_error(response, 404)
    response = requests.delete(stack.api(f"/jobs/{job_id}"), headers=stack.headers(), timeout=10)
    assert_json_error(response, 404)


def test_unknown_route_and_wrong_method_are_json(stack: Stack):
    assert_json_error(requests.get(stack.api("/nope"), headers=stack.headers(), timeout=10), 404)
    response = requests.put(stack.api("/jobs"), headers=stack.headers(), timeout=10)
    assert_json_error(response, 405)


def test_python_version_mismatch_is_refused_at_submit(stack: Stack):
    response = post(stack, body(abs, 2), headers={"X-Computethis-Python": "2.7.18"})
    payload = assert_json_error(response, 400, "python_version_mismatch")
    assert "2.7" in payload["message"]


def test_delete_finished_job_removes_it_and_its_result(stack: Stack):
    job = post(stack, body(abs, 5)).json()
    assert result(stack, job["id"]).status_code == 200
    response = requests.delete(stack.api(f"/jobs/{job['id']}"), headers=stack.headers(), timeout=10)
    assert response.status_code == 200 and response.json()["deleted"] is True
    assert_json_error(result(stack, job["id"], wait=0), 404)
    assert not (stack.save_dir / "results" / job["id"]).exists()
    assert not (stack.save_dir / "payloads" / job["id"]).exists()


def test_delete_queued_or_running_job_cancels_it(stack: Stack):
    job = post(stack, body(time.sleep, 600)).json()
    response = requests.delete(stack.api(f"/jobs/{job['id']}"), headers=stack.headers(), timeout=30)
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled" and response.json()["deleted"] is False
    cancelled = result(stack, job["id"], wait=0)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"


def test_list_is_paginated_newest_first_with_status_filter(stack: Stack):
    ids = [post(stack, body(abs, i)).json()["id"] for i in range(5)]
    for job_id in ids:
        result(stack, job_id)
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = requests.get(
            stack.api("/jobs"), params=params, headers=stack.headers(), timeout=10
        ).json()
        seen += [job["id"] for job in page["jobs"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen[:5] == list(reversed(ids))
    assert len(seen) == len(set(seen))
    finished = requests.get(
        stack.api("/jobs"),
        params={"status": "finished", "limit": 1000},
        headers=stack.headers(),
        timeout=10,
    ).json()["jobs"]
    assert set(ids) <= {job["id"] for job in finished}
    assert all(job["status"] == "finished" for job in finished)


def test_idempotency_key_returns_the_same_job(stack: Stack):
    key = uuid.uuid4().hex
    first = post(stack, body(abs, 4), headers={"Idempotency-Key": key})
    second = post(stack, body(abs, 4), headers={"Idempotency-Key": key})
    assert first.status_code == 201 and second.status_code == 200
    assert first.json()["id"] == second.json()["id"]
    # The job can be looked up by its key (a client that never read the answer does).
    jobs = stack.api("/jobs")
    found = requests.get(jobs, params={"idempotency_key": key}, headers=stack.headers(), timeout=10)
    assert [job["id"] for job in found.json()["jobs"]] == [first.json()["id"]]
    unknown = {"idempotency_key": uuid.uuid4().hex}
    none = requests.get(jobs, params=unknown, headers=stack.headers(), timeout=10)
    assert none.status_code == 200 and none.json() == {"jobs": [], "next_cursor": None}
    empty = requests.get(jobs, params={"idempotency_key": ""}, headers=stack.headers(), timeout=10)
    assert_json_error(empty, 400, "invalid_parameter")


def test_workers_endpoint(stack: Stack):
    job = post(stack, body(abs, 3)).json()
    result(stack, job["id"])
    stack.wait_for_workers(2)  # a worker restarted by an earlier cancel rejoins
    response = requests.get(stack.api("/workers"), headers=stack.headers(), timeout=10)
    workers = response.json()["workers"]
    assert len(workers) == 2
    for worker in workers:
        assert worker["address"].startswith("tcp://")
        assert worker["threads"] == 1
        assert worker["memory_limit"] > 0
        assert "current_job" in worker and worker["jobs_completed"] >= 0
    assert sum(worker["jobs_completed"] for worker in workers) >= 1


def test_logs_endpoint_is_plain_text(stack: Stack):
    job = post(stack, body(print, "hello from a worker")).json()
    result(stack, job["id"])
    logs = requests.get(stack.api(f"/jobs/{job['id']}/logs"), headers=stack.headers(), timeout=10)
    assert logs.status_code == 200
    assert logs.headers["Content-Type"].startswith("text/plain")
    assert logs.text == "hello from a worker\n"
    missing = requests.get(stack.api(f"/jobs/{'0' * 32}/logs"), headers=stack.headers(), timeout=10)
    assert_json_error(missing, 404)


def test_metrics_in_prometheus_format(stack: Stack):
    job = post(stack, body(abs, -8)).json()
    result(stack, job["id"])
    assert_json_error(requests.get(f"{stack.url}/metrics", timeout=10), 401)
    response = requests.get(f"{stack.url}/metrics", headers=stack.headers(), timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    text = response.text
    for name in (
        "computethis_jobs_submitted_total",
        'computethis_jobs_completed_total{status="finished"}',
        'computethis_jobs{status="finished"}',
        "computethis_queue_depth",
        "computethis_job_duration_seconds_bucket",
        "computethis_worker_jobs_completed{",
        "computethis_worker_busy{",
        "computethis_http_request_duration_seconds_bucket",
        "computethis_http_requests_in_progress",
        "computethis_http_threads_idle",
        "computethis_http_connections_queued",
        "computethis_workers 2.0",
        "computethis_scheduler_connected 1.0",
    ):
        assert name in text, name
    samples = scrape_metrics(stack)
    assert samples["computethis_jobs_submitted_total"] >= 1
    assert samples["computethis_http_requests_in_progress"] >= 1  # this scrape
