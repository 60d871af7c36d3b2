"""Unit tests for gateway.store.JobStore (SQLite records plus payload/result files).

Most tests use a store that keeps every non-empty payload and result in a file
(``INLINE_LIMIT`` = 0), so the file handling is what they check; the ``inline_store``
tests check the default, where small ones live in the job's row.
"""

from __future__ import annotations

import io
import json
import re
import threading
from datetime import datetime
from pathlib import Path

import pytest

from gateway.store import (
    ACTIVE,
    CANCELLED,
    EXPIRED,
    FAILED,
    FINISHED,
    JOB_ID,
    QUEUED,
    RUNNING,
    STATUSES,
    TERMINAL,
    JobSpec,
    JobStore,
    Outcome,
    PayloadTooLarge,
    blobs,
    reads,
)
from tests.stack import wait_until
from wire.envelope import Envelope, pack, unpack
from wire.limits import INLINE_LIMIT

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> JobStore:
    """A store that writes every non-empty payload and result to a file."""
    monkeypatch.setattr(blobs, "INLINE_LIMIT", 0)
    opened = JobStore(tmp_path / "save")
    yield opened
    opened.close()


@pytest.fixture
def inline_store(tmp_path: Path) -> JobStore:
    """A store with the default INLINE_LIMIT: small payloads and results in the rows."""
    opened = JobStore(tmp_path / "inline")
    yield opened
    opened.close()


def submit(store: JobStore, tenant: str = "alice", body: bytes = b"payload", **spec):
    staged = store.stage_payload(io.BytesIO(body), max_bytes=1 << 20)
    return store.create(JobSpec(tenant=tenant, **spec), staged)


def new_job(store: JobStore, tenant: str = "alice", body: bytes = b"payload", **spec):
    job, created = submit(store, tenant, body, **spec)
    assert created
    return job


def files(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir())


def from_iso(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


# -- constants ----------------------------------------------------------------------


def test_status_groups_are_consistent():
    assert set(ACTIVE) | set(TERMINAL) | {EXPIRED} == set(STATUSES)
    assert not set(ACTIVE) & set(TERMINAL)
    assert ACTIVE == (QUEUED, RUNNING)
    assert set(TERMINAL) == {FINISHED, FAILED, CANCELLED}


@pytest.mark.parametrize(
    ("text", "valid"),
    [
        ("0123456789abcdef0123456789abcdef", True),
        ("0123456789ABCDEF0123456789ABCDEF", False),
        ("0123456789abcdef0123456789abcde", False),
        ("0123456789abcdef0123456789abcdef0", False),
        ("0123456789abcdef0123456789abcdeg", False),
        ("../../../../etc/passwd", False),
        ("0123456789abcdef0123456789abcdef\n", False),
        ("", False),
    ],
)
def test_job_id_pattern(text: str, valid: bool):
    assert bool(JOB_ID.match(text)) is valid


# -- layout and submission ----------------------------------------------------------


def test_store_creates_its_directories(tmp_path: Path):
    store = JobStore(tmp_path / "a" / "b", durable=False)
    try:
        for name in ("payloads", "results", "tmp"):
            assert (tmp_path / "a" / "b" / name).is_dir()
        assert store.db_path.exists()
    finally:
        store.close()


def test_create_get_round_trip(store: JobStore):
    body = b"\x80\x04some pickled call"
    job = new_job(
        store,
        tenant="alice",
        body=body,
        name="my job",
        timeout=12.5,
        retries=2,
        python_version="3.11.7",
        dill_version="0.4.1",
        idempotency_key="k1",
    )
    assert JOB_ID.match(job.id)
    assert job == store.get(job.id)  # what create returns is what was stored
    assert job.seq >= 1
    assert job.tenant == "alice"
    assert job.status == QUEUED
    assert not job.done
    assert job.payload_size == len(body)
    assert job.attempts == 0
    assert job.worker is None
    assert job.started_at is None and job.finished_at is None
    assert job.error is None and job.exception is None
    assert job.idempotency_key == "k1"

    again = store.get(job.id)
    assert again == job
    assert store.read_payload(job.id) == body
    assert store.read_payload(job.id) == body
    assert files(store.tmp_dir) == []

    data = job.to_json()
    assert set(data) == {
        "id",
        "kind",
        "ranks",
        "name",
        "status",
        "created_at",
        "started_at",
        "finished_at",
        "duration",
        "worker",
        "attempts",
        "timeout",
        "retries",
        "python_version",
        "dill_version",
        "payload_size",
        "result_size",
    }
    assert data["id"] == job.id
    assert data["name"] == "my job"
    assert data["status"] == "queued"
    assert ISO.match(data["created_at"])
    assert abs(from_iso(data["created_at"]) - job.created_at) < 0.001
    assert data["started_at"] is None
    assert data["finished_at"] is None
    assert data["duration"] is None
    assert data["timeout"] == 12.5
    assert data["retries"] == 2
    assert data["python_version"] == "3.11.7"
    assert data["dill_version"] == "0.4.1"
    assert data["payload_size"] == len(body)
    assert data["result_size"] is None
    # the JSON view never exposes the tenant, the key or the pickled exception
    assert "tenant" not in data and "idempotency_key" not in data and "exception" not in data
    json.dumps(data)


def test_to_json_times_and_duration_after_recording(store: JobStore):
    job = new_job(store)
    assert store.mark_started(job.id, "tcp://w1:1", T0)
    recorded = store.record(
        [Outcome(job.id, ok=True, worker="tcp://w1:1", finished_at=T0 + 1.5, body=b"result")]
    )
    assert recorded == [job.id]
    data = store.get(job.id).to_json()
    assert data["status"] == "finished"
    assert data["started_at"] == "2023-11-14T22:13:20.000Z"
    assert data["finished_at"] == "2023-11-14T22:13:21.500Z"
    assert data["duration"] == 1.5
    assert data["worker"] == "tcp://w1:1"
    assert data["attempts"] == 1
    assert data["result_size"] == len(b"result")
    assert "error" not in data


def test_to_json_includes_error_of_failed_job(store: JobStore):
    job = new_job(store)
    error = {"type": "ValueError", "message": "bad", "traceback": "Traceback..."}
    store.record([Outcome(job.id, ok=False, error=error, body=b"exc")])
    data = store.get(job.id).to_json()
    assert data["status"] == "failed"
    assert data["error"] == error
    assert "exception" not in data


def test_stage_payload_reads_streams_larger_than_one_chunk(store: JobStore):
    body = bytes(range(256)) * 9000  # about 2.2 MiB, several 1 MiB chunks
    staged = store.stage_payload(io.BytesIO(body), max_bytes=len(body))
    assert staged.size == len(body)
    assert JOB_ID.match(staged.job_id)
    assert staged.path.parent == store.tmp_dir
    assert staged.path.read_bytes() == body
    job, created = store.create(JobSpec("alice"), staged)
    assert created
    assert job.id == staged.job_id
    assert not staged.path.exists()
    assert store.read_payload(job.id) == body
    assert job.payload_size == len(body)


def test_stage_payload_accepts_exactly_max_bytes(store: JobStore):
    staged = store.stage_payload(io.BytesIO(b"x" * 100), max_bytes=100)
    assert staged.size == 100


def test_stage_payload_accepts_empty_body(store: JobStore):
    staged = store.stage_payload(io.BytesIO(b""), max_bytes=100)
    assert staged.size == 0
    assert staged.inline and staged.data == b""


@pytest.mark.parametrize("size", [101, 5 << 20])
def test_stage_payload_too_large_leaves_no_file(store: JobStore, size: int):
    with pytest.raises(PayloadTooLarge):
        store.stage_payload(io.BytesIO(b"x" * size), max_bytes=100)
    assert files(store.tmp_dir) == []
    assert files(store.payload_dir) == []
    assert store.list() == []


def test_stage_payload_removes_temp_file_when_stream_fails(store: JobStore):
    class Broken(io.RawIOBase):
        def __init__(self) -> None:
            self.calls = 0

        def read(self, size: int = -1) -> bytes:
            self.calls += 1
            if self.calls > 2:
                raise ConnectionResetError("client went away")
            return b"x" * 10

    with pytest.raises(ConnectionResetError):
        store.stage_payload(Broken(), max_bytes=1000)
    assert files(store.tmp_dir) == []


def test_discard_removes_staged_payload(store: JobStore):
    staged = store.stage_payload(io.BytesIO(b"abc"), max_bytes=10)
    assert staged.path.exists()
    store.discard(staged)
    assert not staged.path.exists()
    store.discard(staged)  # idempotent
    assert store.list() == []


def test_staged_payloads_get_distinct_ids(store: JobStore):
    ids = {store.stage_payload(io.BytesIO(b"a"), max_bytes=10).job_id for _ in range(20)}
    assert len(ids) == 20


# -- reads --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "job_id",
    ["", "nope", "../" * 5 + "etc/passwd", "0" * 31, "0" * 33, "A" * 32, "0" * 32 + "\n"],
)
def test_get_rejects_malformed_ids(store: JobStore, job_id: str):
    new_job(store)
    assert store.get(job_id) is None


