"""The dashboard's reads of the job store: a page of the jobs list (keyset paginated,
filtered), jobs finished per second, which job ran on which worker when, recent
failures and counts. Every query takes ``tenant`` (None: every tenant's jobs).

Only the light columns are read (never payloads, results, logs or pickled
exceptions), and every list is bounded.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from typing import Any

from gateway.store import FAILED, RUNNING, STATUSES

LIST_COLUMNS = (
    "seq, id, tenant, name, status, kind, ranks, created_at, started_at, finished_at,"
    " worker, attempts, payload_size, result_size"
)
PAGE_SIZE = 50  # jobs per page of the list
WINDOW = 15 * 60.0  # seconds of the throughput chart
TIMELINE_WINDOW = 5 * 60.0  # seconds of the allocation timeline
TIMELINE_LIMIT = 600  # jobs drawn on it, at most (the latest)
FAILURES = 10  # recent failures on the overview


@dataclass(frozen=True)
class JobFilter:
    """What the jobs list shows: each field None (or False) shows every job."""

    status: str | None = None
    kind: str | None = None
    name: str | None = None
    worker: str | None = None
    since: float | None = None  # created at or after (epoch seconds)
    until: float | None = None  # created before
    gang: bool = False  # only jobs of several ranks

    def clauses(
        self, tenant: str | None, *, tenant_index: bool = True
    ) -> tuple[list[str], list[Any]]:
        """The WHERE clauses and their parameters. ``tenant_index=False`` keeps SQLite
        from using the tenant's index (``+tenant``), for queries of a time window that
        its ``finished_at`` index serves better."""
        where: list[str] = []
        params: list[Any] = []
        for column, value in (
            ("tenant" if tenant_index else "+tenant", tenant),
            ("status", self.status),
            ("kind", self.kind),
            ("name", self.name),
            ("worker", self.worker),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if self.since is not None:
            where.append("created_at >= ?")
            params.append(self.since)
        if self.until is not None:
            where.append("created_at < ?")
            params.append(self.until)
        if self.gang:
            where.append("ranks > 1")
        return where, params


@dataclass
class JobPage:
    """One page of the list, newest first, and the cursors around it (a job's ``seq``)."""

    jobs: list[dict[str, Any]] = field(default_factory=list)
    newer: int | None = None  # the page before: jobs after this seq
    older: int | None = None  # the page after: jobs before this seq


def jobs_page(
    db: sqlite3.Connection,
    tenant: str | None,
    wanted: JobFilter,
    *,
    before: int | None = None,
    after: int | None = None,
    limit: int = PAGE_SIZE,
) -> JobPage:
    """A page of jobs matching ``wanted``: the newest, or those just older than
    ``before``, or just newer than ``after`` (keyset pagination: no OFFSET)."""
    where, params = wanted.clauses(tenant)
    if after is not None:
        where.append("seq > ?")
        params.append(after)
        order = "ASC"
    else:
        if before is not None:
            where.append("seq < ?")
            params.append(before)
        order = "DESC"
    text = f"WHERE {' AND '.join(where)}" if where else ""
    rows = db.execute(
        f"SELECT {LIST_COLUMNS} FROM jobs {text} ORDER BY seq {order} LIMIT ?",
        (*params, limit + 1),
    ).fetchall()
    more = len(rows) > limit
    jobs = [dict(row) for row in rows[:limit]]
    if order == "ASC":
        jobs.reverse()
    page = JobPage(jobs)
    if jobs:
        newest, oldest = jobs[0]["seq"], jobs[-1]["seq"]
        if after is not None:
            page.newer = newest if more else None
            page.older = oldest
        else:
            page.newer = newest if before is not None else None
            page.older = oldest if more else None
    return page


def find_ids(db: sqlite3.Connection, tenant: str | None, prefix: str, limit: int = 2) -> list[str]:
    """Ids of the jobs whose id starts with ``prefix`` (lower-case hex), at most ``limit``."""
    where, params = JobFilter().clauses(tenant)
    where += ["id >= ?", "id < ?"]
    params += [prefix, prefix + "g"]  # 'g' sorts after every hex digit
    rows = db.execute(
        f"SELECT id FROM jobs WHERE {' AND '.join(where)} LIMIT ?", (*params, limit)
    ).fetchall()
    return [row[0] for row in rows]


def counts(db: sqlite3.Connection, tenant: str | None) -> dict[str, int]:
    """How many jobs are in each status (every status present, 0 if none)."""
    where, params = JobFilter().clauses(tenant)
    text = f"WHERE {' AND '.join(where)}" if where else ""
    found = dict(db.execute(f"SELECT status, COUNT(*) FROM jobs {text} GROUP BY status", params))
    return {status: found.get(status, 0) for status in STATUSES}


def throughput(
    db: sqlite3.Connection, tenant: str | None, now: float, window: float = WINDOW
) -> list[int]:
    """Jobs that ended (finished, failed or were cancelled) in each second of the last
    ``window`` seconds, oldest first. For the admin, read from the ``finished_at`` index
    alone."""
    start = int(now) - int(window) + 1
    where, params = JobFilter().clauses(tenant, tenant_index=False)
    where.append("finished_at >= ?")
    params.append(start)
    rows = db.execute(
        f"SELECT CAST(finished_at AS INTEGER), COUNT(*) FROM jobs WHERE {' AND '.join(where)}"
        " GROUP BY 1",
        params,
    )
    per_second = [0] * int(window)
    for second, count in rows:
        if start <= second < start + len(per_second):
            per_second[second - start] += count
    return per_second


def allocations(
    db: sqlite3.Connection, tenant: str | None, now: float, window: float = TIMELINE_WINDOW
) -> list[dict[str, Any]]:
    """The jobs that ran on a worker in the last ``window`` seconds: the running ones,
    then those that ended, latest first, at most :data:`TIMELINE_LIMIT` in all. Each
    has ``worker``, ``id`` (its first 12 characters), ``name`` (its first 40),
    ``status``, ``start``, ``end`` (None: still running)."""
    where, params = JobFilter().clauses(tenant, tenant_index=False)
    also = "".join(f" AND {clause}" for clause in where)
    columns = (
        "substr(id, 1, 12), substr(name, 1, 40), status, worker, round(started_at, 2),"
        " round(finished_at, 2)"
    )
    running = db.execute(
        f"SELECT {columns} FROM jobs WHERE status = ? AND worker IS NOT NULL{also}"
        " ORDER BY seq DESC LIMIT ?",
        (RUNNING, *params, TIMELINE_LIMIT),
    ).fetchall()
    ended = db.execute(
        f"SELECT {columns} FROM jobs WHERE finished_at >= ?{also}"
        " AND started_at IS NOT NULL AND worker IS NOT NULL"
        " ORDER BY finished_at DESC LIMIT ?",
        (now - window, *params, TIMELINE_LIMIT - len(running)),
    ).fetchall()
    return [
        {
            "id": job_id,
            "name": name,
            "status": status,
            "worker": worker,
            "start": started,
            "end": None if status == RUNNING else finished,
        }
        for job_id, name, status, worker, started, finished in [*running, *ended]
    ]


def recent_failures(
    db: sqlite3.Connection, tenant: str | None, limit: int = FAILURES
) -> list[dict[str, Any]]:
    """The last ``limit`` failed jobs, newest first (with their error's type and
    message)."""
    where, params = JobFilter(status=FAILED).clauses(tenant)
    rows = db.execute(
        f"SELECT id, name, kind, finished_at, worker, json_extract(error, '$.type'),"
        f" json_extract(error, '$.message') FROM jobs WHERE {' AND '.join(where)}"
        " ORDER BY seq DESC LIMIT ?",
        (*params, limit),
    )
    return [
        {
            "id": job_id,
            "name": name,
            "kind": kind,
            "finished_at": finished,
            "worker": worker,
            "error": error_type,
            "message": (message or "")[:300],
        }
        for job_id, name, kind, finished, worker, error_type, message in rows
    ]
