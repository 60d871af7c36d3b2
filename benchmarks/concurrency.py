"""Many client threads at once: 50 threads of ``func.compute`` against one Dask client."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from benchmarks.config import Sizes
from benchmarks.harness import Runner, cpu_seconds
from benchmarks.results import BenchResult, Row, median, ratio
from benchmarks.workloads import noop
from client_sdk import compute_this

NAME = "concurrency"


def run(runner: Runner, sizes: Sizes) -> BenchResult:
    """Jobs per second with ``concurrency_threads`` threads each making sequential calls."""
    harness = runner.harness(sizes.workers)
    client = harness.client
    assert client is not None
    remote = compute_this(noop)
    threads, calls = sizes.concurrency_threads, sizes.concurrency_calls

    def ours(x: int) -> Any:
        return remote.compute(x)

    def theirs(x: int) -> Any:
        return client.submit(noop, x, pure=False).result()

    # One untimed round of each first: the cluster may still be busy with the previous
    # benchmark's work (after a direct-Dask map of 20,000 tasks, the next round of either
    # path ran 25-35 % slower than the one after it), and ours, going first, took that
    # hit in every run (its first repeat: 81-107 jobs/s, then 150-193).
    hammer(ours, threads, calls)
    hammer(theirs, threads, calls)
    # Repeats alternate the two paths, so that drift (the machine's neighbours) hits
    # both alike.
    total = threads * calls
    groups = harness.processes()
    times: dict[str, list[float]] = {"computethis": [], "dask": []}
    cpu: dict[str, list[dict[str, float]]] = {"computethis": [], "dask": []}
    for _ in range(sizes.repeats):
        for path, call in (("computethis", ours), ("dask", theirs)):
            before = cpu_seconds(groups)
            times[path].append(hammer(call, threads, calls))
            after = cpu_seconds(groups)
            cpu[path].append({part: (after[part] - before[part]) / total for part in after})
    our_times, their_times = times["computethis"], times["dask"]
    mine, dask = total / median(our_times), total / median(their_times)
    result = BenchResult(NAME)
    result.rows.append(
        Row(f"jobs/s, {threads} threads", ratio(mine, dask), ">=", 0.7, "jobs/s", mine, dask)
    )
    result.data = {
        "threads": threads,
        "calls_per_thread": calls,
        "computethis_s": our_times,
        "dask_s": their_times,
        # Median CPU milliseconds per job of each part of the cluster, for each path.
        "cpu_ms_per_job": {
            path: {part: round(1e3 * median([r[part] for r in runs]), 2) for part in runs[0]}
            for path, runs in cpu.items()
        },
    }
    return result


def hammer(call: Callable[[int], Any], threads: int, calls: int) -> float:
    """Seconds for ``threads`` threads to make ``calls`` calls each, started together."""
    barrier = threading.Barrier(threads + 1)
    errors: list[BaseException] = []

    def work(offset: int) -> None:
        barrier.wait()
        try:
            for i in range(calls):
                if call(offset + i) != offset + i:
                    raise AssertionError("wrong result")
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    workers = [
        threading.Thread(target=work, args=(t * calls,), daemon=True) for t in range(threads)
    ]
    for worker in workers:
        worker.start()
    barrier.wait()
    start = time.perf_counter()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise errors[0]
    return elapsed