def test_get_unknown_id_is_none(store: JobStore):
    assert store.get("0" * 32) is None


@pytest.mark.parametrize(
    "job_id", ["../jobs.sqlite3", "..", "", "a" * 31, "/etc/passwd", "a" * 32 + "\n"]
)
def test_file_paths_reject_non_job_ids(store: JobStore, job_id: str):
    with pytest.raises(ValueError):
        store.payload_path(job_id)
    with pytest.raises(ValueError):
        store.result_path(job_id)


def test_file_paths_stay_inside_their_directories(store: JobStore):
    job_id = "ab" * 16
    assert store.payload_path(job_id) == store.payload_dir / job_id
    assert store.result_path(job_id) == store.result_dir / job_id


def test_list_is_newest_first_and_limited(store: JobStore):
    jobs = [new_job(store, name=f"j{i}") for i in range(5)]
    listed = store.list()
    assert [job.id for job in listed] == [job.id for job in reversed(jobs)]
    assert [job.seq for job in listed] == sorted((job.seq for job in jobs), reverse=True)
    assert [job.id for job in store.list(limit=2)] == [jobs[4].id, jobs[3].id]


def test_list_pagination_has_no_duplicates_or_gaps(store: JobStore):
    jobs = [new_job(store) for _ in range(11)]
    seen: list[str] = []
    before = None
    pages = 0
    while True:
        page = store.list(limit=3, before_seq=before)
        if not page:
            break
        pages += 1
        assert len(page) <= 3
        assert [job.seq for job in page] == sorted((job.seq for job in page), reverse=True)
        seen.extend(job.id for job in page)
        before = page[-1].seq
    assert pages == 4
    assert seen == [job.id for job in reversed(jobs)]
    assert len(set(seen)) == len(seen)


def test_list_pagination_is_stable_while_new_jobs_arrive(store: JobStore):
    old = [new_job(store) for _ in range(6)]
    first = store.list(limit=3)
    for _ in range(4):
        new_job(store)
    second = store.list(limit=3, before_seq=first[-1].seq)
    assert [job.id for job in first + second] == [job.id for job in reversed(old)]


