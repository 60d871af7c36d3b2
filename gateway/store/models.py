"""What the store keeps and hands out: job statuses, the job record, a submission's
options and a worker's outcome. Plain data: no SQL, no files."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

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

JOB_ID = re.compile(r"[0-9a-f]{32}\Z")

# Kinds of job: what a job's payload is and which worker function runs it.
FUNCTION, FOLDER, SPMD, MODEL = "function", "folder", "spmd", "model"
KINDS = (FUNCTION, FOLDER, SPMD, MODEL)


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
    kind: str = FUNCTION
    ranks: int | None = None  # SPMD (a function, or a folder's program): workers at once


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
    kind: str = FUNCTION
    ranks: int | None = None

    @classmethod
    def queued(cls, spec: JobSpec, job_id: str, seq: int, created_at: float, size: int) -> Job:
        """The record of a job just inserted from ``spec`` (what its row holds)."""
        return cls(
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
            kind=spec.kind,
            ranks=spec.ranks,
        )

    @property
    def gang(self) -> bool:
        """True for a job of several ranks that start together and stop together."""
        return (self.ranks or 1) > 1

    @property
    def done(self) -> bool:
        """True once the job will not run (again): finished, failed, cancelled or expired."""
        return self.status in DONE

    def to_json(self) -> dict[str, Any]:
        """The public JSON view of the job (no tenant, payload, key or pickled exception)."""
        data: dict[str, Any] = {
            "id": self.id,
            "kind": self.kind,
            "ranks": self.ranks,
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
    result_body: bool = False  # the body is the result even if not ok (see wire.envelope)
    # Set by JobStore.stage_result: the body, already in a fsynced temporary file.
    result_file: Path | None = None
    result_size: int = 0

    @property
    def size(self) -> int:
        """Bytes of the result or exception body."""
        return self.result_size if self.result_file is not None else len(self.body)


def batch_keys(key: str | None, count: int) -> list[str | None]:
    """The idempotency keys of a batch's ``count`` jobs: ``key#0``, ``key#1``..."""
    return [None if key is None else f"{key}#{index}" for index in range(count)]


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    moment = datetime.fromtimestamp(timestamp, tz=timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
