"""Durable job store: SQLite (WAL) for job records, files for large payloads and results.

The store is the source of truth. A job's payload is durable before the client is
told the job exists. Payloads and results up to ``INLINE_LIMIT`` bytes live in the
job's row, committed with it in one transaction; larger ones are files, written to a
temporary name, fsynced and renamed, so a crash never leaves half a file behind.
"""

from __future__ import annotations

import io
import json
import mmap
import os
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from gateway.writelock import WriteLock
from wire.errors import error_info
from wire.limits import INLINE_LIMIT

QUEUED, RUNNING, FINISHED, FAILED, CANCELLED, EXPIRED = (
    "queued",
    "running",
    "finished",
    "failed",
    "cancelled",
    "expired",
)
STATUSES = (QUEUED, RUNNING, FINISHED, FAILED, CANCELLED, EXPIRED)
ACTIVE = (QUEUED, RUNNING)
TERMINAL = (FINISHED, FAILED, CANCELLED)  # done, result (or error) still kept
DONE = (*TERMINAL, EXPIRED)

# Every column but the (possibly large) captured output, which has its own query.
_JOB_COLUMNS = (
    "seq, id, tenant, name, status, created_at, started_at, finished_at, worker, attempts,"
    " timeout, retries, python_version, dill_version, payload_size, result_size, error,"
    " exception, idempotency_key"
)
JOB_ID = re.compile(r"[0-9a-f]{32}\Z")
_IDS_PER_QUERY = 500  # ids in one IN (...) list
_CHUNK = 1 << 20
IN_MEMORY_PAYLOAD = 1 << 20
# Payloads and results up to this size are stored in the job's row instead of a file:
# one commit instead of file + directory fsyncs, which is most of a small job's cost.

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    id             TEXT NOT NULL UNIQUE,
    tenant         TEXT NOT NULL,
    name           TEXT,
    status         TEXT NOT NULL,
    created_at     REAL NOT NULL,
    started_at     REAL,
    finished_at    REAL,
    worker         TEXT,
    attempts       INTEGER NOT NULL DEFAULT 0,
    timeout        REAL,
    retries        INTEGER NOT NULL DEFAULT 0,
    python_version TEXT,
    dill_version   TEXT,
    payload_size   INTEGER NOT NULL,
    result_size    INTEGER,
    error          TEXT,
    exception      BLOB,
    idempotency_key TEXT,
    logs           BLOB,
    payload        BLOB,
    result         BLOB
);
CREATE UNIQUE INDEX IF NOT EXISTS jobs_idempotency ON jobs (tenant, idempotency_key);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status, seq);
CREATE INDEX IF NOT EXISTS jobs_worker ON jobs (worker, status);
CREATE INDEX IF NOT EXISTS jobs_tenant ON jobs (tenant, status);
"""


class PayloadTooLarge(Exception):
    """The request body exceeded the configured maximum."""


class IncompleteBody(Exception):
    """The request body ended before its Content-Length (the client went away)."""


@dataclass
class JobSpec:
    """What a client asked for when it submitted a job."""

    tenant: str
    name: str | None = None
    timeout: float | None = None
    retries: int = 0
    python_version: str | None = None
    dill_version: str | None = None
    idempotency_key: str | None = None


@dataclass
class Job:
    """One job record."""

    id: str
    seq: int
    tenant: str
    name: str | None
    status: str
    created_at: float
    started_at: float | None
    finished_at: float | None
    worker: str | None
    attempts: int
    timeout: float | None
    retries: int
    python_version: str | None
    dill_version: str | None
    payload_size: int
    result_size: int | None
    error: dict[str, Any] | None
    exception: bytes | None = field(default=None, repr=False)
    idempotency_key: str | None = field(default=None, repr=False)

    @property
    def done(self) -> bool:
        return self.status in DONE

    def to_json(self) -> dict[str, Any]:
        """The public JSON view of the job (no payload, no pickled exception)."""
        data: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "status": self.status,
            "created_at": _iso(self.created_at),
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "duration": (
                round(self.finished_at - self.started_at, 6)
                if self.finished_at and self.started_at
                else None
            ),
            "worker": self.worker,
            "attempts": self.attempts,
            "timeout": self.timeout,
            "retries": self.retries,
            "python_version": self.python_version,
            "dill_version": self.dill_version,
            "payload_size": self.payload_size,
            "result_size": self.result_size,
        }
        if self.error is not None:
            data["error"] = self.error
        return data


@dataclass
class Outcome:
    """What a worker reported for one job, ready to be recorded."""

    job_id: str
    ok: bool
    worker: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    error: dict[str, Any] | None = None
    body: bytes | memoryview = b""
    logs: bytes | memoryview = b""
    # Set by JobStore.stage_result: the body, already in a fsynced temporary file.
    result_file: Path | None = None
    result_size: int = 0

    @property
    def size(self) -> int:
        """Bytes of the result or exception body."""
        return self.result_size if self.result_file is not None else len(self.body)


@dataclass
class StagedPayload:
    """A request body received but not yet a job.

    A body up to ``INLINE_LIMIT`` bytes is only in ``data`` (``path`` is None) and is
    stored in the job's row; a larger one is in a temporary file at ``path``. Bodies up
    to ``IN_MEMORY_PAYLOAD`` bytes are kept in ``data`` either way, so they are checked
    and submitted without reading the file back.
    """

    job_id: str
    path: Path | None
    size: int
    data: bytes | None = None

    @property
    def inline(self) -> bool:
        return self.path is None

    def view(self) -> bytes | memoryview:
        """The body: ``data``, or a read-only memory map of the file (no copy)."""
        if self.data is not None:
            return self.data
        assert self.path is not None
        return _map_file(self.path)


class JobStore:
    """Job records in SQLite plus payload/result files under ``save_dir``."""

    def __init__(self, save_dir: str | os.PathLike[str], *, durable: bool = True) -> None:
        self.save_dir = Path(save_dir)
        self.durable = durable
        self.payload_dir = self.save_dir / "payloads"
        self.result_dir = self.save_dir / "results"
        self.tmp_dir = self.save_dir / "tmp"
        for directory in (self.payload_dir, self.result_dir, self.tmp_dir):
            directory.mkdir(parents=True, exist_ok=True)
        self.db_path = self.save_dir / "jobs.sqlite3"
        self._local = threading.local()
        # Writers of this process queue here rather than in SQLite's busy handler,
        # which sleeps (1, 2, 5, 10... ms) between tries: under many concurrent
        # requests that sleeping, not the disk, would set the pace.
        self._write_lock = WriteLock()
        self._db().executescript(_SCHEMA)
        self._migrate()

    # -- connections --------------------------------------------------------------

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.db_path, timeout=30, isolation_level=None)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={'FULL' if self.durable else 'NORMAL'}")
            self._local.db = db
        return db

    def lazy_commits_on_this_thread(self) -> None:
        """Commit this thread's updates without waiting for the disk (WAL, synchronous=NORMAL).

        For the recorder's status and outcome updates: a process crash loses nothing,
        and after an OS crash or power loss at worst a just-finished job runs again.
        Job creation keeps full durability (it happens on request threads).
        """
        self._db().execute("PRAGMA synchronous=NORMAL")

    def writes_first_on_this_thread(self) -> None:
        """Let this thread's transactions go before those of waiting request threads.

        For the recorder: every outcome it records wakes a waiting caller and lets the
        scheduler drop the job's task (see :class:`WriteLock`).
        """
        self._local.writes_first = True

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        db = self._db()
        with self._write_lock.hold(first=getattr(self._local, "writes_first", False)):
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def _migrate(self) -> None:
        """Add columns that databases made by earlier versions lack."""
        db = self._db()
        present = {row[1] for row in db.execute("PRAGMA table_info(jobs)")}
        added = {"idempotency_key": "TEXT", "logs": "BLOB", "payload": "BLOB", "result": "BLOB"}
        for column, kind in added.items():
            if column not in present:
                db.execute(f"ALTER TABLE jobs ADD COLUMN {column} {kind}")

    # -- paths --------------------------------------------------------------------

    def payload_path(self, job_id: str) -> Path:
        return self.payload_dir / _checked(job_id)

    def result_path(self, job_id: str) -> Path:
        return self.result_dir / _checked(job_id)

    # -- submission ---------------------------------------------------------------

    def stage_payload(
        self, stream: IO[bytes], max_bytes: int, length: int | None = None
    ) -> StagedPayload:
        """Read a request body; raise if it is too large (or shorter than ``length``).

        With ``length`` (the Content-Length) no more than that is read, so ``stream``
        may be the server's raw input. A body over ``INLINE_LIMIT`` bytes goes to a
        temporary file as it arrives (made durable by ``create``); a smaller one stays
        in memory until ``create`` stores it in its row.
        """
        job_id = uuid.uuid4().hex
        path = self.tmp_dir / f"{job_id}.payload"
        size = 0
        head: list[bytes] = []  # the body so far, while it is small enough to keep
        out: IO[bytes] | None = None
        try:
            while length is None or size < length:
                chunk = stream.read(_CHUNK if length is None else min(_CHUNK, length - size))
                if not chunk:
                    if length is not None:
                        raise IncompleteBody(f"the body ended after {size} of {length} bytes")
                    break
                size += len(chunk)
                if size > max_bytes:
                    raise PayloadTooLarge(max_bytes)
                if out is None and size > INLINE_LIMIT:
                    out = open(path, "wb")  # noqa: SIM115 - closed below
                    out.writelines(head)  # what came before this chunk
                if out is not None:
                    out.write(chunk)
                if size <= IN_MEMORY_PAYLOAD:
                    head.append(chunk)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        finally:
            if out is not None:
                out.close()
        data = b"".join(head) if size <= IN_MEMORY_PAYLOAD else None
        return StagedPayload(job_id, path if out is not None else None, size, data)

    def discard(self, staged: StagedPayload) -> None:
        if staged.path is not None:
            staged.path.unlink(missing_ok=True)

    def create(self, spec: JobSpec, staged: StagedPayload) -> tuple[Job, bool]:
        """Turn a staged payload into a queued job, durably.

        Returns ``(job, True)``; or ``(existing job, False)`` when the tenant already
        submitted a job with the same idempotency key (the staged payload is dropped).
        """
        if staged.path is not None:
            with open(staged.path, "rb") as written:
                self._sync(written)
            os.replace(staged.path, self.payload_path(staged.job_id))
            self._sync_dir(self.payload_dir)
        try:
            seq, created_at = self._insert(spec, staged)
        except sqlite3.IntegrityError:
            self.payload_path(staged.job_id).unlink(missing_ok=True)
            existing = self.find_by_key(spec.tenant, spec.idempotency_key)
            if existing is None:
                raise
            return existing, False
        # The row is exactly what was just inserted: build it rather than read it back
        # (INSERT ... RETURNING was measured at ~50 us more CPU per job than this).
        return _new_job(spec, staged.job_id, seq, created_at, staged.size), True

    def create_many(self, spec: JobSpec, payloads: list[bytes]) -> tuple[list[Job], bool]:
        """Queue one job per payload (each at most ``INLINE_LIMIT`` bytes, stored in its
        row), all in one durable transaction.

        With an idempotency key K in ``spec``, job i gets the key ``K#i``. Returns
        ``(jobs, True)``; or ``(the jobs created earlier with K, False)``.
        """
        if any(len(payload) > INLINE_LIMIT for payload in payloads):
            raise ValueError(f"a batched payload is over {INLINE_LIMIT} bytes")
        keys = batch_keys(spec.idempotency_key, len(payloads))
        created_at = time.time()
        jobs = []
        try:
            with self._transaction() as db:
                for payload, key in zip(payloads, keys, strict=True):
                    job_id, item = uuid.uuid4().hex, replace(spec, idempotency_key=key)
                    seq = self._insert_row(db, job_id, item, len(payload), payload, created_at)
                    jobs.append(_new_job(item, job_id, seq, created_at, len(payload)))
        except sqlite3.IntegrityError:
            existing = self.find_batch(spec.tenant, spec.idempotency_key, len(payloads))
            if not existing:
                raise
            return existing, False
        return jobs, True

    def find_by_key(self, tenant: str, key: str | None) -> Job | None:
        """The tenant's job submitted with idempotency key ``key``, if any."""
        if key is None:
            return None
        row = (
            self._db()
            .execute(
                f"SELECT {_JOB_COLUMNS} FROM jobs WHERE tenant = ? AND idempotency_key = ?",
                (tenant, key),
            )
            .fetchone()
        )
        return _job(row) if row else None

    def admission(self, tenant: str, key: str | None) -> tuple[Job | None, int]:
        """For a new submission, in one query: the tenant's job already submitted with
        idempotency key ``key`` (if any), and how many queued or running jobs it has."""
        seq, active = (
            self._db()
            .execute(
                "SELECT (SELECT seq FROM jobs WHERE tenant = ? AND idempotency_key = ?),"
                " (SELECT COUNT(*) FROM jobs WHERE tenant = ? AND status IN (?, ?))",
                (tenant, key, tenant, *ACTIVE),
            )
            .fetchone()
        )
        if seq is None:
            return None, active
        row = self._db().execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE seq = ?", (seq,))
        return _job(row.fetchone()), active

    def find_batch(self, tenant: str, key: str | None, count: int) -> list[Job]:
        """The tenant's jobs of a batch submitted with idempotency key ``key``, in order."""
        if key is None:
            return []
        keys = batch_keys(key, count)
        marks = ",".join("?" * len(keys))
        rows = self._db().execute(
            f"SELECT {_JOB_COLUMNS} FROM jobs WHERE tenant = ? AND idempotency_key IN ({marks})"
            " ORDER BY seq",
            (tenant, *keys),
        )
        return [_job(row) for row in rows]

    def _insert(self, spec: JobSpec, staged: StagedPayload) -> tuple[int, float]:
        """Insert the job's row, durably; returns its ``seq`` and ``created_at``."""
        created_at = time.time()
        inline = staged.data if staged.inline else None
        with self._transaction() as db:
            seq = self._insert_row(db, staged.job_id, spec, staged.size, inline, created_at)
        return seq, created_at

    @staticmethod
    def _insert_row(
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
            " python_version, dill_version, payload_size, idempotency_key, payload)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
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
            ),
        )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def read_payload(self, job_id: str) -> bytes | memoryview:
        """The job's payload: bytes from its row, or a read-only memory map of its file.

        The map costs no copy and no memory of the gateway's own: the pages are the
        file's, in the page cache, and sending them to a worker reads them from there.
        """
        inline = self._blob("payload", job_id)
        if inline is not None:
            return inline
        return _map_file(self.payload_path(job_id))

    def open_result(self, job_id: str) -> IO[bytes]:
        """The finished job's result bytes as a file; FileNotFoundError if there are none."""
        inline = self._blob("result", job_id)
        return io.BytesIO(inline) if inline is not None else open(self.result_path(job_id), "rb")

    def _blob(self, column: str, job_id: str) -> bytes | None:
        row = self._db().execute(f"SELECT {column} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None or row[0] is None else bytes(row[0])

    # -- reads --------------------------------------------------------------------

    def get(self, job_id: str) -> Job | None:
        row = self._row(job_id, _JOB_COLUMNS)
        return _job(row) if row else None

    def get_with_result(self, job_id: str) -> tuple[Job, bytes | None] | None:
        """The job and its result bytes if they are in its row, in one query.

        For answering a just-finished job: one SELECT instead of ``get`` followed by
        ``open_result``.
        """
        row = self._row(job_id, f"{_JOB_COLUMNS}, result")
        if row is None:
            return None
        values = dict(row)
        result = values.pop("result")  # a BLOB: bytes, or None
        return _job_from(values), result

    def tenants(self, job_ids: Iterable[str]) -> dict[str, str]:
        """The tenant of each job among ``job_ids`` that exists, by job id."""
        return {row["id"]: row["tenant"] for row in self._rows_by_id(job_ids, "id, tenant")}

    def done_with_results(self, job_ids: Iterable[str]) -> list[tuple[Job, bytes | None]]:
        """The done jobs among ``job_ids``, each with its result bytes when they are in
        its row (as :meth:`get_with_result`)."""
        done = []
        for row in self._rows_by_id(job_ids, f"{_JOB_COLUMNS}, result", DONE):
            values = dict(row)
            result = values.pop("result")  # a BLOB: bytes, or None
            done.append((_job_from(values), result))
        return done

    def _rows_by_id(
        self, job_ids: Iterable[str], columns: str, statuses: tuple[str, ...] = STATUSES
    ) -> Iterator[sqlite3.Row]:
        """The rows of the jobs among ``job_ids`` in one of ``statuses``, a query per
        ``_IDS_PER_QUERY`` ids."""
        ids = [job_id for job_id in dict.fromkeys(job_ids) if JOB_ID.match(job_id)]
        in_status = ",".join("?" * len(statuses))
        for start in range(0, len(ids), _IDS_PER_QUERY):
            part = ids[start : start + _IDS_PER_QUERY]
            yield from self._db().execute(
                f"SELECT {columns} FROM jobs WHERE id IN ({','.join('?' * len(part))}) "
                f"AND status IN ({in_status})",
                (*part, *statuses),
            )

    def _row(self, job_id: str, columns: str) -> sqlite3.Row | None:
        if not JOB_ID.match(job_id):
            return None
        return self._db().execute(f"SELECT {columns} FROM jobs WHERE id = ?", (job_id,)).fetchone()

    def list(
        self,
        *,
        tenant: str | None = None,
        status: str | None = None,
        limit: int = 50,
        before_seq: int | None = None,
    ) -> list[Job]:
        """Jobs newest first; ``before_seq`` continues a previous page."""
        clauses, params = [], []
        if tenant is not None:
            clauses.append("tenant = ?")
            params.append(tenant)
        if status is not None:
            clauses.append("status = ?")
            params.append(status)
        if before_seq is not None:
            clauses.append("seq < ?")
            params.append(before_seq)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._db().execute(
            f"SELECT {_JOB_COLUMNS} FROM jobs {where} ORDER BY seq DESC LIMIT ?", (*params, limit)
        )
        return [_job(row) for row in rows]

    def logs(self, job_id: str) -> bytes:
        """The captured stdout + stderr of a done job (empty while it runs)."""
        row = self._db().execute("SELECT logs FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return bytes(row[0]) if row and row[0] else b""

    def count_by_status(self) -> dict[str, int]:
        """How many jobs are in each status."""
        rows = self._db().execute("SELECT status, COUNT(*) FROM jobs GROUP BY status")
        return {status: count for status, count in rows}

    def active(self) -> list[Job]:
        """Queued and running jobs, oldest first (what a restart must resubmit)."""
        rows = self._db().execute(
            f"SELECT {_JOB_COLUMNS} FROM jobs WHERE status IN (?, ?) ORDER BY seq", ACTIVE
        )
        return [_job(row) for row in rows]

    def worker_stats(self) -> dict[str, dict[str, Any]]:
        """Per worker address: jobs finished and the job it is running, if any."""
        stats: dict[str, dict[str, Any]] = {}
        db = self._db()
        for row in db.execute(
            "SELECT worker, COUNT(*) FROM jobs WHERE status = ? AND worker IS NOT NULL"
            " GROUP BY worker",
            (FINISHED,),
        ):
            stats.setdefault(row[0], {"completed": 0, "current_job": None})["completed"] = row[1]
        for row in db.execute(
            "SELECT worker, id FROM jobs WHERE status = ? AND worker IS NOT NULL", (RUNNING,)
        ):
            stats.setdefault(row[0], {"completed": 0, "current_job": None})["current_job"] = row[1]
        return stats

    # -- state changes ------------------------------------------------------------

    def mark_started(
        self, job_id: str, worker: str, started_at: float, attempt: int | None = None
    ) -> bool:
        """A worker began attempt ``attempt`` (1 if unknown). False if the job is not active."""
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE jobs SET status = ?, worker = ?, started_at = ?,"
                " attempts = MAX(attempts, ?) WHERE id = ? AND status IN (?, ?)",
                (RUNNING, worker, started_at, attempt or 1, job_id, *ACTIVE),
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
                    if outcome.result_file is not None:
                        outcome.result_file.unlink(missing_ok=True)
                    continue
                pending[outcome.job_id] = outcome
                self.stage_result(outcome)
            recorded: list[str] = []
            with self._transaction() as db:
                active = set(self._active_among(db, list(pending)))
                for job_id in (job_id for job_id in pending if job_id in active):
                    outcome = pending[job_id]
                    if outcome.result_file is not None:
                        os.replace(outcome.result_file, self.result_path(job_id))
                    self._update_outcome(db, outcome)
                    recorded.append(job_id)
                if any(pending[job_id].result_file for job_id in recorded):
                    self._sync_dir(self.result_dir)
            return recorded
        finally:
            for outcome in pending.values():
                if outcome.result_file is not None:
                    outcome.result_file.unlink(missing_ok=True)

    def stage_result(self, outcome: Outcome) -> None:
        """Write a large result body to a fsynced temporary file, ahead of ``record``.

        Called on the thread that received the result, so that the thread recording
        everyone's outcomes is not held up by one large result's write. The body's
        memory is let go; ``record`` moves the file into place (or removes it).
        """
        if outcome.result_file is None and outcome.ok and len(outcome.body) > INLINE_LIMIT:
            outcome.result_file = self._write_tmp_result(outcome.job_id, outcome.body)
            outcome.result_size, outcome.body = len(outcome.body), b""

    def _active_among(self, db: sqlite3.Connection, job_ids: list[str]) -> list[str]:
        active: list[str] = []
        for start in range(0, len(job_ids), 500):
            chunk = job_ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = db.execute(
                f"SELECT id FROM jobs WHERE id IN ({marks}) AND status IN (?, ?)", (*chunk, *ACTIVE)
            )
            active += [row[0] for row in rows]
        return active

    def _update_outcome(self, db: sqlite3.Connection, outcome: Outcome) -> None:
        result: bytes | None = None
        if outcome.ok:
            status, error, exception = FINISHED, None, None
            size: int | None = outcome.size
            if outcome.result_file is None:
                result = bytes(outcome.body)
        else:
            status, error, size = FAILED, json.dumps(outcome.error), None
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

    def expire(self, finished_before: float) -> list[str]:
        """Mark done jobs that finished before the cutoff ``expired`` and delete their files."""
        with self._transaction() as db:
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
            self.payload_path(job_id).unlink(missing_ok=True)
            self.result_path(job_id).unlink(missing_ok=True)
        return ids

    def repair(self) -> dict[str, int]:
        """Start-up check: make records and files agree after a crash.

        Drops temporary files, fails active jobs whose payload is gone and finished jobs
        whose result is gone, and deletes payload/result files that belong to no job.
        """
        counts = {"tmp_files": 0, "payload_lost": 0, "result_lost": 0, "orphan_files": 0}
        for leftover in self.tmp_dir.iterdir():
            leftover.unlink(missing_ok=True)
            counts["tmp_files"] += 1
        db = self._db()
        ids = {row[0] for row in db.execute("SELECT id FROM jobs")}
        lost: list[Outcome] = []
        in_files = db.execute(
            "SELECT id FROM jobs WHERE status IN (?, ?) AND payload IS NULL", ACTIVE
        ).fetchall()
        for (job_id,) in in_files:
            if not self.payload_path(job_id).exists():
                lost.append(Outcome(job_id, ok=False, error=_lost("PayloadLost", "payload")))
                counts["payload_lost"] += 1
        self.record(lost)
        finished = db.execute(
            "SELECT id FROM jobs WHERE status = ? AND result IS NULL", (FINISHED,)
        ).fetchall()
        for (job_id,) in finished:
            if not self.result_path(job_id).exists():
                with self._transaction() as tx:
                    tx.execute(
                        "UPDATE jobs SET status = ?, error = ?, result_size = NULL WHERE id = ?",
                        (FAILED, json.dumps(_lost("ResultLost", "result")), job_id),
                    )
                counts["result_lost"] += 1
        for directory in (self.payload_dir, self.result_dir):
            for path in directory.iterdir():
                if path.name not in ids:
                    path.unlink(missing_ok=True)
                    counts["orphan_files"] += 1
        return counts

    def cancel(self, job_id: str) -> bool:
        """Mark an active job cancelled. Returns False if it was not active."""
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE jobs SET status = ?, finished_at = ? WHERE id = ? AND status IN (?, ?)",
                (CANCELLED, time.time(), job_id, *ACTIVE),
            )
        return cursor.rowcount == 1

    def delete(self, job_id: str) -> bool:
        """Delete a job record with its payload and result files."""
        with self._transaction() as db:
            cursor = db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
        self.payload_path(job_id).unlink(missing_ok=True)
        self.result_path(job_id).unlink(missing_ok=True)
        return cursor.rowcount == 1

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    # -- files --------------------------------------------------------------------

    def _write_tmp_result(self, job_id: str, body: bytes | memoryview) -> Path:
        tmp = self.tmp_dir / f"{job_id}.{uuid.uuid4().hex[:8]}.result"
        with open(tmp, "wb") as out:
            out.write(body)
            self._sync(out)
        return tmp

    def _sync(self, handle: IO[bytes]) -> None:
        if self.durable:
            handle.flush()
            os.fsync(handle.fileno())

    def _sync_dir(self, directory: Path) -> None:
        if self.durable:
            fd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def _map_file(path: Path) -> bytes | memoryview:
    """A read-only memory map of a file, as a memoryview (bytes if it is empty)."""
    with open(path, "rb") as file:
        if os.fstat(file.fileno()).st_size == 0:
            return b""
        return memoryview(mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ))


