"""``client_sdk.Client``: one process talking to two gateways at once; the default client."""

from __future__ import annotations

import pickle
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests

import client_sdk
from client_sdk import Client, Job, compute_this, gather
from client_sdk.abandon import AbandonableJobs
from tests.stack import Stack, start_stack
from tests.system.test_coalesce import at_once


@compute_this
def times_ten(x: int) -> int:
    return x * 10


def job_names(stack: Stack) -> list[str | None]:
    """The names of the stack's newest jobs (up to 1000), newest first."""
    listing = requests.get(
        stack.api("/jobs"), params={"limit": 1000}, headers=stack.headers(), timeout=30
    ).json()
    return [job["name"] for job in listing["jobs"]]


def has_job(stack: Stack, job_id: str) -> bool:
    response = requests.get(stack.api(f"/jobs/{job_id}"), headers=stack.headers(), timeout=30)
    assert response.status_code in (200, 404), response.text
    return response.status_code == 200


def test_two_clients_send_each_job_to_its_own_gateway(stack: Stack, tmp_path: Path):
    second = start_stack(tmp_path / "save", workers=1, token="second-token")
    try:
        first_client = Client(stack.url, stack.token)
        second_client = Client(second.url, "second-token")
        first_name, second_name = f"first-{uuid.uuid4().hex}", f"second-{uuid.uuid4().hex}"
        on_first = compute_this(times_ten.func, name=first_name, client=first_client)
        on_second = compute_this(times_ten.func, name=second_name).with_client(second_client)

        # Threads of one process compute on both at once (each client coalesces its own).
        outcomes = at_once(12, lambda i: (on_first if i % 2 else on_second).compute(i))
        assert outcomes == [10 * i for i in range(12)]
        assert job_names(second).count(second_name) == 6
        assert job_names(second).count(first_name) == 0
        assert job_names(stack).count(first_name) == 6
        assert job_names(stack).count(second_name) == 0

        job_on_first, job_on_second = on_first.submit(1), on_second.submit(2)
        assert job_on_first.client is first_client and job_on_second.client is second_client
        assert has_job(stack, job_on_first.id) and not has_job(second, job_on_first.id)
        assert has_job(second, job_on_second.id) and not has_job(stack, job_on_second.id)
        assert gather([job_on_first, job_on_second], timeout=60) == [10, 20]  # both gateways
        assert Job.from_id(job_on_second.id, client=second_client).result(timeout=60) == 20

        assert on_second.map(range(5)) == [0, 10, 20, 30, 40]
        many = on_second.submit_many([3, 4])
        assert all(has_job(second, job.id) and not has_job(stack, job.id) for job in many)
        assert gather(many, timeout=60) == [30, 40]
    finally:
        second.stop()


def test_an_unbound_function_and_its_jobs_follow_the_default_client(sdk: Stack):
    job = times_ten.submit(5)
    assert job.client is client_sdk.default_client()
    client = client_sdk.configure(token="another")  # the URL is kept
    assert client is client_sdk.default_client()
    assert client.settings.url == sdk.url and client.settings.token == "another"
    with pytest.raises(client_sdk.ApiError) as refused:
        job.result(timeout=10)  # through the new default, whose token the gateway refuses
    assert refused.value.status == 401
    assert Job.from_id(job.id, client=Client(sdk.url, sdk.token)).result(timeout=60) == 50


def test_unset_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("COMPUTETHIS_URL", "http://gateway.example:5000/")
    monkeypatch.setenv("COMPUTETHIS_TOKEN", "from-env")
    monkeypatch.delenv("COMPUTETHIS_CA", raising=False)
    assert Client().settings == client_sdk.config.Settings(
        "http://gateway.example:5000", "from-env", None
    )
    assert Client("http://other:1", ca="ca.pem").settings.token == "from-env"
    previous = client_sdk.set_default_client(None)
    try:
        assert client_sdk.default_client().settings.url == "http://gateway.example:5000"
    finally:
        client_sdk.set_default_client(previous)


def test_a_client_pickles_as_its_settings_and_hides_its_token():
    client = Client("http://gateway.example:5000", "secret", ca="ca.pem")
    copy = pickle.loads(pickle.dumps(client))
    assert copy is not client and copy.settings == client.settings
    assert "secret" not in repr(client) and "secret" not in repr(client.settings)
    bound = pickle.loads(pickle.dumps(compute_this(abs, client=client)))
    assert bound.client.settings == client.settings


class RecordingTransport:
    """Stands in for a Transport: records the requests it is asked for."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []

    def request(self, method: str, path: str, **kwargs: Any) -> None:
        self.requests.append((method, path))


def test_abandoned_jobs_are_cancelled_once_including_those_created_later():
    transport: Any = RecordingTransport()
    jobs = AbandonableJobs()
    jobs.created("a")
    jobs.created("b")
    jobs.collected(["b"])  # done: nothing to cancel
    jobs.abandon(transport)
    jobs.created("c")  # its id came after the caller gave up
    jobs.abandon(transport)  # again: nothing cancelled twice
    assert transport.requests == [("POST", "/jobs/a/cancel"), ("POST", "/jobs/c/cancel")]
