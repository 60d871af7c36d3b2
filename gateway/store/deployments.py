"""Deployments (model classes deployed once, called many times) and their calls.

A deployment is a row: its tenant, the constructor payload (dill bytes of the class by
value, its arguments and the artifacts it loads: never unpickled here), the SHA-256 of
each artifact, its replica count and whether it is closed. Every method call (and each
replica's first "construct" step) is an ordinary job of kind ``model`` in the jobs table;
``model_calls`` says which deployment and replica each of those jobs belongs to. A
replica's worker is the one that last recorded a call of it.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from typing import Any

from gateway.store.db import Database
from gateway.store.models import ACTIVE, FINISHED, _iso

ACTIVE_DEPLOYMENT, CLOSED = "active", "closed"
COLUMNS = "id, tenant, name, created_at, replicas, artifacts, status, methods"

SCHEMA = """
CREATE TABLE IF NOT EXISTS deployments (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT NOT NULL UNIQUE,
    tenant      TEXT NOT NULL,
    name        TEXT,
    created_at  REAL NOT NULL,
    replicas    INTEGER NOT NULL,
    artifacts   TEXT NOT NULL,
    methods     TEXT NOT NULL DEFAULT '[]',
    constructor BLOB,
    status      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS deployments_tenant ON deployments (tenant, status);
CREATE TABLE IF NOT EXISTS model_calls (
    job_id      TEXT PRIMARY KEY,
    deployment  TEXT NOT NULL,
    replica     INTEGER NOT NULL,
    construct   INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS model_calls_deployment ON model_calls (deployment, replica);
CREATE INDEX IF NOT EXISTS model_calls_construct ON model_calls (deployment) WHERE construct = 1;
"""


@dataclass
class Deployment:
    """One deployment record (the constructor bytes are read separately)."""

    id: str
    tenant: str
    name: str | None
    created_at: float
    replicas: int
    artifacts: list[str]
    status: str
    methods: list[str]

    def to_json(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """The public JSON view (no tenant, no constructor bytes)."""
        return {
            "id": self.id,
            "name": self.name,
            "created_at": _iso(self.created_at),
            "replicas": self.replicas,
            "artifacts": self.artifacts,
            "methods": self.methods,
            "status": self.status,
            **(extra or {}),
        }


class Deployments:
    """The ``deployments`` and ``model_calls`` tables, in the job store's database."""

    def __init__(self, db: Database) -> None:
        self.db = db
        db.connection().executescript(SCHEMA)

    def create(
        self,
        deployment_id: str,
        tenant: str,
        name: str | None,
        replicas: int,
        artifacts: list[str],
        methods: list[str],
        constructor: bytes,
    ) -> Deployment:
        """Store a deployment durably (committed before it is answered)."""
        now = time.time()
        with self.db.transaction() as db:
            db.execute(
                "INSERT INTO deployments (id, tenant, name, created_at, replicas, artifacts,"
                " methods, constructor, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    deployment_id,
                    tenant,
                    name,
                    now,
                    replicas,
                    json.dumps(artifacts),
                    json.dumps(methods),
                    constructor,
                    ACTIVE_DEPLOYMENT,
                ),
            )
        return Deployment(
            deployment_id, tenant, name, now, replicas, artifacts, ACTIVE_DEPLOYMENT, methods
        )

    def get(self, deployment_id: str, tenant: str | None = None) -> Deployment | None:
        """The deployment; None if there is none (or, with ``tenant``, not theirs)."""
        row = (
            self.db.connection()
            .execute(
                f"SELECT {COLUMNS} FROM deployments WHERE id = ?",
                (deployment_id,),
            )
            .fetchone()
        )
        if row is None or (tenant is not None and row["tenant"] != tenant):
            return None
        return _deployment(row)

    def constructor(self, deployment_id: str) -> bytes | None:
        """The stored constructor payload; None once closed."""
        row = (
            self.db.connection()
            .execute("SELECT constructor FROM deployments WHERE id = ?", (deployment_id,))
            .fetchone()
        )
        return None if row is None or row[0] is None else bytes(row[0])

    def list(self, tenant: str | None, include_closed: bool = False) -> list[Deployment]:
        """The tenant's deployments (None: everyone's), newest first."""
        query = f"SELECT {COLUMNS} FROM deployments"
        where, args = [], []
        if tenant is not None:
            where.append("tenant = ?")
            args.append(tenant)
        if not include_closed:
            where.append("status = ?")
            args.append(ACTIVE_DEPLOYMENT)
        if where:
            query += " WHERE " + " AND ".join(where)
        rows = self.db.connection().execute(query + " ORDER BY seq DESC", args).fetchall()
        return [_deployment(row) for row in rows]

    def count_active(self) -> int:
        """How many deployments are not closed (every tenant's)."""
        row = (
            self.db.connection()
            .execute("SELECT COUNT(*) FROM deployments WHERE status = ?", (ACTIVE_DEPLOYMENT,))
            .fetchone()
        )
        return int(row[0])

    def artifacts_in_use(self) -> set[tuple[str, str]]:
        """``(tenant, SHA-256)`` of every artifact an open deployment loads."""
        rows = self.db.connection().execute(
            "SELECT tenant, artifacts FROM deployments WHERE status = ?", (ACTIVE_DEPLOYMENT,)
        )
        return {(tenant, digest) for tenant, listed in rows for digest in json.loads(listed)}

    def close(self, deployment_id: str) -> bool:
        """Mark the deployment closed and drop its constructor; False if it was not active."""
        with self.db.transaction() as db:
            cursor = db.execute(
                "UPDATE deployments SET status = ?, constructor = NULL WHERE id = ? AND status = ?",
                (CLOSED, deployment_id, ACTIVE_DEPLOYMENT),
            )
        return cursor.rowcount > 0

    @staticmethod
    def add_call(
        db: sqlite3.Connection, job_id: str, deployment_id: str, replica: int, construct: bool
    ) -> None:
        """Say which deployment and replica a model job belongs to, in the transaction
        that creates the job (see :meth:`gateway.store.JobStore.create`'s ``also``)."""
        db.execute(
            "INSERT INTO model_calls (job_id, deployment, replica, construct) VALUES (?, ?, ?, ?)",
            (job_id, deployment_id, replica, int(construct)),
        )

    @staticmethod
    def forget_call(db: sqlite3.Connection, job_id: str) -> None:
        """Drop a deleted model job's row, in the transaction that deletes the job; a
        replica's construct job is kept (the deployment's view lists it)."""
        db.execute("DELETE FROM model_calls WHERE job_id = ? AND construct = 0", (job_id,))

    def call_of(self, job_id: str) -> tuple[str, int] | None:
        """``(deployment id, replica)`` of a model job, if it is one."""
        row = (
            self.db.connection()
            .execute("SELECT deployment, replica FROM model_calls WHERE job_id = ?", (job_id,))
            .fetchone()
        )
        return None if row is None else (row[0], int(row[1]))

    def busy(self, deployment_id: str) -> dict[int, int]:
        """Queued or running calls per replica of the deployment."""
        busy: dict[int, int] = {}
        for _, replica in self._active(deployment_id):
            busy[replica] = busy.get(replica, 0) + 1
        return busy

    def active_calls(self, deployment_id: str) -> list[str]:
        """Ids of the deployment's queued or running jobs."""
        return [job_id for job_id, _ in self._active(deployment_id)]

    def _active(self, deployment_id: str) -> list[tuple[str, int]]:
        """``(job id, replica)`` of the deployment's queued or running calls.

        From the jobs' status index outwards (CROSS JOIN keeps SQLite to that order):
        the active jobs are few, while a deployment's calls only grow (through its
        calls, this took 0.2 s per call at 100,000 calls)."""
        marks = ",".join("?" * len(ACTIVE))
        rows = self.db.connection().execute(
            "SELECT j.id, m.replica FROM jobs j CROSS JOIN model_calls m ON m.job_id = j.id"
            f" WHERE j.status IN ({marks}) AND m.deployment = ?",
            (*ACTIVE, deployment_id),
        )
        return [(row[0], int(row[1])) for row in rows]

    def construct_jobs(self, deployment_id: str) -> list[dict[str, Any]]:
        """Each replica's construct job: its id, replica, status and worker (by replica;
        sorted here, so that SQLite reads only the construct rows' partial index)."""
        rows = (
            self.db.connection()
            .execute(
                "SELECT m.job_id, m.replica, j.status, j.worker FROM model_calls m"
                " LEFT JOIN jobs j ON j.id = m.job_id WHERE m.deployment = ? AND m.construct = 1",
                (deployment_id,),
            )
            .fetchall()
        )
        return [
            {"job": row[0], "replica": row[1], "status": row[2], "worker": row[3]}
            for row in sorted(rows, key=lambda row: row[1])
        ]

    def answered_since(self, deployment_id: str, after: dict[int, str]) -> set[int]:
        """The replicas among ``after`` (replica: a job of it) with a finished call
        created after that job."""
        db = self.db.connection()
        answered = set()
        for replica, job_id in after.items():
            found = db.execute(
                "SELECT 1 FROM model_calls m JOIN jobs j ON j.id = m.job_id"
                " WHERE m.deployment = ? AND m.replica = ? AND j.status = ?"
                " AND m.rowid > (SELECT rowid FROM model_calls WHERE job_id = ?) LIMIT 1",
                (deployment_id, replica, FINISHED, job_id),
            ).fetchone()
            if found is not None:
                answered.add(replica)
        return answered

    def replica_workers(self, deployment_id: str, replicas: int) -> dict[int, str]:
        """Each of the ``replicas`` replicas' worker (see :meth:`replica_worker`), for
        those that have one."""
        workers = {n: self.replica_worker(deployment_id, n) for n in range(replicas)}
        return {replica: worker for replica, worker in workers.items() if worker is not None}

    def replica_worker(self, deployment_id: str, replica: int) -> str | None:
        """The replica's worker: the worker of its latest call that has one (its rows
        are walked newest first along the index, so this does not slow down as calls
        add up)."""
        latest = (
            self.db.connection()
            .execute(
                "SELECT j.worker FROM model_calls m JOIN jobs j ON j.id = m.job_id"
                " WHERE m.deployment = ? AND m.replica = ? AND j.worker IS NOT NULL"
                " ORDER BY m.rowid DESC LIMIT 1",
                (deployment_id, replica),
            )
            .fetchone()
        )
        return None if latest is None else latest[0]


def _deployment(row: Any) -> Deployment:
    return Deployment(
        row["id"],
        row["tenant"],
        row["name"],
        row["created_at"],
        row["replicas"],
        json.loads(row["artifacts"]),
        row["status"],
        json.loads(row["methods"]),
    )
