"""Crash repair at gateway start-up: make the job records and the files agree again."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable

from gateway.store.blobs import Blobs
from gateway.store.db import Database
from gateway.store.models import ACTIVE, FAILED, FINISHED, Outcome
from wire.errors import error_info


def repair_after_crash(
    db: Database, blobs: Blobs, record: Callable[[Iterable[Outcome]], list[str]]
) -> dict[str, int]:
    """Drop temporary files, fail active jobs whose payload is gone (through ``record``)
    and finished jobs whose result is gone, and delete payload/result files that belong
    to no job. Returns how many of each it found."""
    counts = {"tmp_files": 0, "payload_lost": 0, "result_lost": 0, "orphan_files": 0}
    for leftover in blobs.tmp_dir.iterdir():
        leftover.unlink(missing_ok=True)
        counts["tmp_files"] += 1
    connection = db.connection()
    ids = {row[0] for row in connection.execute("SELECT id FROM jobs")}
    lost: list[Outcome] = []
    in_files = connection.execute(
        "SELECT id FROM jobs WHERE status IN (?, ?) AND payload IS NULL", ACTIVE
    ).fetchall()
    for (job_id,) in in_files:
        if not blobs.payload_path(job_id).exists():
            lost.append(Outcome(job_id, ok=False, error=_lost("PayloadLost", "payload")))
            counts["payload_lost"] += 1
    record(lost)
    finished = connection.execute(
        "SELECT id FROM jobs WHERE status = ? AND result IS NULL", (FINISHED,)
    ).fetchall()
    for (job_id,) in finished:
        if not blobs.result_path(job_id).exists():
            with db.transaction() as tx:
                tx.execute(
                    "UPDATE jobs SET status = ?, error = ?, result_size = NULL WHERE id = ?",
                    (FAILED, json.dumps(_lost("ResultLost", "result")), job_id),
                )
            counts["result_lost"] += 1
    for directory in (blobs.payload_dir, blobs.result_dir):
        for path in directory.iterdir():
            if path.name not in ids:
                path.unlink(missing_ok=True)
                counts["orphan_files"] += 1
    return counts


def _lost(kind: str, what: str) -> dict[str, str]:
    return error_info(
        kind,
        f"the job's stored {what} file is missing (found at gateway start-up); "
        "submit the job again",
    )
