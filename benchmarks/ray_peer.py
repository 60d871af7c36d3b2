"""Ray core as the latency benchmarks' second comparator, in a process of its own.

``python -m benchmarks.ray_peer CPUS CALLS THREADS CALLS_PER_THREAD REPEATS`` starts a
local Ray with ``CPUS`` CPUs and no dashboard, then times the same trivial function as
the other paths: ``CALLS`` sequential ``ray.get(noop.remote(i))`` and ``REPEATS`` rounds
of ``THREADS`` threads making ``CALLS_PER_THREAD`` such calls each. It prints one JSON
line: ``{"latency_s": [...], "hammer_s": [...], "cpu_s_per_call": {...}}``.

A separate process, started only while it measures, so Ray's own processes (GCS,
raylet, its workers) neither run beside the other paths' measurements nor share the
benchmark process's interpreter with the SDK.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import os
import subprocess
import sys
import time
from typing import Any

import psutil

from benchmarks.config import Sizes
from benchmarks.hammer import hammer
from benchmarks.workloads import noop

WARMUP = 20
TIMEOUT = 600.0  # seconds for the whole comparator run


def available() -> bool:
    """Whether Ray is installed (``make bench`` installs it; ``make test`` does not)."""
    return importlib.util.find_spec("ray") is not None


def sizes_for(sizes: Sizes) -> tuple[int, int, int, int, int]:
    """:func:`measure`'s arguments for the latency and concurrency benchmarks' sizes."""
    return (
        sizes.workers,
        sizes.latency_calls,
        sizes.concurrency_threads,
        sizes.concurrency_calls,
        sizes.repeats,
    )


@functools.cache
def measure(
    cpus: int, calls: int, threads: int, calls_per_thread: int, repeats: int
) -> dict[str, Any] | None:
    """Ray's figures from a child process, or None without Ray (the rows are left out).

    Cached: the latency and concurrency benchmarks ask with the same sizes and share
    one run of Ray.
    """
    if not available():
        return None
    command = [sys.executable, "-m", "benchmarks.ray_peer"]
    command += [str(n) for n in (cpus, calls, threads, calls_per_thread, repeats)]
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=TIMEOUT, check=True, env=env
        )
        return json.loads(done.stdout.strip().splitlines()[-1])
    except (subprocess.SubprocessError, ValueError, IndexError) as exc:
        print(f"[bench] Ray comparator failed: {exc}", file=sys.stderr)
        return None


def _cpu_seconds() -> dict[str, float]:
    """CPU seconds used so far by this (driver) process and by Ray's processes."""
    me = psutil.Process()
    used = {"driver": sum(me.cpu_times()[:2]), "ray": 0.0}
    for child in me.children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            used["ray"] += sum(child.cpu_times()[:2])
    return used


def main(cpus: int, calls: int, threads: int, calls_per_thread: int, repeats: int) -> None:
    import ray

    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        remote_noop = ray.remote(noop)

        def call(x: int) -> Any:
            return ray.get(remote_noop.remote(x))

        for i in range(WARMUP):
            call(i)
        latency = []
        for i in range(calls):
            start = time.perf_counter()
            assert call(i) == i
            latency.append(time.perf_counter() - start)
        hammer(call, threads, calls_per_thread)  # untimed, as for the other paths
        rounds, cpu = [], []
        for _ in range(repeats):
            before = _cpu_seconds()
            rounds.append(hammer(call, threads, calls_per_thread))
            after = _cpu_seconds()
            total = threads * calls_per_thread
            cpu.append({part: (after[part] - before[part]) / total for part in after})
    finally:
        ray.shutdown()
    cpu_per_call = {part: sorted(r[part] for r in cpu)[len(cpu) // 2] for part in cpu[0]}
    print(json.dumps({"latency_s": latency, "hammer_s": rounds, "cpu_s_per_call": cpu_per_call}))


if __name__ == "__main__":
    main(*(int(arg) for arg in sys.argv[1:6]))
    # Ray's atexit handlers have been seen to hang a finished driver: leave at once.
    sys.stdout.flush()
    os._exit(0)
