"""The dashboard's cost: how long its pages take with many jobs stored, and what open
dashboards take from the cluster's throughput.

1. ``dashboard_jobs`` done jobs (100,000 in the full run) are written straight into
   the benchmark gateway's store, spread over the last hour, a few failed. Then the
   jobs page (its first page, a filtered page of rare matches, a page deep in the
   list), a job's page and the overview are each fetched ``RENDERS`` times: the
   median milliseconds of each, against 300 ms.
   The overview is timed twice: as most viewers get it (its snapshot shared, built
   at most once a second) and built afresh for each fetch.
2. The concurrency benchmark's load (``concurrency_threads`` threads of ``compute``,
   three times as many calls each) runs with no dashboard open and with
   ``dashboards`` open (half watching the overview, half the jobs list, each an event
   stream read as it comes), alternating; the cost is how much lower the median
   throughput is with them, against 5 % (at most).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from pathlib import Path

import requests

from benchmarks.concurrency import hammer
from benchmarks.config import Sizes
from benchmarks.harness import TOKEN, Runner
from benchmarks.results import BenchResult, Row, median
from benchmarks.workloads import noop
from client_sdk import compute_this
from gateway.dashboard.snapshot import FRESH_FOR

NAME = "dashboard"
RENDERS = 15  # fetches of each page; the median counts
RENDER_TARGET_MS = 300.0
COST_TARGET_PERCENT = 5.0
LOAD_FACTOR = 3  # the concurrency benchmark's calls, times this: runs of a few seconds
SPREAD = 3600.0  # seconds of history the stored jobs are spread over


def run(runner: Runner, sizes: Sizes) -> BenchResult:
    harness = runner.harness(sizes.workers)
    assert harness.gateway is not None
    url = harness.gateway.url
    ids = store_done_jobs(harness.workdir / "save" / "jobs.sqlite3", sizes.dashboard_jobs)
    session = signed_in(url)
    pages = {
        "jobs page": "/dashboard/jobs",
        "jobs page, filtered": "/dashboard/jobs?status=failed&kind=function&name=bench-rare",
        "jobs page, deep": f"/dashboard/jobs?before={sizes.dashboard_jobs // 2}",
        "job page": f"/dashboard/jobs/{ids[len(ids) // 2]}",
        "overview": "/dashboard/",
        "overview, built afresh": "/dashboard/",
    }
    result = BenchResult(NAME)
    timings: dict[str, list[float]] = {}
    for label, path in pages.items():
        timings[label] = render_times(session, url + path, fresh=label.endswith("afresh"))
        result.rows.append(
            Row(
                f"{label} ms, {sizes.dashboard_jobs:,} jobs",
                median(timings[label]),
                "<=",
                RENDER_TARGET_MS,
                "ms",
            )
        )
    remote = compute_this(noop)
    threads, calls = sizes.concurrency_threads, LOAD_FACTOR * sizes.concurrency_calls
    hammer(remote.compute, threads, calls)  # untimed: the cluster settles first
    alone: list[float] = []
    watched: list[float] = []
    events = 0
    for _ in range(max(sizes.repeats, 3)):
        alone.append(hammer(remote.compute, threads, calls))
        with OpenDashboards(url, session, sizes.dashboards) as open_ones:
            watched.append(hammer(remote.compute, threads, calls))
        events += open_ones.events
    total = threads * calls
    rate_alone, rate_watched = total / median(alone), total / median(watched)
    cost = 100.0 * (1.0 - rate_watched / rate_alone)
    result.rows.append(
        Row(
            f"throughput cost of {sizes.dashboards} open dashboards",
            cost,
            "<=",
            COST_TARGET_PERCENT,
            "%",
        )
    )
    result.data = {
        "jobs_stored": sizes.dashboard_jobs,
        "render_ms": timings,
        "dashboards": sizes.dashboards,
        "jobs_per_s_alone": rate_alone,
        "jobs_per_s_watched": rate_watched,
        "seconds_alone": alone,
        "seconds_watched": watched,
        "events_received": events,
    }
    return result


def store_done_jobs(db_path: Path, count: int) -> list[str]:
    """Write ``count`` done jobs into the gateway's store (one transaction); their ids."""
    now = time.time()
    ids = [uuid.uuid4().hex for _ in range(count)]
    rows = []
    for index, job_id in enumerate(ids):
        created = now - SPREAD + SPREAD * index / max(1, count)
        failed = index % 97 == 0
        error = json.dumps({"type": "ValueError", "message": "bench", "traceback": ""})
        rows.append(
            (
                job_id,
                "admin",
                "bench-rare" if index % 5000 == 0 else f"bench-{index % 50}",
                "failed" if failed else "finished",
                created,
                created + 0.01,
                created + 0.05,
                f"tcp://127.0.0.1:{40000 + index % 2}",
                1,
                120,
                8 if not failed else None,
                error if failed else None,
                b"x" * 120,
                b"y" * 8 if not failed else None,
            )
        )
    db = sqlite3.connect(db_path, timeout=60)
    try:
        with db:
            db.executemany(
                "INSERT INTO jobs (id, tenant, name, status, created_at, started_at,"
                " finished_at, worker, attempts, payload_size, result_size, error, payload,"
                " result) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                rows,
            )
    finally:
        db.close()
    return ids


def signed_in(url: str) -> requests.Session:
    """A browser-like session signed in to the dashboard as the admin."""
    session = requests.Session()
    answer = session.post(f"{url}/dashboard/signin", data={"token": TOKEN}, timeout=30)
    answer.raise_for_status()
    return session


def render_times(session: requests.Session, url: str, fresh: bool = False) -> list[float]:
    """Milliseconds of each of :data:`RENDERS` fetches of ``url`` (after one untimed);
    ``fresh``: each after the shared snapshot is stale, so that it is built anew."""
    session.get(url, timeout=30).raise_for_status()
    times = []
    for _ in range(RENDERS):
        if fresh:
            time.sleep(FRESH_FOR + 0.05)
        start = time.perf_counter()
        answer = session.get(url, timeout=30)
        times.append(1e3 * (time.perf_counter() - start))
        answer.raise_for_status()
    return times


class OpenDashboards:
    """``count`` dashboards open while the block runs: each an event stream of the
    overview or of the jobs list, read on its own thread."""

    def __init__(self, url: str, session: requests.Session, count: int) -> None:
        self.url = url
        self.cookies = session.cookies
        self.count = count
        self.events = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._responses: list[requests.Response] = []

    def __enter__(self) -> OpenDashboards:
        ready = threading.Barrier(self.count + 1)
        for index in range(self.count):
            page = "overview" if index % 2 == 0 else "jobs"
            thread = threading.Thread(target=self._watch, args=(page, ready), daemon=True)
            thread.start()
            self._threads.append(thread)
        ready.wait(timeout=60)
        return self

    def _watch(self, page: str, ready: threading.Barrier) -> None:
        stream = f"{self.url}/dashboard/feed/{page}/events"
        with requests.get(stream, cookies=self.cookies, stream=True, timeout=60) as response:
            response.raise_for_status()
            with self._lock:
                self._responses.append(response)
            ready.wait(timeout=60)
            try:
                for line in response.iter_lines():
                    if line.startswith(b"data:"):
                        with self._lock:
                            self.events += 1
                    if self._stop.is_set():
                        return
            except (requests.RequestException, AttributeError, ValueError):
                return  # closed by __exit__

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        with self._lock:
            for response in self._responses:
                response.close()
        for thread in self._threads:
            thread.join(timeout=5)