def test_list_filters_by_status_with_pagination(store: JobStore):
    jobs = [new_job(store) for _ in range(9)]
    cancelled = [job for i, job in enumerate(jobs) if i % 2 == 0]
    for job in cancelled:
        assert store.cancel(job.id)
    store.mark_started(jobs[1].id, "w", T0)

    assert {job.id for job in store.list(status=CANCELLED)} == {job.id for job in cancelled}
    assert all(job.status == CANCELLED for job in store.list(status=CANCELLED))
    assert [job.id for job in store.list(status=RUNNING)] == [jobs[1].id]
    assert [job.id for job in store.list(status=QUEUED)] == [jobs[7].id, jobs[5].id, jobs[3].id]
    assert store.list(status=FINISHED) == []

    seen: list[str] = []
    before = None
    while page := store.list(status=CANCELLED, limit=2, before_seq=before):
        seen.extend(job.id for job in page)
        before = page[-1].seq
    assert seen == [job.id for job in reversed(cancelled)]


def test_list_filters_by_tenant(store: JobStore):
    a1 = new_job(store, tenant="alice")
    b1 = new_job(store, tenant="bob")
    a2 = new_job(store, tenant="alice")
    assert [job.id for job in store.list(tenant="alice")] == [a2.id, a1.id]
    assert [job.id for job in store.list(tenant="bob")] == [b1.id]
    assert store.list(tenant="carol") == []
    assert [job.id for job in store.list()] == [a2.id, b1.id, a1.id]
    store.cancel(a1.id)
    assert [job.id for job in store.list(tenant="alice", status=CANCELLED)] == [a1.id]
    assert store.list(tenant="bob", status=CANCELLED) == []
    assert [job.id for job in store.list(tenant="alice", before_seq=a2.seq)] == [a1.id]


def test_active_lists_queued_and_running_oldest_first(store: JobStore):
    jobs = [new_job(store) for _ in range(5)]
    store.mark_started(jobs[1].id, "w", T0)
    store.cancel(jobs[2].id)
    store.record([Outcome(jobs[3].id, ok=True, body=b"r")])
    active = store.active()
    assert [job.id for job in active] == [jobs[0].id, jobs[1].id, jobs[4].id]
    assert [job.status for job in active] == [QUEUED, RUNNING, QUEUED]


def test_worker_stats(store: JobStore):
    assert store.worker_stats() == {}
    jobs = [new_job(store) for _ in range(7)]
    for job in jobs[:2]:
        store.mark_started(job.id, "w1", T0)
        store.record([Outcome(job.id, ok=True, body=b"r")])
    store.mark_started(jobs[2].id, "w1", T0)  # w1 is running jobs[2]
    store.mark_started(jobs[3].id, "w2", T0)
    store.record([Outcome(jobs[3].id, ok=True, body=b"r")])
    store.mark_started(jobs[4].id, "w3", T0)  # w3 has only a running job
    store.mark_started(jobs[5].id, "w4", T0)  # failures are not "completed"
    store.record([Outcome(jobs[5].id, ok=False, error={"type": "E"})])
    # jobs[6] stays queued without a worker
    assert store.worker_stats() == {
        "w1": {"completed": 2, "current_job": jobs[2].id, "tenant": jobs[2].tenant},
        "w2": {"completed": 1, "current_job": None},
        "w3": {"completed": 0, "current_job": jobs[4].id, "tenant": jobs[4].tenant},
    }


# -- reads scoped to a tenant -------------------------------------------------------


def test_reads_for_a_tenant_see_its_jobs_as_every_tenant_reads_do(inline_store: JobStore):
    job = new_job(inline_store, tenant="alice")
    inline_store.record([Outcome(job.id, ok=True, body=b"result", logs=b"printed")])
    done = inline_store.get(job.id)
    assert inline_store.get(job.id, tenant="alice") == done
    assert inline_store.get_with_result(job.id, tenant="alice") == (done, b"result")
    assert inline_store.logs(job.id, tenant="alice") == b"printed"
    assert inline_store.logs(job.id) == b"printed"
    assert inline_store.tenants([job.id], tenant="alice") == {job.id: "alice"}
    assert inline_store.done_with_results([job.id], tenant="alice") == [(done, b"result")]
    assert inline_store.list(tenant="alice") == [done]


def test_another_tenants_job_reads_exactly_as_a_missing_one(inline_store: JobStore):
    theirs = new_job(inline_store, tenant="bob")
    inline_store.record([Outcome(theirs.id, ok=True, body=b"secret", logs=b"secret")])
    missing = "f" * 32
    for job_id in (theirs.id, missing):
        assert inline_store.get(job_id, tenant="alice") is None
        assert inline_store.get_with_result(job_id, tenant="alice") is None
        assert inline_store.logs(job_id, tenant="alice") is None
        assert inline_store.tenants([job_id], tenant="alice") == {}
        assert inline_store.done_with_results([job_id], tenant="alice") == []
    assert inline_store.list(tenant="alice") == []
    # every tenant's reads (tenant=None: the admin, the dispatcher) still see it
    assert inline_store.get(theirs.id).tenant == "bob"
    assert inline_store.logs(missing) is None


def test_tenant_scoped_reads_of_many_ids_keep_only_the_tenants_own(
    inline_store: JobStore, monkeypatch
):
    monkeypatch.setattr(reads, "_IDS_PER_QUERY", 2)  # several queries
    mine = [new_job(inline_store, tenant="alice") for _ in range(3)]
    theirs = [new_job(inline_store, tenant="bob") for _ in range(2)]
    inline_store.record(Outcome(job.id, ok=True, body=b"r") for job in mine + theirs)
    asked = [mine[0].id, theirs[0].id, mine[1].id, theirs[1].id, mine[2].id, mine[0].id, "x"]
    assert inline_store.tenants(asked, tenant="alice") == {job.id: "alice" for job in mine}
    assert inline_store.tenants(asked) == {
        **{job.id: "alice" for job in mine},
        **{job.id: "bob" for job in theirs},
    }
    done = inline_store.done_with_results(asked, tenant="bob")
    assert sorted(job.id for job, _ in done) == sorted(job.id for job in theirs)
    assert all(result == b"r" for _, result in done)


