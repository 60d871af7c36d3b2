"""Named tenants and their API tokens, kept in the save dir's SQLite database.

Only a SHA-256 hash of each token is stored; tokens are random and long, so a hash
lookup is enough and a stolen database gives away no usable token.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

# The tenant of the gateway's own token (``--token``): it sees every tenant's jobs.
# No named tenant may take this name.
ADMIN_TENANT = "admin"
TENANT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tenants (
    name       TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    created_at REAL NOT NULL
);
"""


class TokenError(ValueError):
    """A token command was given a bad or unknown tenant name."""


def token_hash(token: str) -> str:
    """What is stored of a token: the hex SHA-256 of it."""
    return hashlib.sha256(token.encode()).hexdigest()


class TokenStore:
    """Create, list, revoke and look up tenant tokens."""

    def __init__(self, db_path: str | Path) -> None:
        self.db_path = Path(db_path)
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self._connect() as db:
            db.executescript(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.db_path, timeout=30)
        db.execute("PRAGMA journal_mode=WAL")
        return db

    def create(self, name: str) -> str:
        """Make a tenant and return its new token (shown once, never stored)."""
        if not TENANT_NAME.match(name) or name == ADMIN_TENANT:
            raise TokenError(
                f"tenant name {name!r} must be 1-64 letters, digits, '_', '.' or '-' "
                f"and not {ADMIN_TENANT!r}"
            )
        token = secrets.token_urlsafe(32)
        try:
            with self._connect() as db:
                db.execute(
                    "INSERT INTO tenants (name, token_hash, created_at) VALUES (?, ?, ?)",
                    (name, token_hash(token), time.time()),
                )
        except sqlite3.IntegrityError:
            raise TokenError(f"tenant {name!r} exists; revoke it first") from None
        return token

    def list(self) -> list[dict[str, Any]]:
        with self._connect() as db:
            rows = db.execute("SELECT name, created_at FROM tenants ORDER BY name").fetchall()
        return [{"name": name, "created_at": created} for name, created in rows]

    def revoke(self, name: str) -> None:
        with self._connect() as db:
            if db.execute("DELETE FROM tenants WHERE name = ?", (name,)).rowcount == 0:
                raise TokenError(f"no tenant named {name!r}")

    def tenant_for(self, token: str) -> str | None:
        """The tenant a token belongs to, or None."""
        db = self._reader()
        row = db.execute(
            "SELECT name FROM tenants WHERE token_hash = ?", (token_hash(token),)
        ).fetchone()
        return row[0] if row else None

    def _reader(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = sqlite3.connect(self.db_path, timeout=30, isolation_level=None)
        return db
