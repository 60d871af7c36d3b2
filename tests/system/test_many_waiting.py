"""More callers waiting at once than the gateway's and the SDK's first threads.

A waiting long-poll holds no thread of the gateway's HTTP server (it is parked), and
each batch of ``compute`` calls whose outcomes stream holds a thread of the SDK's
senders. Neither may run out: a hundred callers waiting on queued jobs must not stall
anyone else.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil
import requests

from client_sdk import compute_this
from gateway.server import DEFAULT_THREADS
from tests.stack import Stack, scrape_metrics, wait_until
from tests.system.test_coalesce import job_count

WAITERS = 100
LANES = 70  # batches streaming at once, from one process


@compute_this
def when_released(item: tuple[str, int]) -> int:
    """Wait until the file ``item[0]`` exists, then return ``item[1]``."""
    import os
    import time

    path, value = item
    while not os.path.exists(path):
        time.sleep(0.05)
    return value


def in_threads(count: int, call: Callable[[int], Any]) -> tuple[ThreadPoolExecutor, list]:
    """Start ``call(i)`` for i in range(count), each on its own thread; the pool and
    its futures."""
    pool = ThreadPoolExecutor(count)
    return pool, [pool.submit(call, i) for i in range(count)]


def test_a_hundred_callers_waiting_leave_the_gateway_responsive(sdk: Stack, tmp_path: Path):
    """Callers waiting hold no threads of the gateway's HTTP server: they are parked."""
    sdk.wait_for_workers(2)  # not one restarting after an earlier test's cancel: /health 200
    gateway = psutil.Process(sdk.process.pid)
    threads_before = gateway.num_threads()
    in_progress_before = scrape_metrics(sdk)["computethis_http_requests_in_progress"]
    release = tmp_path / "release"
    jobs = when_released.submit_many([(str(release), i) for i in range(WAITERS)])
    pool, futures = in_threads(WAITERS, lambda i: jobs[i].result(timeout=120))
    try:
        time.sleep(2)  # every caller is in its long-poll: the jobs wait for the file
        threads_waiting = gateway.num_threads()
        started = time.monotonic()
        health = requests.get(sdk.api("/health"), timeout=20)
        other = when_released.submit((str(release), -1))
        answered = time.monotonic() - started
        assert health.status_code == 200
        assert answered < 5, f"the gateway took {answered:.1f} s to answer while callers waited"
        gauges = scrape_metrics(sdk)
        assert gauges["computethis_http_requests_in_progress"] >= WAITERS
        assert gauges["computethis_http_answers_waiting"] >= WAITERS - 2  # a caller's retry
        assert gauges["computethis_http_threads_idle"] >= DEFAULT_THREADS - 4
        assert gauges["computethis_http_connections_queued"] == 0
    finally:
        release.touch()
        results = [future.result(timeout=120) for future in futures]
        pool.shutdown()
    assert results == list(range(WAITERS))
    assert other.result(timeout=60) == -1
    assert threads_waiting <= threads_before + 4, (threads_before, threads_waiting)
    assert scrape_metrics(sdk)["computethis_http_answers_waiting"] == 0
    # Every answer, streamed or not, is counted out once it ends (the scrape's own is in):
    # just after its client has the last byte, as the server's thread closes it.
    wait_until(
        lambda: scrape_metrics(sdk)["computethis_http_requests_in_progress"] <= in_progress_before,
        lambda: (
            f"{scrape_metrics(sdk)['computethis_http_requests_in_progress']} requests "
            f"still in progress, {in_progress_before} before"
        ),
        timeout=10,
        every=0.2,
    )


def test_seventy_batches_stream_at_once_from_one_process(sdk: Stack, tmp_path: Path):
    """Each lane (a function name) sends one call alone and batches the second while
    the first is in flight; every batch streams until its job is released."""
    release = tmp_path / "release"
    lanes = [compute_this(name=f"lane-{i}")(when_released.func) for i in range(LANES)]
    before = job_count(sdk)
    barrier = threading.Barrier(2 * LANES)

    def call(i: int) -> int:
        barrier.wait()
        return lanes[i // 2].compute((str(release), i))

    pool, futures = in_threads(2 * LANES, call)
    try:
        wait_until(
            lambda: job_count(sdk) - before == 2 * LANES,
            lambda: f"{job_count(sdk) - before} of {2 * LANES} calls stored",
            timeout=30,
            every=0.2,
        )
    finally:
        release.touch()
        results = [future.result(timeout=120) for future in futures]
        pool.shutdown()
    assert results == list(range(2 * LANES))
