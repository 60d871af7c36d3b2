"""The dashboard's cost: how long its pages take with many jobs stored, and what open
dashboards take from the cluster's throughput.

1. ``dashboard_jobs`` done jobs (100,000 in the full run) are written straight into
   the benchmark gateway's store, spread over the last hour, a few failed. Then the
   jobs page (its first page, a filtered page of rare matches, a page deep in the
   list), a job's page and the overview are each fetched ``RENDERS`` times: the
   median milliseconds of each, against 300 ms.
   The overview is timed twice: as most viewers get it (its snapshot shared, built
   at most once a second) and built afresh for each fetch.
2. The gateway's CPU with no load, over ten seconds, with no dashboard open and with
   ``dashboards`` open: what they cost it, in percent of one core.
3. The concurrency benchmark's load (``concurrency_threads`` threads of ``compute``,
   three times as many calls each) runs with no dashboard open and with
   ``dashboards`` open (half watching the overview, half the jobs list, each an event
   stream read as it comes), in six pairs; the cost is the median of the pairs' drop
   in throughput with them, against 5 % (at most).
"""

from __future__ import annotations

import http.client
import json
import multiprocessing
import sqlite3
import threading
import time
import uuid
from contextlib import nullcontext
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from benchmarks.config import Sizes
from benchmarks.hammer import hammer
from benchmarks.harness import TOKEN, Harness, Runner, cpu_seconds
from benchmarks.results import BenchResult, Row, median
from benchmarks.workloads import noop
from client_sdk import compute_this
from gateway.dashboard.sessions import COOKIE
from gateway.dashboard.snapshot import FRESH_FOR

NAME = "dashboard"
RENDERS = 15  # fetches of each page; the median counts
RENDER_TARGET_MS = 300.0
COST_TARGET_PERCENT = 5.0
IDLE_SECONDS = 10.0  # seconds the gateway's CPU is measured with no load
IDLE_CPU_TARGET_PERCENT = 5.0
PAIRS = 6  # runs alone and runs watched, paired
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
        renders = RENDERS if sizes.repeats > 1 else 3  # --quick: a smoke run
        fresh = label.endswith("afresh")
        timings[label] = render_times(session, url + path, fresh=fresh, renders=renders)
        result.rows.append(
            Row(
                f"{label} ms, {sizes.dashboard_jobs:,} jobs",
                median(timings[label]),
                "<=",
                RENDER_TARGET_MS,
                "ms",
            )
        )
    quiet = idle_gateway_cpu(harness, url, session, 0, sizes)
    busy = idle_gateway_cpu(harness, url, session, sizes.dashboards, sizes)
    result.rows.append(
        Row(
            f"gateway CPU for {sizes.dashboards} open dashboards, no load",
            busy - quiet,
            "<=",
            IDLE_CPU_TARGET_PERCENT,
            "% of a core",
        )
    )
    remote = compute_this(noop)
    threads, calls = sizes.concurrency_threads, LOAD_FACTOR * sizes.concurrency_calls
    hammer(remote.compute, threads, calls)  # untimed: the cluster settles first
    alone: list[float] = []
    watched: list[float] = []
    events = 0
    for index in range(PAIRS if sizes.repeats > 1 else 2):
        # Each pair's order alternates, so that a run's warm-up or drift does not
        # always fall on the same side.
        for watching in (index % 2 == 1, index % 2 == 0):
            if watching:
                with OpenDashboards(url, session, sizes.dashboards) as open_ones:
                    watched.append(hammer(remote.compute, threads, calls))
                events += open_ones.events
            else:
                alone.append(hammer(remote.compute, threads, calls))
    total = threads * calls
    rate_alone, rate_watched = total / median(alone), total / median(watched)
    # The median of the pairs' ratios: the VM's speed drifts more between pairs than
    # within one.
    cost = 100.0 * (1.0 - median([a / w for a, w in zip(alone, watched, strict=True)]))
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
        "gateway_cpu_percent_idle": quiet,
        "gateway_cpu_percent_with_dashboards": busy,
    }
    return result


def idle_gateway_cpu(
    harness: Harness, url: str, session: requests.Session, count: int, sizes: Sizes
) -> float:
    """The gateway's CPU (percent of one core) over :data:`IDLE_SECONDS` with no load
    and ``count`` dashboards open (after a second for their streams to start; shorter
    with ``--quick``)."""
    gateway = {"gateway": harness.processes()["gateway"]}
    quick = sizes.repeats == 1  # --quick: a smoke run
    seconds = 0.5 if quick else IDLE_SECONDS
    with OpenDashboards(url, session, count) if count else nullcontext():
        time.sleep(0.2 if quick else 1.0)
        before, start = cpu_seconds(gateway)["gateway"], time.perf_counter()
        time.sleep(seconds)
        used = cpu_seconds(gateway)["gateway"] - before
    return 100.0 * used / (time.perf_counter() - start)


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


def render_times(
    session: requests.Session, url: str, fresh: bool = False, renders: int = RENDERS
) -> list[float]:
    """Milliseconds of each of ``renders`` fetches of ``url`` (after one untimed);
    ``fresh``: each after the shared snapshot is stale, so that it is built anew."""
    session.get(url, timeout=30).raise_for_status()
    times = []
    for _ in range(renders):
        if fresh:
            time.sleep(FRESH_FOR + 0.05)
        start = time.perf_counter()
        answer = session.get(url, timeout=30)
        times.append(1e3 * (time.perf_counter() - start))
        answer.raise_for_status()
    return times


class OpenDashboards:
    """``count`` dashboards open while the block runs: each an event stream of the
    overview or of the jobs list, read in a process of their own (as browsers are not
    in the process that makes the load), each on its own thread."""

    def __init__(self, url: str, session: requests.Session, count: int) -> None:
        self.url = url
        self.cookie = session.cookies.get(COOKIE) or ""
        self.count = count
        self.events = 0
        context = multiprocessing.get_context("spawn")
        self._ready = context.Semaphore(0)
        self._counted = context.Value("l", 0)
        self._process = context.Process(
            target=watch_streams,
            args=(url, self.cookie, count, self._ready, self._counted),
            daemon=True,
        )

    def __enter__(self) -> OpenDashboards:
        self._process.start()
        for _ in range(self.count):
            if not self._ready.acquire(timeout=60):
                raise RuntimeError("the dashboards' streams did not open")
        return self

    def __exit__(self, *exc: object) -> None:
        self.events = int(self._counted.value)
        self._process.terminate()  # its streams close with it
        self._process.join(timeout=30)


def watch_streams(url: str, cookie: str, count: int, ready: Any, counted: Any) -> None:
    """In a process of its own: ``count`` event streams read until the process is
    stopped, each event counted in ``counted``; ``ready`` released as each opens."""
    target = urlsplit(url)

    def watch(page: str) -> None:
        connection = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
        connection.request(
            "GET", f"/dashboard/feed/{page}/events", headers={"Cookie": f"{COOKIE}={cookie}"}
        )
        response = connection.getresponse()
        ready.release()
        if response.status != 200:
            return
        while data := response.read1(1 << 16):
            with counted.get_lock():
                counted.value += data.count(b"data: ")

    threads = [
        threading.Thread(target=watch, args=("overview" if index % 2 == 0 else "jobs",))
        for index in range(count)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