# -- idempotency --------------------------------------------------------------------


def test_same_tenant_and_key_returns_existing_job(store: JobStore):
    first, created = submit(store, "alice", b"first", idempotency_key="key-1")
    assert created
    second, created_again = submit(store, "alice", b"second", idempotency_key="key-1")
    assert created_again is False
    assert second.id == first.id
    assert second == store.get(first.id)
    assert store.read_payload(first.id) == b"first"
    assert files(store.payload_dir) == [first.id]  # the duplicate payload is removed
    assert files(store.tmp_dir) == []
    assert len(store.list()) == 1


def test_idempotent_resubmission_returns_job_in_its_current_state(store: JobStore):
    first = new_job(store, idempotency_key="key-1")
    store.mark_started(first.id, "w1", T0)
    store.record([Outcome(first.id, ok=True, body=b"done")])
    again, created = submit(store, idempotency_key="key-1")
    assert not created
    assert again.id == first.id
    assert again.status == FINISHED


def test_same_key_for_another_tenant_creates_a_new_job(store: JobStore):
    alice = new_job(store, "alice", idempotency_key="shared")
    bob, created = submit(store, "bob", idempotency_key="shared")
    assert created
    assert bob.id != alice.id
    assert store.find_by_key("alice", "shared").id == alice.id
    assert store.find_by_key("bob", "shared").id == bob.id


def test_different_keys_or_no_key_create_new_jobs(store: JobStore):
    a = new_job(store, idempotency_key="k1")
    b = new_job(store, idempotency_key="k2")
    c = new_job(store)
    d = new_job(store)
    assert len({a.id, b.id, c.id, d.id}) == 4
    assert len(store.list()) == 4


def test_find_by_key(store: JobStore):
    job = new_job(store, "alice", idempotency_key="k")
    assert store.find_by_key("alice", "k").id == job.id
    assert store.find_by_key("alice", None) is None
    assert store.find_by_key("alice", "other") is None
    assert store.find_by_key("bob", "k") is None


def test_admission_finds_the_key_and_counts_active_jobs_in_one_go(store: JobStore):
    keyed = new_job(store, "alice", idempotency_key="k")
    running = new_job(store, "alice")
    done = new_job(store, "alice")
    new_job(store, "bob")
    store.mark_started(running.id, "w1", T0)
    store.record([Outcome(done.id, ok=True, body=b"x")])
    existing, active = store.admission("alice", "k")
    assert existing is not None and existing.id == keyed.id
    assert active == 2  # keyed (queued) and running; not done, not bob's
    assert store.admission("alice", None) == (None, 2)
    assert store.admission("alice", "other") == (None, 2)
    assert store.admission("bob", "k") == (None, 1)
    assert store.admission("carol", "k") == (None, 0)


# -- state changes ------------------------------------------------------------------


def test_mark_started_counts_attempts_of_active_jobs(store: JobStore):
    job = new_job(store)
    assert store.mark_started(job.id, "w1", T0)
    running = store.get(job.id)
    assert running.status == RUNNING
    assert running.worker == "w1"
    assert running.started_at == T0
    assert running.attempts == 1
    assert not running.done

    # a retry on another worker, announced with its attempt number
    assert store.mark_started(job.id, "w2", T0 + 5, attempt=2)
    retried = store.get(job.id)
    assert (retried.worker, retried.started_at, retried.attempts) == ("w2", T0 + 5, 2)
    # the same attempt announced twice (scheduler and worker) counts once
    assert store.mark_started(job.id, "w2", T0 + 5)
    assert store.get(job.id).attempts == 2


def test_mark_started_ignores_done_and_unknown_jobs(store: JobStore):
    finished = new_job(store)
    store.mark_started(finished.id, "w1", T0)
    store.record([Outcome(finished.id, ok=True, body=b"r")])
    cancelled = new_job(store)
    store.cancel(cancelled.id)

    assert store.mark_started(finished.id, "w2", T0 + 9) is False
    after = store.get(finished.id)
    assert (after.status, after.worker, after.attempts) == (FINISHED, "w1", 1)
    assert store.mark_started(cancelled.id, "w2", T0) is False
    after = store.get(cancelled.id)
    assert (after.status, after.worker, after.attempts) == (CANCELLED, None, 0)
    assert store.mark_started("f" * 32, "w2", T0) is False


def test_record_finished_outcome(store: JobStore):
    job = new_job(store)
    store.mark_started(job.id, "w1", T0)
    assert store.record([Outcome(job.id, ok=True, body=b"the result")]) == [job.id]
    done = store.get(job.id)
    assert done.status == FINISHED
    assert done.done
    assert done.worker == "w1"  # kept when the outcome names no worker
    assert done.started_at == T0
    assert done.finished_at is not None and done.finished_at >= T0
    assert done.result_size == len(b"the result")
    assert done.error is None and done.exception is None
    assert store.open_result(job.id).read() == b"the result"
    assert files(store.tmp_dir) == []


def test_record_without_mark_started_counts_one_attempt(store: JobStore):
    job = new_job(store)
    outcome = Outcome(job.id, ok=True, worker="w9", started_at=T0, finished_at=T0 + 2, body=b"")
    assert store.record([outcome]) == [job.id]
    done = store.get(job.id)
    assert (done.status, done.worker, done.attempts) == (FINISHED, "w9", 1)
    assert (done.started_at, done.finished_at) == (T0, T0 + 2)
    assert done.result_size == 0
    assert store.open_result(job.id).read() == b""


