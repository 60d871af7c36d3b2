"""Latency of one call: ``func.compute(x)`` against ``client.submit(f, x).result()``.

With Ray installed (``make bench``), also against Ray core's ``ray.get(f.remote(x))``
on as many CPUs as the cluster has workers (:mod:`benchmarks.ray_peer`).
"""

from __future__ import annotations

import time

from benchmarks import ray_peer
from benchmarks.config import Sizes
from benchmarks.harness import Runner
from benchmarks.jobs import newest_job_ids, stages
from benchmarks.results import BenchResult, Row, percentile, ratio
from benchmarks.workloads import noop
from client_sdk import compute_this

NAME = "latency"
WARMUP = 5


def run(runner: Runner, sizes: Sizes) -> BenchResult:
    """Sequential trivial calls, alternating the two paths so drift hits both alike."""
    harness = runner.harness(sizes.workers)
    client = harness.client
    assert client is not None
    remote = compute_this(noop)
    for i in range(WARMUP):
        remote.compute(i)
        client.submit(noop, i, pure=False).result()
    ours: list[float] = []
    theirs: list[float] = []
    walls: list[tuple[float, float]] = []
    for i in range(sizes.latency_calls):
        wall, start = time.time(), time.perf_counter()
        assert remote.compute(i) == i
        ours.append(time.perf_counter() - start)
        walls.append((wall, time.time()))
        start = time.perf_counter()
        assert client.submit(noop, i, pure=False).result() == i
        theirs.append(time.perf_counter() - start)
    # compute() makes the jobs one after another: the newest ones, in reverse order.
    job_ids = newest_job_ids(len(walls))[::-1]
    sent = [(job_id, *wall) for job_id, wall in zip(job_ids, walls, strict=True)]
    result = BenchResult(NAME)
    for q, target in ((50, 1.25), (99, 1.5)):
        mine, dask = percentile(ours, q) * 1e3, percentile(theirs, q) * 1e3
        result.rows.append(Row(f"p{q} latency", ratio(mine, dask), "<=", target, "ms", mine, dask))
    ray = ray_peer.measure(*ray_peer.sizes_for(sizes))
    if ray is not None:
        for q, target in ((50, 1.5), (99, 2.0)):
            mine, theirs_ray = percentile(ours, q) * 1e3, percentile(ray["latency_s"], q) * 1e3
            metric = f"p{q} latency (vs Ray)"
            result.rows.append(
                Row(metric, ratio(mine, theirs_ray), "<=", target, "ms", mine, theirs_ray)
            )
        result.data["ray_ms"] = [round(s * 1e3, 3) for s in ray["latency_s"]]
    result.data |= {
        "calls": sizes.latency_calls,
        "computethis_ms": [round(s * 1e3, 3) for s in ours],
        "dask_ms": [round(s * 1e3, 3) for s in theirs],
        "stages_ms": stages(sent),
    }
    return result
