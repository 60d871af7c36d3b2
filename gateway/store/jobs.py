"""JobStore, the one object the gateway holds: job records in SQLite plus payload and
result files, created durably, moved through their statuses, expired and deleted.

The store is the source of truth. A job's payload is durable before the client is
told the job exists. The queries are in :mod:`gateway.store.reads`, where the bytes
go in :mod:`gateway.store.blobs`, the connections in :mod:`gateway.store.db`.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import IO

from gateway.store.artifacts import Artifacts
from gateway.store.blobs import Blobs, StagedPayload, require_in_rows
from gateway.store.bundles import Bundles
from gateway.store.db import Database
from gateway.store.deployments import Deployments
from gateway.store.models import (
    ACTIVE,
    CANCELLED,
    EXPIRED,
    FAILED,
    FINISHED,
    QUEUED,
    RUNNING,
    TERMINAL,
    Job,
    JobSpec,
    Outcome,
    batch_keys,
)
from gateway.store.reads import JobReads
from gateway.store.repair import repair_after_crash


class JobStore(JobReads):
    """Job records in ``save_dir/jobs.sqlite3`` plus payload/result files under
    ``save_dir``; ``durable`` makes every write wait for the disk.

    Usable from any thread: each thread has its own SQLite connection.
    """

    def __init__(self, save_dir: str | os.PathLike[str], *, durable: bool = True) -> None:
        self.save_dir = Path(save_dir)
        self.durable = durable
        blobs = Blobs(self.save_dir, durable=durable)
        self.payload_dir = blobs.payload_dir
        self.result_dir = blobs.result_dir
        self.tmp_dir = blobs.tmp_dir
        self.bundles = Bundles(self.save_dir, blobs.tmp_dir, durable=durable)
        self.db_path = self.save_dir / "jobs.sqlite3"
        super().__init__(Database(self.db_path, durable=durable), blobs)
        self.artifacts = Artifacts(self.save_dir, blobs.tmp_dir, durable=durable)
        self.deployments = Deployments(self.db)

    # -- connections (see Database) -------------------------------------------------------

    def lazy_commits_on_this_thread(self) -> None:
        """See :meth:`Database.lazy_commits_on_this_thread` (for the recorder)."""
        self.db.lazy_commits_on_this_thread()

    def writes_first_on_this_thread(self) -> None:
        """See :meth:`Database.writes_first_on_this_thread` (for the recorder)."""
        self.db.writes_first_on_this_thread()

    def close(self) -> None:
        """Close this thread's connection (the next use opens a new one)."""
        self.db.close()

    # -- files (see Blobs) ------------------------------------------------------------------

    def payload_path(self, job_id: str) -> Path:
        """Where the job's payload file is (ValueError if ``job_id`` is not a job id)."""
        return self.blobs.payload_path(job_id)

    def result_path(self, job_id: str) -> Path:
        """Where the job's result file is (ValueError if ``job_id`` is not a job id)."""
        return self.blobs.result_path(job_id)

    def stage_payload(
        self, stream: IO[bytes], max_bytes: int, length: int | None = None
    ) -> StagedPayload:
        """Read a request body ahead of :meth:`create`; see :meth:`Blobs.stage_payload`."""
        return self.blobs.stage_payload(stream, max_bytes, length)

    def discard(self, staged: StagedPayload) -> None:
        """Drop a staged body that will not become a job."""
        self.blobs.discard(staged)

    def stage_result(self, outcome: Outcome) -> None:
        """Write a large result body to a fsynced temporary file, ahead of :meth:`record`.

        Called on the thread that received the result, so that the thread recording
        everyone's outcomes is not held up by one large result's write. The body's
        memory is let go; ``record`` moves the file into place (or removes it).
        """
        self.blobs.stage_result(outcome)

    # -- submission ---------------------------------------------------------------------

    def create(
        self,
        spec: JobSpec,
        staged: StagedPayload,
        also: Callable[[sqlite3.Connection], None] | None = None,
    ) -> tuple[Job, bool]:
        """Turn a staged payload into a queued job, durably.

        Returns ``(job, True)``; or ``(existing job, False)`` when the tenant already
        submitted a job with the same idempotency key (the staged payload is dropped).
        ``also`` writes more rows in the same transaction (a model job's deployment).
        """
        self.blobs.keep_payload(staged)
        created_at = time.time()
        inline = staged.data if staged.inline else None
        try:
            with self.db.transaction() as db:
                seq = _insert(db, staged.job_id, spec, staged.size, inline, created_at)
                if also is not None:
                    also(db)
        except sqlite3.IntegrityError:
            self.blobs.payload_path(staged.job_id).unlink(missing_ok=True)
            existing = self.find_by_key(spec.tenant, spec.idempotency_key)
            if existing is None:
                raise
            return existing, False
        # The row is exactly what was just inserted: build it rather than read it back
        # (INSERT ... RETURNING was measured at ~50 us more CPU per job than this).
        return Job.queued(spec, staged.job_id, seq, created_at, staged.size), True

    def create_many(self, spec: JobSpec, payloads: list[bytes]) -> tuple[list[Job], bool]:
        """Queue one job per payload (each at most ``INLINE_LIMIT`` bytes, stored in its
        row), all in one durable transaction.

        With an idempotency key K in ``spec``, job i gets the key ``K#i``. Returns
        ``(jobs, True)``; or ``(the jobs created earlier with K, False)``.
        """
        require_in_rows(payloads)
        keys = batch_keys(spec.idempotency_key, len(payloads))
        created_at = time.time()
        jobs = []
        try:
            with self.db.transaction() as db:
                for payload, key in zip(payloads, keys, strict=True):
                    job_id, item = uuid.uuid4().hex, replace(spec, idempotency_key=key)
                    seq = _insert(db, job_id, item, len(payload), payload, created_at)
                    jobs.append(Job.queued(item, job_id, seq, created_at, len(payload)))
        except sqlite3.IntegrityError:
            existing = self.find_batch(spec.tenant, spec.idempotency_key, len(payloads))
            if not existing:
                raise
            return existing, False
        return jobs, True

    # -- state changes ------------------------------------------------------------------

    def mark_started(
        self, job_id: str, worker: str, started_at: float, attempt: int | None = None
    ) -> bool:
        """A worker began attempt ``attempt`` (1 if unknown). False if the job is not active."""
        with self.db.transaction() as db:
            cursor = db.execute(
                "UPDATE jobs SET status = ?, worker = ?, started_at = ?,"
                " attempts = MAX(attempts, ?) WHERE id = ? AND status IN (?, ?)",
                (RUNNING, worker, started_at, attempt or 1, job_id, *ACTIVE),
            )
        return cursor.rowcount == 1

    def requeue(self, job_id: str) -> bool:
        """Queue an active job again for one more attempt (an SPMD job whose ranks all
        start again): no worker, not started, its attempts counted. False if it is no
        longer active."""
        with self.db.transaction() as db:
            cursor = db.execute(
                "UPDATE jobs SET status = ?, worker = NULL, started_at = NULL,"
                " attempts = MAX(attempts, 1) + 1 WHERE id = ? AND status IN (?, ?)",
                (QUEUED, job_id, *ACTIVE),
            )
        return cursor.rowcount == 1

    def record(self, outcomes: Iterable[Outcome]) -> list[str]:
        """Record finished/failed outcomes in one transaction; returns the ids recorded.

        Each result is recorded exactly once: an outcome for a job that is no longer
        active (cancelled, deleted, already recorded, or repeated in this batch) is
        dropped and never touches a stored result. Result bodies are written to
        temporary files first and renamed into place under the write lock, just before
        the commit that makes them visible.
        """
        pending: dict[str, Outcome] = {}
        try:
            for outcome in outcomes:
                if outcome.job_id in pending:
                    self.blobs.drop_staged(outcome)
                    continue
                pending[outcome.job_id] = outcome
                self.blobs.stage_result(outcome)
            recorded: list[str] = []
            with self.db.transaction() as db:
                active = {row["id"] for row in self._rows_by_id(pending, "id", ACTIVE)}
                for job_id in (job_id for job_id in pending if job_id in active):
                    outcome = pending[job_id]
                    self.blobs.keep_result(outcome)
                    _update(db, outcome)
                    recorded.append(job_id)
                if any(pending[job_id].result_file for job_id in recorded):
                    self.blobs.sync_results()
            return recorded
        finally:
            for outcome in pending.values():
                self.blobs.drop_staged(outcome)

    def cancel(self, job_id: str) -> bool:
        """Mark an active job cancelled. Returns False if it was not active."""
        with self.db.transaction() as db:
            cursor = db.execute(
                "UPDATE jobs SET status = ?, finished_at = ? WHERE id = ? AND status IN (?, ?)",
                (CANCELLED, time.time(), job_id, *ACTIVE),
            )
        return cursor.rowcount == 1

    def expire(self, finished_before: float) -> list[str]:
        """Mark done jobs that finished before the cutoff ``expired`` and delete their files."""
        with self.db.transaction() as db:
            rows = db.execute(
                "SELECT id FROM jobs WHERE status IN (?, ?, ?) AND finished_at < ?",
                (*TERMINAL, finished_before),
            ).fetchall()
            ids = [row[0] for row in rows]
            db.executemany(
                "UPDATE jobs SET status = ?, exception = NULL, logs = NULL, payload = NULL,"
                " result = NULL WHERE id = ?",
                [(EXPIRED, job_id) for job_id in ids],
            )
        for job_id in ids:
            self.blobs.remove(job_id)
        return ids

    def delete(self, job_id: str) -> bool:
        """Delete a job record with its payload and result files (and a model call's
        row saying which deployment it belongs to)."""
        with self.db.transaction() as db:
            cursor = db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
            Deployments.forget_call(db, job_id)
        self.blobs.remove(job_id)
        return cursor.rowcount == 1

    def repair(self) -> dict[str, int]:
        """Start-up check: make records and files agree after a crash (see
        :func:`~gateway.store.repair.repair_after_crash`)."""
        return repair_after_crash(self.db, self.blobs, self.record)