def test_record_accepts_memoryview_bodies_from_envelopes(store: JobStore):
    job = new_job(store)
    envelope = unpack(pack(Envelope(True, "w1", T0, T0 + 1, None, b"\x00\n\xffbody")))
    outcome = Outcome(
        job.id,
        ok=envelope.ok,
        worker=envelope.worker,
        started_at=envelope.started,
        finished_at=envelope.finished,
        error=envelope.error,
        body=envelope.body,
    )
    assert store.record([outcome]) == [job.id]
    assert store.open_result(job.id).read() == b"\x00\n\xffbody"
    assert store.get(job.id).result_size == len(b"\x00\n\xffbody")


def test_record_failed_outcome_stores_error_and_exception(store: JobStore):
    job = new_job(store)
    store.mark_started(job.id, "w1", T0)
    error = {
        "type": "ZeroDivisionError",
        "qualified_type": "ZeroDivisionError",
        "message": "division by zero — ünïcode",
        "traceback": "Traceback (most recent call last):\n  ...\n",
    }
    exception = b"\x80\x04pickled exception\x00"
    assert store.record([Outcome(job.id, ok=False, error=error, body=exception)]) == [job.id]
    failed = store.get(job.id)
    assert failed.status == FAILED
    assert failed.done
    assert failed.error == error
    assert failed.exception == exception
    assert failed.result_size is None
    assert not store.result_path(job.id).exists()


def test_record_failed_outcome_without_exception_bytes(store: JobStore):
    job = new_job(store)
    error = {"type": "WorkerDied", "message": "killed", "traceback": ""}
    store.record([Outcome(job.id, ok=False, error=error)])
    failed = store.get(job.id)
    assert failed.status == FAILED
    assert failed.error == error
    assert failed.exception is None


def test_second_record_of_same_job_is_dropped(store: JobStore):
    job = new_job(store)
    assert store.record([Outcome(job.id, ok=True, body=b"first")]) == [job.id]
    first = store.get(job.id)

    assert store.record([Outcome(job.id, ok=True, body=b"second!")]) == []
    assert store.record([Outcome(job.id, ok=False, error={"type": "E"}, body=b"x")]) == []

    after = store.get(job.id)
    assert after == first
    assert after.status == FINISHED
    assert after.error is None
    # the result recorded first is still there and unchanged
    assert store.open_result(job.id).read() == b"first"
    assert after.result_size == len(b"first")
    assert files(store.tmp_dir) == []


def test_duplicate_outcomes_in_one_batch_record_the_first(store: JobStore):
    job = new_job(store)
    recorded = store.record(
        [Outcome(job.id, ok=True, body=b"first"), Outcome(job.id, ok=True, body=b"second!")]
    )
    assert recorded == [job.id]
    done = store.get(job.id)
    assert done.result_size == len(b"first")
    # the stored file must be the result that was recorded (size and bytes agree)
    assert store.open_result(job.id).read() == b"first"


def test_a_result_staged_ahead_is_recorded_from_its_file(store: JobStore):
    job = new_job(store)
    outcome = Outcome(job.id, ok=True, body=memoryview(b"staged result"))
    store.stage_result(outcome)
    assert outcome.result_file is not None and outcome.result_file.parent == store.tmp_dir
    assert outcome.body == b"" and outcome.size == len(b"staged result")  # memory let go
    assert store.record([outcome]) == [job.id]
    assert store.get(job.id).result_size == len(b"staged result")
    assert store.open_result(job.id).read() == b"staged result"
    assert files(store.tmp_dir) == []


def test_staged_results_that_are_not_recorded_are_removed(store: JobStore):
    job, gone = new_job(store), new_job(store)
    assert store.delete(gone.id)
    outcomes = [Outcome(job_id, ok=True, body=b"x" * 10) for job_id in (job.id, job.id, gone.id)]
    for outcome in outcomes:
        store.stage_result(outcome)
    assert len(files(store.tmp_dir)) == 3
    assert store.record(outcomes) == [job.id]
    assert files(store.tmp_dir) == []
    assert files(store.result_dir) == [job.id]


def test_second_failure_of_same_job_is_dropped(store: JobStore):
    job = new_job(store)
    store.record([Outcome(job.id, ok=False, error={"type": "A"}, body=b"a")])
    assert store.record([Outcome(job.id, ok=False, error={"type": "B"}, body=b"b")]) == []
    assert store.record([Outcome(job.id, ok=True, body=b"late result")]) == []
    failed = store.get(job.id)
    assert (failed.status, failed.error, failed.exception) == (FAILED, {"type": "A"}, b"a")
    assert not store.result_path(job.id).exists()
    assert files(store.tmp_dir) == []


def test_outcome_for_cancelled_job_is_dropped_and_its_result_removed(store: JobStore):
    job = new_job(store)
    store.mark_started(job.id, "w1", T0)
    assert store.cancel(job.id)
    assert store.record([Outcome(job.id, ok=True, body=b"too late")]) == []
    after = store.get(job.id)
    assert after.status == CANCELLED
    assert after.result_size is None
    assert not store.result_path(job.id).exists()
    assert files(store.result_dir) == []
    assert files(store.tmp_dir) == []

    assert store.record([Outcome(job.id, ok=False, error={"type": "E"}, body=b"e")]) == []
    after = store.get(job.id)
    assert (after.status, after.error, after.exception) == (CANCELLED, None, None)


def test_outcome_for_deleted_job_is_dropped(store: JobStore):
    job = new_job(store)
    assert store.delete(job.id)
    assert store.record([Outcome(job.id, ok=True, body=b"orphan")]) == []
    assert store.get(job.id) is None
    assert files(store.result_dir) == []
    assert files(store.tmp_dir) == []


