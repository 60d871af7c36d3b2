"""A large array in and out: ``func.compute(array)`` against direct Dask; gateway memory."""

from __future__ import annotations

import time
import warnings

import numpy as np

from benchmarks.config import Sizes
from benchmarks.harness import Runner
from benchmarks.jobs import stages
from benchmarks.memory import PeakRss
from benchmarks.results import BenchResult, Row, median, ratio
from benchmarks.workloads import echo
from client_sdk import RemoteFunction, compute_this
from client_sdk.pickling import dump_buffers
from client_sdk.serialization import dumps_call, loads_result

NAME = "bigdata"


def run(runner: Runner, sizes: Sizes) -> BenchResult:
    """Round-trip bytes/s of each path, and the gateway's peak RSS growth while it serves."""
    harness = runner.harness(sizes.workers)
    client, gateway = harness.client, harness.gateway
    assert client is not None and gateway is not None
    nbytes = sizes.big_megabytes << 20
    array = np.random.default_rng(0).random(nbytes // 8)
    remote = compute_this(echo)
    small = np.arange(10.0)
    remote.compute(small)
    client.submit(echo, small, pure=False).result()

    our_times: list[float] = []
    their_times: list[float] = []
    peaks: list[int] = []
    baseline = None
    sent: list[tuple[str, float, float]] = []
    for _ in range(sizes.repeats):
        with PeakRss(gateway.pid) as rss:
            wall, start = time.time(), time.perf_counter()
            job = remote.submit(array)
            back = job.result()
            our_times.append(time.perf_counter() - start)
            sent.append((job.id, wall, time.time()))
        baseline = rss.baseline if baseline is None else baseline
        peaks.append(rss.peak)
        assert back.shape == array.shape and back[-1] == array[-1]
        del back
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "large object in task graph"
            start = time.perf_counter()
            back = client.submit(echo, array, pure=False).result()
            their_times.append(time.perf_counter() - start)
        assert back.shape == array.shape
        del back

    mine, dask = 2 * nbytes / median(our_times), 2 * nbytes / median(their_times)
    growth = max(peaks) - (baseline or 0)
    megabytes = 1 << 20
    result = BenchResult(NAME)
    result.rows.append(
        Row(
            f"round trip, {sizes.big_megabytes} MiB each way",
            ratio(mine, dask),
            ">=",
            0.5,
            "MiB/s",
            mine / megabytes,
            dask / megabytes,
        )
    )
    result.rows.append(
        Row(
            "gateway peak RSS growth / payload",
            growth / nbytes,
            "<=",
            1.5,
            "MiB",
            growth / megabytes,
            None,
        )
    )
    result.data = {
        "megabytes": sizes.big_megabytes,
        "computethis_s": our_times,
        "dask_s": their_times,
        "gateway_rss_baseline": baseline,
        "gateway_rss_peaks": peaks,
        "stages_ms": stages(sent),
        "client_pickle_ms": round(pickle_seconds(remote, array) * 1e3, 3),
    }
    return result


def pickle_seconds(remote: RemoteFunction, array: np.ndarray) -> float:
    """Seconds the SDK spends pickling the call and unpickling an equal result."""
    # What a worker sends back for it, as the SDK reads it: into writable memory.
    result = memoryview(bytearray(bytes(dump_buffers(array, index=True))))
    start = time.perf_counter()
    payload = dumps_call(remote.func, (array,), {})
    loads_result(result)
    elapsed = time.perf_counter() - start
    del payload, result
    return elapsed
