"""The jobs table in SQLite: its schema, one connection per thread, and write
transactions that take turns through the store's :class:`WriteLock`."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from gateway.store.writelock import WriteLock

SCHEMA = """
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
    result         BLOB,
    kind           TEXT NOT NULL DEFAULT 'function',
    ranks          INTEGER
);
CREATE UNIQUE INDEX IF NOT EXISTS jobs_idempotency ON jobs (tenant, idempotency_key);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status, seq);
CREATE INDEX IF NOT EXISTS jobs_worker ON jobs (worker, status);
CREATE INDEX IF NOT EXISTS jobs_tenant ON jobs (tenant, status);
CREATE INDEX IF NOT EXISTS jobs_finished ON jobs (finished_at);
CREATE INDEX IF NOT EXISTS jobs_tenant_seq ON jobs (tenant, seq);
"""

# Columns that databases made by earlier versions lack, with their types.
_ADDED_COLUMNS = {
    "idempotency_key": "TEXT",
    "logs": "BLOB",
    "payload": "BLOB",
    "result": "BLOB",
    "kind": "TEXT NOT NULL DEFAULT 'function'",
    "ranks": "INTEGER",
}


class Database:
    """The SQLite database (WAL) at ``path``: a connection per thread, opened on first use.

    ``durable`` commits wait for the disk (``synchronous=FULL``); otherwise for the WAL
    only (``NORMAL``: a process crash loses nothing, an OS crash the last commits).
    """

    def __init__(self, path: str | os.PathLike[str], *, durable: bool = True) -> None:
        self.path = path
        self.durable = durable
        self._local = threading.local()
        # Writers of this process queue here rather than in SQLite's busy handler,
        # which sleeps (1, 2, 5, 10... ms) between tries: under many concurrent
        # requests that sleeping, not the disk, would set the pace.
        self.write_lock = WriteLock()
        self.connection().executescript(SCHEMA)
        self._migrate()

    def connection(self) -> sqlite3.Connection:
        """This thread's connection (autocommit: reads see the latest commit)."""
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={'FULL' if self.durable else 'NORMAL'}")
            self._local.db = db
        return db

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction on this thread's connection, under the write lock:
        committed when the block ends, rolled back if it raises."""
        db = self.connection()
        with self.write_lock.hold(first=getattr(self._local, "writes_first", False)):
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def lazy_commits_on_this_thread(self) -> None:
        """Commit this thread's updates without waiting for the disk (WAL, synchronous=NORMAL).

        For the recorder's status and outcome updates: a process crash loses nothing,
        and after an OS crash or power loss at worst a just-finished job runs again.
        Job creation keeps full durability (it happens on request threads).
        """
        self.connection().execute("PRAGMA synchronous=NORMAL")

    def writes_first_on_this_thread(self) -> None:
        """Let this thread's transactions go before those of waiting request threads.

        For the recorder: every outcome it records wakes a waiting caller and lets the
        scheduler drop the job's task (see :class:`WriteLock`).
        """
        self._local.writes_first = True

    def close(self) -> None:
        """Close this thread's connection (the next use opens a new one)."""
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    def _migrate(self) -> None:
        """Add the columns that databases made by earlier versions lack."""
        db = self.connection()
        present = {row[1] for row in db.execute("PRAGMA table_info(jobs)")}
        for column, kind in _ADDED_COLUMNS.items():
            if column not in present:
                db.execute(f"ALTER TABLE jobs ADD COLUMN {column} {kind}")
