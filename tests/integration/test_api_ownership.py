"""Ownership through the app factory, no cluster: a tenant reads, cancels and deletes only
its own jobs; another tenant's job answers exactly as a missing one; the admin sees all."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from gateway.services import Services
from gateway.store import Job
from tests.integration.unstarted import ADMIN_TOKEN, stored_job, unstarted_app
from wire.http import API_PREFIX, JOBS_PATH, RESULTS_PATH

MISSING = "0" * 32


@dataclass
class Gateway:
    client: FlaskClient
    shared: Services
    alice: dict[str, str]
    bob: dict[str, str]
    admin: dict[str, str]

    def job_of(self, tenant: str) -> Job:
        return stored_job(self.shared, tenant)


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    with unstarted_app(tmp_path / "save") as (client, shared):
        yield Gateway(
            client=client,
            shared=shared,
            alice=_bearer(shared.tokens.create("alice")),
            bob=_bearer(shared.tokens.create("bob")),
            admin=_bearer(ADMIN_TOKEN),
        )


def _same_as_missing(gateway: Gateway, method: str, suffix: str, job: Job) -> None:
    """``method`` on another tenant's job answers what it answers for no job at all."""
    theirs = gateway.client.open(
        f"{JOBS_PATH}/{job.id}{suffix}", method=method, headers=gateway.bob
    )
    missing = gateway.client.open(
        f"{JOBS_PATH}/{MISSING}{suffix}", method=method, headers=gateway.bob
    )
    assert theirs.status_code == missing.status_code == 404, (method, suffix)
    assert theirs.json["error"] == missing.json["error"] == "job_not_found"
    assert theirs.json["message"] == missing.json["message"].replace(MISSING, job.id)


@pytest.mark.parametrize(
    ("method", "suffix"),
    [("GET", ""), ("GET", "/result"), ("GET", "/logs"), ("POST", "/cancel"), ("DELETE", "")],
)
def test_another_tenants_job_reads_as_missing(gateway: Gateway, method: str, suffix: str) -> None:
    job = gateway.job_of("alice")
    _same_as_missing(gateway, method, suffix, job)
    # ... and nothing was done to it: alice still has it, queued.
    mine = gateway.client.get(f"{JOBS_PATH}/{job.id}", headers=gateway.alice)
    assert mine.status_code == 200 and mine.json["status"] == "queued"


def test_the_owner_and_the_admin_see_the_job(gateway: Gateway) -> None:
    job = gateway.job_of("alice")
    for headers in (gateway.alice, gateway.admin):
        answer = gateway.client.get(f"{JOBS_PATH}/{job.id}", headers=headers)
        assert answer.status_code == 200 and answer.json["id"] == job.id


def test_listing_shows_a_tenant_only_its_jobs_and_the_admin_all(gateway: Gateway) -> None:
    alices = {gateway.job_of("alice").id for _ in range(3)}
    bobs = {gateway.job_of("bob").id for _ in range(2)}

    def listed(headers: dict[str, str]) -> set[str]:
        answer = gateway.client.get(JOBS_PATH, headers=headers)
        assert answer.status_code == 200
        return {job["id"] for job in answer.json["jobs"]}

    assert listed(gateway.alice) == alices
    assert listed(gateway.bob) == bobs
    assert listed(gateway.admin) == alices | bobs


def test_results_of_another_tenants_job_are_refused_before_streaming(gateway: Gateway) -> None:
    mine, theirs = gateway.job_of("bob"), gateway.job_of("alice")
    answer = gateway.client.post(
        RESULTS_PATH, json={"jobs": [mine.id, theirs.id]}, headers=gateway.bob
    )
    assert answer.status_code == 404
    assert answer.json["error"] == "job_not_found" and theirs.id in answer.json["message"]


def test_a_request_without_a_valid_token_sees_nothing(gateway: Gateway) -> None:
    job = gateway.job_of("alice")
    for headers in ({}, _bearer("not-a-token")):
        answer = gateway.client.get(f"{JOBS_PATH}/{job.id}", headers=headers)
        assert answer.status_code == 401 and answer.json["error"]
    assert gateway.client.get(f"{API_PREFIX}/health").status_code in (200, 503)
