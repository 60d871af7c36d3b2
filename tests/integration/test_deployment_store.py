"""The store's deployment queries against a real SQLite store: what they answer, and
that they read only the rows they need (a deployment's calls only grow: reading all of
them on every call made each call slower than the last); and the artifacts' retention."""

from __future__ import annotations

import hashlib
import io
import os
import time
from pathlib import Path

import pytest

from gateway.janitor import Janitor
from gateway.store import FINISHED, MODEL, JobSpec, JobStore, Outcome
from gateway.store.deployments import Deployments

DEPLOYMENT = "d" * 32
REPLICAS = 2


@pytest.fixture
def store(tmp_path: Path) -> JobStore:
    opened = JobStore(tmp_path / "save", durable=False)
    opened.deployments.create(DEPLOYMENT, "alice", None, REPLICAS, [], ["predict"], b"class")
    yield opened
    opened.close()


def call(store: JobStore, replica: int, construct: bool = False) -> str:
    """Create a model job for ``replica`` as the API does; its id."""
    staged = store.stage_payload(io.BytesIO(b"call"), max_bytes=1 << 20)
    job, created = store.create(
        JobSpec("alice", kind=MODEL),
        staged,
        also=lambda db: Deployments.add_call(db, staged.job_id, DEPLOYMENT, replica, construct),
    )
    assert created
    return job.id


def finish(store: JobStore, job_id: str, worker: str) -> None:
    assert store.mark_started(job_id, worker, 1.0)
    assert store.record([Outcome(job_id, ok=True, worker=worker, body=b"r")]) == [job_id]


def test_the_deployment_queries_answer_from_its_calls(store: JobStore):
    constructs = [call(store, replica, construct=True) for replica in (1, 0)]
    for job_id, worker in zip(constructs, ("tcp://b", "tcp://a"), strict=True):
        finish(store, job_id, worker)
    done = [call(store, replica) for replica in (0, 1, 0)]
    for job_id, worker in zip(done, ("tcp://a", "tcp://c", "tcp://d"), strict=True):
        finish(store, job_id, worker)
    running = call(store, 1)
    store.mark_started(running, "tcp://e", 2.0)
    queued = [call(store, 0), call(store, 0)]
    calls = store.deployments

    assert calls.busy(DEPLOYMENT) == {0: 2, 1: 1}
    assert sorted(calls.active_calls(DEPLOYMENT)) == sorted([running, *queued])
    # the worker of each replica's latest call that has one (queued calls have none)
    assert calls.replica_workers(DEPLOYMENT, REPLICAS) == {0: "tcp://d", 1: "tcp://e"}
    assert [
        (item["replica"], item["job"], item["status"]) for item in calls.construct_jobs(DEPLOYMENT)
    ] == [(0, constructs[1], FINISHED), (1, constructs[0], FINISHED)]


def test_a_deleted_call_s_row_goes_with_it_but_a_construct_job_s_stays(store: JobStore):
    construct = call(store, 0, construct=True)
    finish(store, construct, "tcp://a")
    method = call(store, 0)
    finish(store, method, "tcp://b")
    assert store.delete(method) and store.delete(construct)
    assert store.deployments.call_of(method) is None
    assert store.deployments.call_of(construct) == (DEPLOYMENT, 0)  # listed by the view
    assert store.deployments.replica_workers(DEPLOYMENT, REPLICAS) == {}


QUERIES = {  # each query of a deployment, as the gateway makes it
    "busy": lambda calls: calls.busy(DEPLOYMENT),
    "active_calls": lambda calls: calls.active_calls(DEPLOYMENT),
    "construct_jobs": lambda calls: calls.construct_jobs(DEPLOYMENT),
    "replica_workers": lambda calls: calls.replica_workers(DEPLOYMENT, REPLICAS),
}


def steps(store: JobStore, query: str) -> int:
    """SQLite virtual-machine instructions ``query`` executes (counted by a progress
    handler called after every instruction)."""
    count = 0

    def step() -> int:
        nonlocal count
        count += 1
        return 0

    connection = store.db.connection()
    connection.set_progress_handler(step, 1)
    try:
        QUERIES[query](store.deployments)
    finally:
        connection.set_progress_handler(None, 1)
    return count


def add_finished_calls(store: JobStore, numbers: range) -> None:
    """Finished calls spread over the replicas, written as rows (quicker than jobs)."""
    with store.db.transaction() as db:
        for n in numbers:
            job_id = f"{n:032x}"
            db.execute(
                "INSERT INTO jobs (id, tenant, status, created_at, payload_size, kind, worker)"
                " VALUES (?, 'alice', ?, 0, 0, ?, ?)",
                (job_id, FINISHED, MODEL, f"tcp://w{n % REPLICAS}"),
            )
            Deployments.add_call(db, job_id, DEPLOYMENT, n % REPLICAS, False)


@pytest.mark.parametrize("query", list(QUERIES))
def test_a_deployment_query_does_not_grow_with_its_finished_calls(store: JobStore, query: str):
    for replica in range(REPLICAS):
        finish(store, call(store, replica, construct=True), f"tcp://w{replica}")
    add_finished_calls(store, range(20))
    call(store, 0)  # one queued
    few = steps(store, query)
    add_finished_calls(store, range(20, 2_000))
    many = steps(store, query)
    assert many < 2 * few, f"{query}: {few} steps at 20 finished calls, {many} at 2,000"


def keep_artifact(store: JobStore, tenant: str, data: bytes, age: float) -> str:
    """Upload ``data`` as ``tenant``'s artifact last used ``age`` seconds ago; its digest."""
    digest = hashlib.sha256(data).hexdigest()
    store.artifacts.receive(tenant, digest, io.BytesIO(data), len(data), 1 << 20)
    then = time.time() - age
    os.utime(store.artifacts.path(tenant, digest), (then, then))
    return digest


def test_artifacts_unused_for_the_retention_time_expire_unless_an_open_deployment_loads_them(
    store: JobStore,
):
    loaded = keep_artifact(store, "alice", b"weights", age=7200)
    other = keep_artifact(store, "bob", b"weights", age=7200)  # the same bytes, bob's
    unused = keep_artifact(store, "alice", b"old weights", age=7200)
    recent = keep_artifact(store, "alice", b"new weights", age=10)
    store.deployments.create("e" * 32, "alice", None, 1, [loaded], ["predict"], b"class")
    janitor = Janitor(store, ttl=3600)

    janitor.sweep()
    assert store.artifacts.exists("alice", loaded)  # its deployment is open
    assert not store.artifacts.exists("bob", other)  # alice's deployment is not bob's
    assert not store.artifacts.exists("alice", unused)
    assert store.artifacts.exists("alice", recent)

    store.deployments.close("e" * 32)
    os.utime(store.artifacts.path("alice", loaded), (time.time() - 7200,) * 2)
    janitor.sweep()
    assert not store.artifacts.exists("alice", loaded)
    assert store.artifacts.exists("alice", recent)
