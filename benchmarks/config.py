"""Benchmark sizes: the full run and ``--quick`` (a few seconds per benchmark)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Sizes:
    """How much work each benchmark does."""

    workers: int = 2  # workers of the shared cluster (all but the scaling benchmark)
    repeats: int = 3  # each measurement is the median of this many runs
    latency_calls: int = 200
    many_small_items: int = 100_000
    many_small_dask_repeats: int = 1  # direct Dask takes minutes at 100k items
    concurrency_threads: int = 50
    concurrency_calls: int = 10  # per thread
    scaling_workers: tuple[int, ...] = (1, 2, 4, 8, 16, 32)
    scaling_factors: tuple[int, ...] = (1, 2, 5, 10)  # functions = factor x workers
    sleep_seconds: float = 1.0
    cpu_jobs: int = 2  # one per worker: "all at once" keeps both workers busy
    cpu_seconds: float = 1.0  # CPU time of one CPU-bound job
    cpu_repeats: int = 7  # one-at-a-time / all-at-once pairs; the speed-up is their median
    big_megabytes: int = 256
    folder_runs: int = 20  # trivial folder jobs (and function jobs, interpreter starts)
    folder_megabytes: int = 200  # the folder uploaded
    model_calls: int = 100  # method calls of one deployment (and function calls)
    model_load_seconds: float = 2.0  # its constructor's sleep
    spmd_workers: int = 8  # workers for the widest gang (and a 4-rank allreduce)
    max_body: int = 1 << 30  # --max-body of the benchmark gateway
    dashboard_jobs: int = 100_000  # jobs stored when the dashboard's pages are timed
    dashboards: int = 20  # dashboards open while the concurrency load runs


FULL = Sizes()
QUICK = Sizes(
    repeats=1,
    latency_calls=20,
    many_small_items=500,
    concurrency_calls=2,
    scaling_workers=(1, 2),
    scaling_factors=(1, 2, 5),
    sleep_seconds=0.1,
    cpu_seconds=0.15,
    cpu_repeats=1,
    big_megabytes=8,
    folder_runs=2,
    folder_megabytes=8,
    model_calls=10,
    model_load_seconds=0.2,
    spmd_workers=4,
    dashboard_jobs=2000,
    dashboards=4,
)