def test_record_batch_records_only_active_jobs(store: JobStore):
    ok_job, failed_job, cancelled_job = (new_job(store) for _ in range(3))
    store.cancel(cancelled_job.id)
    recorded = store.record(
        [
            Outcome(ok_job.id, ok=True, body=b"ok"),
            Outcome(failed_job.id, ok=False, error={"type": "E"}, body=b""),
            Outcome(cancelled_job.id, ok=True, body=b"ignored"),
        ]
    )
    assert recorded == [ok_job.id, failed_job.id]
    assert store.get(ok_job.id).status == FINISHED
    assert store.get(failed_job.id).status == FAILED
    assert store.get(cancelled_job.id).status == CANCELLED
    assert files(store.result_dir) == [ok_job.id]


def test_record_empty_batch(store: JobStore):
    assert store.record([]) == []
    assert store.record(iter(())) == []


def test_record_accepts_a_generator(store: JobStore):
    jobs = [new_job(store) for _ in range(3)]
    recorded = store.record(Outcome(job.id, ok=True, body=job.id.encode()) for job in jobs)
    assert recorded == [job.id for job in jobs]
    for job in jobs:
        assert store.open_result(job.id).read() == job.id.encode()


def test_cancel_only_affects_active_jobs(store: JobStore):
    queued = new_job(store)
    running = new_job(store)
    finished = new_job(store)
    failed = new_job(store)
    store.mark_started(running.id, "w1", T0)
    store.record([Outcome(finished.id, ok=True, body=b"r")])
    store.record([Outcome(failed.id, ok=False, error={"type": "E"})])
    before_finished = store.get(finished.id)
    before_failed = store.get(failed.id)

    assert store.cancel(queued.id) is True
    assert store.cancel(running.id) is True
    for job_id in (queued.id, running.id):
        cancelled = store.get(job_id)
        assert cancelled.status == CANCELLED
        assert cancelled.done
        assert cancelled.finished_at is not None

    assert store.cancel(finished.id) is False
    assert store.cancel(failed.id) is False
    assert store.cancel(queued.id) is False  # already cancelled
    assert store.cancel("e" * 32) is False
    assert store.get(finished.id) == before_finished
    assert store.get(failed.id) == before_failed
    assert store.open_result(finished.id).read() == b"r"


def test_delete_removes_row_and_files(store: JobStore):
    job = new_job(store)
    other = new_job(store)
    store.record([Outcome(job.id, ok=True, body=b"result")])
    assert store.payload_path(job.id).exists()
    assert store.result_path(job.id).exists()

    assert store.delete(job.id) is True
    assert store.get(job.id) is None
    assert not store.payload_path(job.id).exists()
    assert not store.result_path(job.id).exists()
    assert [j.id for j in store.list()] == [other.id]
    assert store.delete(job.id) is False
    # the other job is untouched
    assert store.read_payload(other.id) == b"payload"


def test_delete_frees_the_idempotency_key(store: JobStore):
    job = new_job(store, idempotency_key="k")
    store.delete(job.id)
    assert store.find_by_key("alice", "k") is None
    again, created = submit(store, idempotency_key="k")
    assert created
    assert again.id != job.id


# -- durability ---------------------------------------------------------------------


def test_records_survive_reopening_the_store(tmp_path: Path):
    save = tmp_path / "save"
    store = JobStore(save)
    queued = new_job(store, name="queued", idempotency_key="k")
    running = new_job(store, name="running")
    finished = new_job(store, name="finished")
    failed = new_job(store, name="failed")
    store.mark_started(running.id, "w1", T0)
    store.mark_started(finished.id, "w1", T0)
    store.record(
        [
            Outcome(finished.id, ok=True, finished_at=T0 + 1, body=b"value"),
            Outcome(failed.id, ok=False, error={"type": "E", "message": "m"}, body=b"exc"),
        ]
    )
    before = {job.id: job for job in store.list()}
    store.close()

    reopened = JobStore(save)
    try:
        after = {job.id: job for job in reopened.list()}
        assert after == before
        assert [job.id for job in reopened.active()] == [queued.id, running.id]
        assert reopened.read_payload(queued.id) == b"payload"
        assert reopened.open_result(finished.id).read() == b"value"
        assert reopened.get(failed.id).exception == b"exc"
        assert reopened.get(failed.id).error == {"type": "E", "message": "m"}
        assert reopened.find_by_key("alice", "k").id == queued.id
        # the idempotency key still deduplicates after the restart
        again, created = submit(reopened, idempotency_key="k")
        assert (again.id, created) == (queued.id, False)
        # new jobs sort after the old ones
        newer = new_job(reopened)
        assert newer.seq > max(job.seq for job in before.values())
    finally:
        reopened.close()


def test_sequence_numbers_are_never_reused(tmp_path: Path):
    store = JobStore(tmp_path / "save", durable=False)
    try:
        first = new_job(store)
        last = new_job(store)
        store.delete(last.id)
        store.close()
        store = JobStore(tmp_path / "save", durable=False)
        newer = new_job(store)
        assert newer.seq > last.seq > first.seq
        # a client paging with before_seq=last.seq never sees the newer job
        assert [job.id for job in store.list(before_seq=last.seq)] == [first.id]
    finally:
        store.close()


def test_leftover_tmp_result_is_never_served(tmp_path: Path):
    save = tmp_path / "save"
    store = JobStore(save)
    job = new_job(store)
    store.mark_started(job.id, "w1", T0)
    # a crash in the middle of writing the result leaves only a temporary file
    (store.tmp_dir / f"{job.id}.result").write_bytes(b"half a res")
    assert not store.result_path(job.id).exists()
    assert store.get(job.id).status == RUNNING
    store.close()

    reopened = JobStore(save)
    try:
        assert reopened.repair()["tmp_files"] == 1
        assert not (reopened.tmp_dir / f"{job.id}.result").exists()
        assert not reopened.result_path(job.id).exists()
        current = reopened.get(job.id)
        assert current.status == RUNNING
        assert current.result_size is None
        assert [j.id for j in reopened.active()] == [job.id]
        # the re-run's result replaces the leftover completely
        assert reopened.record([Outcome(job.id, ok=True, body=b"full result")]) == [job.id]
        assert reopened.open_result(job.id).read() == b"full result"
        assert not (reopened.tmp_dir / f"{job.id}.result").exists()
    finally:
        reopened.close()