def _checked(job_id: str) -> str:
    if not JOB_ID.match(job_id):
        raise ValueError(f"not a job id: {job_id!r}")
    return job_id


def _lost(kind: str, what: str) -> dict[str, str]:
    return error_info(
        kind,
        f"the job's stored {what} file is missing (found at gateway start-up); "
        "submit the job again",
    )


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    moment = datetime.fromtimestamp(timestamp, tz=timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def batch_keys(key: str | None, count: int) -> list[str | None]:
    """The idempotency keys of a batch's ``count`` jobs: ``key#0``, ``key#1``..."""
    return [None if key is None else f"{key}#{index}" for index in range(count)]


def _new_job(spec: JobSpec, job_id: str, seq: int, created_at: float, size: int) -> Job:
    """The record of a job just inserted from ``spec``."""
    return Job(
        id=job_id,
        seq=seq,
        tenant=spec.tenant,
        name=spec.name,
        status=QUEUED,
        created_at=created_at,
        started_at=None,
        finished_at=None,
        worker=None,
        attempts=0,
        timeout=spec.timeout,
        retries=spec.retries,
        python_version=spec.python_version,
        dill_version=spec.dill_version,
        payload_size=size,
        result_size=None,
        error=None,
        idempotency_key=spec.idempotency_key,
    )


def _job(row: sqlite3.Row) -> Job:
    return _job_from(dict(row))


def _job_from(values: dict[str, Any]) -> Job:
    values["error"] = json.loads(values["error"]) if values["error"] else None
    return Job(**values)
