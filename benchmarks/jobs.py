"""Job records from the gateway (``GET /api/v1/jobs/<id>``), times as epoch seconds."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

from benchmarks.results import median
from client_sdk import Job, default_client


def epoch(stamp: str | None) -> float | None:
    """Seconds since the epoch of the gateway's ISO-8601 timestamps (``...Z``)."""
    if not stamp:
        return None
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def newest_job_ids(count: int) -> list[str]:
    """The ids of the caller's ``count`` newest jobs, newest first (at most 1000)."""
    listing = default_client().transport.request("GET", "/jobs", params={"limit": count}).json()
    return [job["id"] for job in listing["jobs"]]


def job_records(job_ids: list[str], threads: int = 8) -> list[dict[str, Any]]:
    """Worker, created/started/finished times and run duration of each job."""
    with ThreadPoolExecutor(threads) as pool:
        infos = list(pool.map(lambda job_id: Job(job_id).info(), job_ids))
    return [
        {
            "id": info["id"],
            "worker": info.get("worker"),
            "created": epoch(info.get("created_at")),
            "started": epoch(info.get("started_at")),
            "finished": epoch(info.get("finished_at")),
            "duration": info.get("duration"),
        }
        for info in infos
    ]


def stages(sent: list[tuple[str, float, float]]) -> dict[str, float]:
    """Median time in each stage of a call, from the client's and the gateway's clocks.

    post: request sent until the job was stored; dispatch: stored until the worker
    started it; run: on the worker; return: finished on the worker until the client
    had the result (recording, waking the long-poll, the response).
    """
    records = {record["id"]: record for record in job_records([job_id for job_id, _, _ in sent])}
    spans: dict[str, list[float]] = {"post": [], "dispatch": [], "run": [], "return": []}
    for job_id, wall_sent, wall_received in sent:
        record = records[job_id]
        if None in (record["created"], record["started"], record["finished"]):
            continue
        spans["post"].append(record["created"] - wall_sent)
        spans["dispatch"].append(record["started"] - record["created"])
        spans["run"].append(record["duration"] or 0.0)
        spans["return"].append(wall_received - record["finished"])
    return {name: round(median(values) * 1e3, 3) for name, values in spans.items()}