def test_non_durable_store_works_the_same(tmp_path: Path):
    store = JobStore(tmp_path / "save", durable=False)
    try:
        job = new_job(store)
        assert store.record([Outcome(job.id, ok=True, body=b"r")]) == [job.id]
        assert store.open_result(job.id).read() == b"r"
    finally:
        store.close()


def test_store_is_usable_from_several_threads(store: JobStore):
    created: list[str] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(5):
                created.append(new_job(store).id)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            store.close()  # closes this thread's connection only

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(created) == 20
    listed = store.list(limit=100)
    assert sorted(job.id for job in listed) == sorted(created)
    assert len({job.seq for job in listed}) == 20


def test_close_twice_and_reuse_after_close(store: JobStore):
    job = new_job(store)
    store.close()
    store.close()
    # a closed store opens a new connection on next use
    assert store.get(job.id).id == job.id


def test_repair_fails_jobs_whose_files_are_gone_and_removes_orphans(store: JobStore):
    queued = new_job(store)
    lost_payload = new_job(store)
    finished = new_job(store)
    lost_result = new_job(store)
    assert store.record(
        [Outcome(finished.id, ok=True, body=b"kept"), Outcome(lost_result.id, ok=True, body=b"x")]
    ) == [finished.id, lost_result.id]
    store.payload_path(lost_payload.id).unlink()
    store.result_path(lost_result.id).unlink()
    orphan = store.result_dir / ("a" * 32)
    orphan.write_bytes(b"belongs to no job")
    (store.tmp_dir / "half.result").write_bytes(b"half")

    counts = store.repair()

    assert counts == {"tmp_files": 1, "payload_lost": 1, "result_lost": 1, "orphan_files": 1}
    assert store.get(queued.id).status == QUEUED
    assert store.get(finished.id).status == FINISHED
    assert store.open_result(finished.id).read() == b"kept"
    gone = store.get(lost_payload.id)
    assert gone.status == FAILED and gone.error["type"] == "PayloadLost"
    missing = store.get(lost_result.id)
    assert missing.status == FAILED and missing.error["type"] == "ResultLost"
    assert not orphan.exists() and not list(store.tmp_dir.iterdir())
    assert store.repair() == {
        "tmp_files": 0,
        "payload_lost": 0,
        "result_lost": 0,
        "orphan_files": 0,
    }


def test_expire_removes_old_results_only(store: JobStore):
    old, recent, running = new_job(store), new_job(store), new_job(store)
    store.record([Outcome(old.id, ok=True, body=b"o", finished_at=T0)])
    store.record([Outcome(recent.id, ok=True, body=b"r", finished_at=T0 + 100)])
    assert store.expire(finished_before=T0 + 50) == [old.id]
    assert store.get(old.id).status == EXPIRED and store.get(old.id).done
    assert not store.result_path(old.id).exists() and not store.payload_path(old.id).exists()
    assert store.get(recent.id).status == FINISHED and store.result_path(recent.id).exists()
    assert store.get(running.id).status == QUEUED


# -- small payloads and results in the rows -------------------------------------------


def test_small_payload_and_result_live_in_the_row(inline_store: JobStore):
    body = b"p" * INLINE_LIMIT
    job = new_job(inline_store, body=body)
    assert inline_store.read_payload(job.id) == body
    assert files(inline_store.payload_dir) == [] and files(inline_store.tmp_dir) == []
    result = b"r" * INLINE_LIMIT
    assert inline_store.record([Outcome(job.id, ok=True, body=result)]) == [job.id]
    assert inline_store.open_result(job.id).read() == result
    assert inline_store.get(job.id).result_size == INLINE_LIMIT
    assert files(inline_store.result_dir) == []
    assert inline_store.get_with_result(job.id) == (inline_store.get(job.id), result)


def test_get_with_result_has_no_bytes_for_a_result_file_or_an_unfinished_job(
    inline_store: JobStore,
):
    queued = new_job(inline_store)
    assert inline_store.get_with_result(queued.id) == (queued, None)
    assert inline_store.get_with_result("0" * 32) is None
    assert inline_store.get_with_result("not an id") is None
    large = new_job(inline_store)
    inline_store.record([Outcome(large.id, ok=True, body=b"r" * (INLINE_LIMIT + 1))])
    job, result = inline_store.get_with_result(large.id)
    assert job.result_size == INLINE_LIMIT + 1 and result is None


def test_one_byte_over_the_limit_goes_to_files(inline_store: JobStore):
    body = b"p" * (INLINE_LIMIT + 1)
    staged = inline_store.stage_payload(io.BytesIO(body), max_bytes=1 << 20)
    assert not staged.inline and staged.path.read_bytes() == body
    job, _ = inline_store.create(JobSpec(tenant="alice"), staged)
    assert files(inline_store.payload_dir) == [job.id]
    assert inline_store.read_payload(job.id) == body
    result = b"r" * (INLINE_LIMIT + 1)
    inline_store.record([Outcome(job.id, ok=True, body=result)])
    assert files(inline_store.result_dir) == [job.id]
    assert inline_store.open_result(job.id).read() == result


