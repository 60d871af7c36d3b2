"""Many client threads at once: 50 threads of ``func.compute`` against one Dask client.

With Ray installed (``make bench``), also against as many threads of Ray core's
``ray.get(f.remote(x))`` (:mod:`benchmarks.ray_peer`).
"""

from __future__ import annotations

from typing import Any

from benchmarks import ray_peer
from benchmarks.config import Sizes
from benchmarks.hammer import hammer
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
    ray = ray_peer.measure(*ray_peer.sizes_for(sizes))
    if ray is not None:
        theirs_ray = total / median(ray["hammer_s"])
        result.rows.append(
            Row(
                f"jobs/s, {threads} threads (vs Ray)",
                ratio(mine, theirs_ray),
                ">=",
                0.7,
                "jobs/s",
                mine,
                theirs_ray,
            )
        )
        result.data["ray_s"] = ray["hammer_s"]
        result.data["ray_cpu_ms_per_call"] = {
            part: round(1e3 * seconds, 2) for part, seconds in ray["cpu_s_per_call"].items()
        }
    result.data |= {
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