def _insert(
    db: sqlite3.Connection,
    job_id: str,
    spec: JobSpec,
    size: int,
    inline: bytes | memoryview | None,
    created_at: float,
) -> int:
    """Insert one queued job's row (in the caller's transaction); returns its ``seq``."""
    cursor = db.execute(
        "INSERT INTO jobs (id, tenant, name, status, created_at, timeout, retries,"
        " python_version, dill_version, payload_size, idempotency_key, payload, kind, ranks)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (
            job_id,
            spec.tenant,
            spec.name,
            QUEUED,
            created_at,
            spec.timeout,
            spec.retries,
            spec.python_version,
            spec.dill_version,
            size,
            spec.idempotency_key,
            inline,
            spec.kind,
            spec.ranks,
        ),
    )
    assert cursor.lastrowid is not None
    return cursor.lastrowid


def _update(db: sqlite3.Connection, outcome: Outcome) -> None:
    """Write an outcome into its job's row (in the caller's transaction)."""
    result: bytes | None = None
    size: int | None = None
    exception: bytes | None = None
    status, error = (FINISHED, None) if outcome.ok else (FAILED, json.dumps(outcome.error))
    if outcome.ok or outcome.result_body:
        size = outcome.size
        if outcome.result_file is None:
            result = bytes(outcome.body)
    else:
        exception = bytes(outcome.body) or None
    db.execute(
        "UPDATE jobs SET status = ?, worker = COALESCE(?, worker),"
        " started_at = COALESCE(?, started_at), finished_at = ?,"
        " attempts = MAX(attempts, 1), result_size = ?, result = ?, error = ?, exception = ?,"
        " logs = ? WHERE id = ?",
        (
            status,
            outcome.worker,
            outcome.started_at,
            outcome.finished_at or time.time(),
            size,
            result,
            error,
            exception,
            bytes(outcome.logs) or None,
            outcome.job_id,
        ),
    )