def test_a_body_arriving_in_pieces_is_kept_whole(inline_store: JobStore):
    class Trickle(io.RawIOBase):
        """Hands out at most 1000 bytes per read, like a slow socket."""

        def __init__(self, data: bytes) -> None:
            self.data = io.BytesIO(data)

        def read(self, size: int = -1) -> bytes:
            return self.data.read(min(1000, size if size >= 0 else 1000))

    for size in (10, INLINE_LIMIT, INLINE_LIMIT + 1, 3 * INLINE_LIMIT + 7):
        body = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
        staged = inline_store.stage_payload(Trickle(body), max_bytes=1 << 20)
        assert staged.size == size and staged.inline == (size <= INLINE_LIMIT)
        job, _ = inline_store.create(JobSpec(tenant="alice"), staged)
        assert inline_store.read_payload(job.id) == body


def test_inline_results_survive_reopening_and_repair(tmp_path: Path):
    save = tmp_path / "save"
    store = JobStore(save)
    queued = new_job(store)
    finished = new_job(store)
    store.record([Outcome(finished.id, ok=True, body=b"value")])
    store.close()
    reopened = JobStore(save)
    try:
        counts = reopened.repair()
        assert counts["payload_lost"] == 0 and counts["result_lost"] == 0
        assert reopened.read_payload(queued.id) == b"payload"
        assert reopened.open_result(finished.id).read() == b"value"
        assert reopened.get(finished.id).status == FINISHED
    finally:
        reopened.close()


def test_expiry_and_delete_drop_inline_bytes(inline_store: JobStore):
    old = new_job(inline_store)
    inline_store.record([Outcome(old.id, ok=True, finished_at=T0, body=b"old")])
    assert inline_store.expire(finished_before=T0 + 1) == [old.id]
    with pytest.raises(FileNotFoundError):
        inline_store.open_result(old.id)
    with pytest.raises(FileNotFoundError):
        inline_store.read_payload(old.id)
    gone = new_job(inline_store)
    inline_store.record([Outcome(gone.id, ok=True, body=b"r")])
    assert inline_store.delete(gone.id)
    with pytest.raises(FileNotFoundError):
        inline_store.open_result(gone.id)


def test_create_many_stores_a_batch_in_its_rows_under_numbered_keys(inline_store: JobStore):
    spec = JobSpec(tenant="alice", name="sweep", retries=2, idempotency_key="b")
    jobs, created = inline_store.create_many(spec, [b"one", b"two", b"three"])
    assert created
    assert [inline_store.read_payload(job.id) for job in jobs] == [b"one", b"two", b"three"]
    assert [job.idempotency_key for job in jobs] == ["b#0", "b#1", "b#2"]
    assert [inline_store.get(job.id) for job in jobs] == jobs  # as they were stored
    assert files(inline_store.payload_dir) == []
    # The same key again (a retried request) creates nothing and returns the batch.
    again, created = inline_store.create_many(spec, [b"one", b"two", b"three"])
    assert not created and [job.id for job in again] == [job.id for job in jobs]
    assert inline_store.find_batch("bob", "b", 3) == []
    assert inline_store.admission("alice", None) == (None, 3)


def test_create_many_refuses_a_payload_too_large_for_a_row(inline_store: JobStore):
    with pytest.raises(ValueError, match="over"):
        inline_store.create_many(JobSpec(tenant="alice"), [b"x" * (INLINE_LIMIT + 1)])
    assert inline_store.admission("alice", None) == (None, 0)


def test_tenants_finds_the_existing_jobs_among_many_ids(inline_store: JobStore, monkeypatch):
    monkeypatch.setattr(reads, "_IDS_PER_QUERY", 2)  # several queries
    jobs = [new_job(inline_store) for _ in range(5)]
    asked = [job.id for job in jobs] + ["f" * 32, "not-an-id", jobs[0].id]
    assert inline_store.tenants(asked) == {job.id: job.tenant for job in jobs}
    assert inline_store.tenants([]) == {}


def test_done_with_results_reads_only_done_jobs_with_their_row_results(
    inline_store: JobStore, monkeypatch
):
    monkeypatch.setattr(reads, "_IDS_PER_QUERY", 2)
    queued, finished, failed, large = (new_job(inline_store) for _ in range(4))
    inline_store.record(
        [
            Outcome(finished.id, ok=True, body=b"small"),
            Outcome(failed.id, ok=False, error={"type": "ValueError", "message": "no"}),
            Outcome(large.id, ok=True, body=b"x" * (INLINE_LIMIT + 1)),
        ]
    )
    done = {
        job.id: (job.status, result)
        for job, result in inline_store.done_with_results(
            [queued.id, finished.id, failed.id, large.id, "f" * 32]
        )
    }
    assert done == {
        finished.id: (FINISHED, b"small"),
        failed.id: (FAILED, None),
        large.id: (FINISHED, None),  # in a file: open_result reads it
    }
    assert inline_store.open_result(large.id).read() == b"x" * (INLINE_LIMIT + 1)


def test_the_recorder_writes_before_queued_requests(store: JobStore):
    """A thread that writes first (the recorder) waits for at most the one request
    transaction ahead of it, not for every request thread queued for the write lock."""
    jobs = [new_job(store) for _ in range(21)]
    done: list[str] = []

    def request(job_id: str) -> None:
        store.cancel(job_id)
        done.append("request")

    def recorder() -> None:
        store.writes_first_on_this_thread()
        store.mark_started(jobs[-1].id, "w1", T0)
        done.append("recorder")

    requests = [threading.Thread(target=request, args=(job.id,)) for job in jobs[:-1]]
    lock = store.db.write_lock
    with lock.hold():  # a transaction in progress
        for thread in requests:
            thread.start()
        wait_until(lambda: lock.waiting() == (0, len(requests)), "requests not queued", every=0.001)
        first = threading.Thread(target=recorder)
        first.start()
        wait_until(lambda: lock.waiting() == (1, len(requests)), "recorder not queued", every=0.001)
    for thread in [*requests, first]:
        thread.join(timeout=10)
    assert len(done) == 21
    assert done[0] == "recorder", done
