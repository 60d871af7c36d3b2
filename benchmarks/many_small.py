"""Many tiny calls: ``func.map(range(N))`` against ``client.map`` + ``client.gather``."""

from __future__ import annotations

from typing import Any

from benchmarks.config import Sizes
from benchmarks.harness import Runner
from benchmarks.results import BenchResult, Row, median, ratio, timed
from benchmarks.workloads import noop
from client_sdk import compute_this

NAME = "many_small"


def run(runner: Runner, sizes: Sizes) -> BenchResult:
    """Calls per second of each path over ``many_small_items`` trivial calls."""
    harness = runner.harness(sizes.workers)
    client = harness.client
    assert client is not None
    n = sizes.many_small_items
    remote = compute_this(noop)
    expected = list(range(n))
    remote.map(range(100))
    client.gather(client.map(noop, range(100), pure=False))

    def ours() -> list[Any]:
        return remote.map(range(n))

    def theirs() -> list[Any]:
        return client.gather(client.map(noop, range(n), pure=False))

    our_times = [timed(ours, expected) for _ in range(sizes.repeats)]
    their_times = [timed(theirs, expected) for _ in range(sizes.many_small_dask_repeats)]
    mine, dask = n / median(our_times), n / median(their_times)
    result = BenchResult(NAME)
    result.rows.append(Row(f"calls/s, N={n}", ratio(mine, dask), ">=", 10.0, "calls/s", mine, dask))
    result.data = {"items": n, "computethis_s": our_times, "dask_s": their_times}
    return result
