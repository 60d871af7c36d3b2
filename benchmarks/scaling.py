"""Throughput as workers grow: sleep jobs at W workers x F functions; CPU-bound speed-up."""

from __future__ import annotations

import multiprocessing
import statistics
import time
from collections.abc import Callable
from typing import Any

from benchmarks.config import Sizes
from benchmarks.harness import Harness, Runner
from benchmarks.jobs import job_records
from benchmarks.results import BenchResult, Row, ratio, timed
from benchmarks.workloads import burn, burn_iterations, nap
from client_sdk import RemoteFunction, compute_this, gather

NAME = "scaling"


def run(runner: Runner, sizes: Sizes) -> BenchResult:
    """For each worker count: F = factor x W sleep jobs, throughput against W / seconds
    (the median of a cell's runs, see :func:`cell_repeats`).

    Direct Dask runs every F too, alternated with ours, as a reference for what the
    machine allows; the CPU-bound speed-up is measured both ways as well.
    """
    result = BenchResult(NAME)
    throughput: list[dict[str, Any]] = []
    timelines: list[dict[str, Any]] = []
    cpu_seconds: dict[str, list[float]] = {}
    iterations = burn_iterations(sizes.cpu_seconds)
    running = runner.current.workers if runner.current else None
    seconds = sizes.sleep_seconds
    for workers in sorted(sizes.scaling_workers, key=lambda w: (w != running, w)):
        harness = runner.harness(workers)
        sleeper = compute_this(nap)
        sleeper.compute(0.0)
        for factor in sizes.scaling_factors:
            functions = factor * workers
            ours: list[float] = []
            dask: list[float] = []
            for _ in range(cell_repeats(factor, sizes.repeats)):  # alternated
                elapsed, job_ids = run_jobs(sleeper, [seconds] * functions)
                ours.append(elapsed)
                dask.append(run_dask(harness, nap, [seconds] * functions))
            rate = functions / statistics.median(ours)
            dask_rate = functions / statistics.median(dask)
            throughput.append(
                {
                    "workers": workers,
                    "factor": factor,
                    "functions": functions,
                    "seconds": ours,
                    "dask_seconds": dask,
                    "jobs_per_s": rate,
                    "dask_jobs_per_s": dask_rate,
                }
            )
            ideal = workers / seconds
            result.rows.append(
                Row(
                    f"sleep W={workers} F={functions}",
                    rate / ideal,
                    ">=",
                    0.9,
                    "jobs/s",
                    rate,
                    dask_rate,
                )
            )
            if factor == max(sizes.scaling_factors):
                timelines.append(
                    {"workers": workers, "functions": functions, "jobs": job_records(job_ids)}
                )
        if workers == 2:
            cpu_seconds = cpu_speedup_seconds(
                harness, iterations, sizes.cpu_jobs, sizes.cpu_repeats
            )
    if cpu_seconds:
        speedup = paired_speedup(cpu_seconds["one"], cpu_seconds["two"])
        dask_speedup = paired_speedup(cpu_seconds["dask_one"], cpu_seconds["dask_two"])
        bare_speedup = paired_speedup(cpu_seconds["bare_one"], cpu_seconds["bare_two"])
        result.rows.append(
            Row(
                f"CPU-bound speed-up 2 vs 1 busy workers (bare processes: {bare_speedup:.2f})",
                speedup,
                ">=",
                1.8,
                "x",
                speedup,
                dask_speedup,
            )
        )
    throughput.sort(key=lambda row: (row["workers"], row["factor"]))
    timelines.sort(key=lambda row: row["workers"])
    result.rows.sort(key=_row_order)
    result.data = {
        "sleep_seconds": seconds,
        "throughput": throughput,
        "cpu_seconds": cpu_seconds,
        "cpu_iterations": iterations,
        "timelines": timelines,
    }
    return result


def cell_repeats(factor: int, repeats: int) -> int:
    """Runs of one W x F cell: ``repeats`` at F = W (about one job's time each), fewer
    as F grows, so that each cell's median spans a few job times (F = 5W: one run)."""
    return max(1, round(repeats / factor))


def paired_speedup(one_at_a_time: list[float], all_at_once: list[float]) -> float:
    """The median of each repeat's one-at-a-time / all-at-once ratio.

    The two runs of a pair follow each other within seconds, so a slower spell of the
    machine slows both; the same job's CPU time here moves by 1.3x or more from one
    minute to the next, which a ratio of the fastest runs of each kind does not cancel.
    """
    pairs = zip(one_at_a_time, all_at_once, strict=True)
    return statistics.median([ratio(one, two) for one, two in pairs])


def cpu_speedup_seconds(
    harness: Harness, iterations: int, jobs: int, repeats: int
) -> dict[str, list[float]]:
    """Seconds for ``jobs`` CPU-bound jobs on two workers: one at a time (one worker busy)
    and all at once (both busy), through computethis, through direct Dask, and in two
    bare processes (a ``multiprocessing`` pool: what the machine's two cores give).

    All six run alternated in every repeat: on this VM, runs a few minutes apart (on a
    one-worker and a two-worker cluster) differed by 1.3x.
    """
    burner = compute_this(burn)
    burner.compute(1)
    client = harness.client
    assert client is not None
    args = [iterations] * jobs
    paths = ("one", "two", "dask_one", "dask_two", "bare_one", "bare_two")
    seconds: dict[str, list[float]] = {path: [] for path in paths}
    with multiprocessing.get_context("spawn").Pool(2) as bare:
        bare.map(burn, [1, 1], chunksize=1)  # both processes started
        for _ in range(repeats):
            seconds["one"].append(timed(lambda: [burner.compute(n) for n in args]))
            seconds["two"].append(run_jobs(burner, args)[0])
            seconds["dask_one"].append(
                timed(lambda: [client.submit(burn, n, pure=False).result() for n in args])
            )
            seconds["dask_two"].append(run_dask(harness, burn, args))
            seconds["bare_one"].append(timed(lambda: [bare.apply(burn, (n,)) for n in args]))
            seconds["bare_two"].append(timed(lambda: bare.map(burn, args, chunksize=1)))
        return seconds


def run_jobs(function: RemoteFunction, args: list[Any]) -> tuple[float, list[str]]:
    """Submit one job per argument with ``submit_many`` and collect their results with
    ``gather``, as direct Dask does with ``client.map`` and ``client.gather``;
    (seconds, job ids)."""
    start = time.perf_counter()
    jobs = function.submit_many(args)
    gather(jobs)
    elapsed = time.perf_counter() - start
    return elapsed, [job.id for job in jobs]


def run_dask(harness: Harness, function: Callable[[Any], Any], args: list[Any]) -> float:
    """Seconds for the same jobs through the harness's direct Dask client."""
    client = harness.client
    assert client is not None
    return timed(lambda: client.gather(client.map(function, args, pure=False)))


def _row_order(row: Row) -> tuple[int, int]:
    parts = dict(part.split("=") for part in row.metric.split()[1:] if "=" in part)
    if not parts:
        return (1 << 30, 0)
    return (int(parts["W"]), int(parts["F"]))
