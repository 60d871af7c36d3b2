"""The store's queries: jobs by id, by idempotency key, by status; payload and result bytes.

Every read that answers a request takes ``tenant``: a tenant's name shows only that
tenant's jobs, and another tenant's job reads exactly as a missing one; None shows
every tenant's (for the admin, and for the gateway's own callers).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from typing import IO, Any

from gateway.store.blobs import Blobs
from gateway.store.db import Database
from gateway.store.models import (
    ACTIVE,
    DONE,
    FINISHED,
    JOB_ID,
    RUNNING,
    STATUSES,
    Job,
    batch_keys,
)

# Every column but the (possibly large) captured output and bytes, read on their own.
JOB_COLUMNS = (
    "seq, id, tenant, name, status, created_at, started_at, finished_at, worker, attempts,"
    " timeout, retries, python_version, dill_version, payload_size, result_size, error,"
    " exception, idempotency_key, kind, ranks"
)
_IDS_PER_QUERY = 500  # ids in one IN (...) list


class JobReads:
    """The queries of :class:`~gateway.store.jobs.JobStore` (which adds the writes)."""

    def __init__(self, db: Database, blobs: Blobs) -> None:
        self.db = db
        self.blobs = blobs

    # -- one job ----------------------------------------------------------------------

    def get(self, job_id: str, *, tenant: str | None = None) -> Job | None:
        """The job, or None if there is none (for ``tenant``: none of its own)."""
        row = self._row(job_id, JOB_COLUMNS, tenant)
        return job_from(dict(row)) if row else None

    def get_with_result(
        self, job_id: str, *, tenant: str | None = None
    ) -> tuple[Job, bytes | None] | None:
        """The job and its result bytes if they are in its row, in one query.

        For answering a just-finished job: one SELECT instead of ``get`` followed by
        ``open_result``. None as :meth:`get`.
        """
        row = self._row(job_id, f"{JOB_COLUMNS}, result", tenant)
        return _with_result(row) if row else None

    def logs(self, job_id: str, *, tenant: str | None = None) -> bytes | None:
        """The captured stdout + stderr of a done job (empty while it runs); None as
        :meth:`get`."""
        row = self._row(job_id, "logs", tenant)
        if row is None:
            return None
        return bytes(row[0]) if row[0] else b""

    def read_payload(self, job_id: str) -> bytes | memoryview:
        """The job's payload: bytes from its row, or a read-only memory map of its file."""
        return self.blobs.payload(job_id, self._bytes("payload", job_id))

    def open_result(self, job_id: str) -> IO[bytes]:
        """The finished job's result bytes as a file; FileNotFoundError if there are none."""
        return self.blobs.result(job_id, self._bytes("result", job_id))

    # -- many jobs by id --------------------------------------------------------------

    def tenants(self, job_ids: Iterable[str], *, tenant: str | None = None) -> dict[str, str]:
        """The tenant of each job among ``job_ids`` that exists (for ``tenant``: that
        is its own), by job id."""
        rows = self._rows_by_id(job_ids, "id, tenant", tenant=tenant)
        return {row["id"]: row["tenant"] for row in rows}

    def done_with_results(
        self, job_ids: Iterable[str], *, tenant: str | None = None
    ) -> list[tuple[Job, bytes | None]]:
        """The done jobs among ``job_ids`` (for ``tenant``: its own), each with its
        result bytes when they are in its row (as :meth:`get_with_result`)."""
        rows = self._rows_by_id(job_ids, f"{JOB_COLUMNS}, result", DONE, tenant)
        return [_with_result(row) for row in rows]

    # -- lists ------------------------------------------------------------------------

    def list(
        self,
        *,
        tenant: str | None = None,
        status: str | None = None,
        limit: int = 50,
        before_seq: int | None = None,
    ) -> list[Job]:
        """Jobs newest first (for ``tenant``: its own); ``before_seq`` continues a
        previous page."""
        clauses, params = _tenant_clause(tenant)
        if status is not None:
            clauses.append("status = ?")
            params.append(status)
        if before_seq is not None:
            clauses.append("seq < ?")
            params.append(before_seq)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self.db.connection().execute(
            f"SELECT {JOB_COLUMNS} FROM jobs {where} ORDER BY seq DESC LIMIT ?", (*params, limit)
        )
        return [job_from(dict(row)) for row in rows]

    def active(self) -> list[Job]:
        """Queued and running jobs, oldest first (what a restart must resubmit)."""
        rows = self.db.connection().execute(
            f"SELECT {JOB_COLUMNS} FROM jobs WHERE status IN (?, ?) ORDER BY seq", ACTIVE
        )
        return [job_from(dict(row)) for row in rows]

    # -- idempotency keys (each tenant has its own) -------------------------------------

    def find_by_key(self, tenant: str, key: str | None) -> Job | None:
        """The tenant's job submitted with idempotency key ``key``, if any."""
        if key is None:
            return None
        row = (
            self.db.connection()
            .execute(
                f"SELECT {JOB_COLUMNS} FROM jobs WHERE tenant = ? AND idempotency_key = ?",
                (tenant, key),
            )
            .fetchone()
        )
        return job_from(dict(row)) if row else None

    def find_batch(self, tenant: str, key: str | None, count: int) -> list[Job]:
        """The tenant's jobs of a batch submitted with idempotency key ``key``, in order."""
        if key is None:
            return []
        keys = batch_keys(key, count)
        marks = ",".join("?" * len(keys))
        rows = self.db.connection().execute(
            f"SELECT {JOB_COLUMNS} FROM jobs WHERE tenant = ? AND idempotency_key IN ({marks})"
            " ORDER BY seq",
            (tenant, *keys),
        )
        return [job_from(dict(row)) for row in rows]

    def admission(self, tenant: str, key: str | None) -> tuple[Job | None, int]:
        """For a new submission, in one query: the tenant's job already submitted with
        idempotency key ``key`` (if any), and how many queued or running jobs it has."""
        db = self.db.connection()
        seq, active = db.execute(
            "SELECT (SELECT seq FROM jobs WHERE tenant = ? AND idempotency_key = ?),"
            " (SELECT COUNT(*) FROM jobs WHERE tenant = ? AND status IN (?, ?))",
            (tenant, key, tenant, *ACTIVE),
        ).fetchone()
        if seq is None:
            return None, active
        row = db.execute(f"SELECT {JOB_COLUMNS} FROM jobs WHERE seq = ?", (seq,)).fetchone()
        return job_from(dict(row)), active

    # -- counts -----------------------------------------------------------------------

    def count_by_status(self) -> dict[str, int]:
        """How many jobs are in each status."""
        rows = self.db.connection().execute("SELECT status, COUNT(*) FROM jobs GROUP BY status")
        return {status: count for status, count in rows}

    def worker_stats(self) -> dict[str, dict[str, Any]]:
        """Per worker address: jobs finished, and the job it is running (``current_job``,
        with its ``tenant``), if any."""
        stats: dict[str, dict[str, Any]] = {}
        db = self.db.connection()
        # "+status": read the covering (worker, status) index, not the status index and
        # every finished job's row (32 ms at 100,000 jobs, against 7).
        for row in db.execute(
            "SELECT worker, COUNT(*) FROM jobs WHERE +status = ? AND worker IS NOT NULL"
            " GROUP BY worker",
            (FINISHED,),
        ):
            stats.setdefault(row[0], {"completed": 0, "current_job": None})["completed"] = row[1]
        for row in db.execute(
            "SELECT worker, id, tenant FROM jobs WHERE status = ? AND worker IS NOT NULL",
            (RUNNING,),
        ):
            entry = stats.setdefault(row[0], {"completed": 0, "current_job": None})
            entry["current_job"], entry["tenant"] = row[1], row[2]
        return stats

    # -- helpers ------------------------------------------------------------------------

    def _row(self, job_id: str, columns: str, tenant: str | None) -> sqlite3.Row | None:
        """The job's ``columns``, if it exists (and is ``tenant``'s)."""
        if not JOB_ID.match(job_id):
            return None
        clauses, params = _tenant_clause(tenant)
        where = " AND ".join(["id = ?", *clauses])
        return (
            self.db.connection()
            .execute(f"SELECT {columns} FROM jobs WHERE {where}", (job_id, *params))
            .fetchone()
        )

    def _rows_by_id(
        self,
        job_ids: Iterable[str],
        columns: str,
        statuses: tuple[str, ...] = STATUSES,
        tenant: str | None = None,
    ) -> Iterator[sqlite3.Row]:
        """The rows of the jobs among ``job_ids`` in one of ``statuses`` (and
        ``tenant``'s), a query per ``_IDS_PER_QUERY`` ids."""
        ids = [job_id for job_id in dict.fromkeys(job_ids) if JOB_ID.match(job_id)]
        in_status = ",".join("?" * len(statuses))
        clauses, params = _tenant_clause(tenant)
        also = "".join(f" AND {clause}" for clause in clauses)
        for start in range(0, len(ids), _IDS_PER_QUERY):
            part = ids[start : start + _IDS_PER_QUERY]
            yield from self.db.connection().execute(
                f"SELECT {columns} FROM jobs WHERE id IN ({','.join('?' * len(part))}) "
                f"AND status IN ({in_status}){also}",
                (*part, *statuses, *params),
            )

    def _bytes(self, column: str, job_id: str) -> bytes | None:
        """The ``payload`` or ``result`` bytes in the job's row, if there are any."""
        row = (
            self.db.connection()
            .execute(f"SELECT {column} FROM jobs WHERE id = ?", (job_id,))
            .fetchone()
        )
        return None if row is None or row[0] is None else bytes(row[0])


def job_from(values: dict[str, Any]) -> Job:
    """The job of a row's ``JOB_COLUMNS`` (its error still JSON text)."""
    values["error"] = json.loads(values["error"]) if values["error"] else None
    return Job(**values)


def _with_result(row: sqlite3.Row) -> tuple[Job, bytes | None]:
    """The job of a row of ``JOB_COLUMNS`` plus ``result`` (a BLOB: bytes, or None)."""
    values = dict(row)
    result = values.pop("result")
    return job_from(values), result


def _tenant_clause(tenant: str | None) -> tuple[list[str], list[Any]]:
    """The WHERE clause (and its parameter) that keeps a query to ``tenant``'s jobs;
    none for None (every tenant's)."""
    return (["tenant = ?"], [tenant]) if tenant is not None else ([], [])
