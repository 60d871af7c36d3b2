"""SPMD jobs: messages between two ranks against two plain processes over a raw TCP
socket (small-message round trip, 64 MiB numpy bandwidth: each side receives every
message into a new buffer, as the ranks must), and against two mpi4py ranks when
mpi4py and ``mpirun`` are installed (``make bench`` installs them where it can);
``allreduce`` of 8 MB, and how long a gang takes to start against one plain job."""

from __future__ import annotations

import importlib.util
import json
import mmap
import multiprocessing
import os
import shutil
import socket
import subprocess
import sys
import time
from typing import Any

import numpy as np

from benchmarks.config import Sizes
from benchmarks.harness import Runner
from benchmarks.results import INFO, BenchResult, Row, median, ratio
from benchmarks.workloads import noop
from client_sdk import compute_this

NAME = "spmd"
ROUND_TRIPS = 200
BANDWIDTH_BYTES = 64 << 20
ARRAY_REPEATS = 3  # timed exchanges of the array (after one untimed)


def _pingpong(comm: Any, trips: int, nbytes: int) -> dict[str, float] | None:
    """Rank 0 times ``trips`` round trips of one small message (the median trip), then an
    array of ``nbytes`` each way (after one untimed exchange, as the raw socket's buffers are
    ready before its clock starts: the median of 3); rank 1 echoes."""
    import statistics
    import time as clock

    import numpy

    array = numpy.ones(nbytes // 8)
    if comm.rank == 0:
        comm.send(b"x", dest=1)  # both connected and warm
        comm.recv(source=1)
        trip_times = []
        for _ in range(trips):
            start = clock.perf_counter()
            comm.send(b"x", dest=1)
            comm.recv(source=1)
            trip_times.append(clock.perf_counter() - start)
        round_trip = statistics.median(trip_times)
        comm.send(array, dest=1)
        comm.recv(source=1)
        times = []
        for _ in range(ARRAY_REPEATS):
            start = clock.perf_counter()
            comm.send(array, dest=1)
            comm.recv(source=1)
            times.append((clock.perf_counter() - start) / 2)
        seconds = sorted(times)[len(times) // 2]
        return {"round_trip_s": round_trip, "bandwidth_Bps": nbytes / seconds}
    for _ in range(trips + 1 + 1 + ARRAY_REPEATS):
        comm.send(comm.recv(source=0), dest=0)
    return None


def _allreduce(comm: Any, nbytes: int) -> float:
    import time as clock

    import numpy

    array = numpy.ones(nbytes // 8)
    comm.barrier()
    start = clock.perf_counter()
    comm.allreduce(array)
    return clock.perf_counter() - start


def _two_cpus() -> tuple[set[int], set[int]] | None:
    """Two different CPUs for the two plain processes, if this process may use two.

    Two ranks run on two workers, on two machines or at least two cores; two plain
    processes left to the kernel on a 2-core machine were sometimes put on one core, where
    a round trip takes 6 us instead of 50-75 (a third of the runs): pinned, the comparator
    is what two separate cores give, every run.
    """
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    return ({cpus[0]}, {cpus[1]}) if len(cpus) >= 2 else None


def _raw_peer(port: int, trips: int, nbytes: int, cpu: set[int] | None = None) -> None:
    if cpu is not None:
        os.sched_setaffinity(0, cpu)
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(trips + 1):
            sock.sendall(_exactly(sock, 1))
        for _ in range(1 + ARRAY_REPEATS):
            buffer = memoryview(mmap.mmap(-1, nbytes))  # a new message, a new buffer, as
            _into(sock, buffer)  # the ranks receive a large one (spmd_collectives.read_buffer)
            sock.sendall(buffer)


def _exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        data += sock.recv(size - len(data))
    return data


def _into(sock: socket.socket, view: memoryview) -> None:
    while view:
        got = sock.recv_into(view)
        view = view[got:]


def _raw_socket(trips: int, nbytes: int) -> dict[str, float]:
    """The same exchanges between two plain processes over one TCP socket."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        cpus = _two_cpus()
        peer = multiprocessing.get_context("spawn").Process(
            target=_raw_peer, args=(server.getsockname()[1], trips, nbytes, cpus and cpus[1])
        )
        peer.start()
        mask = os.sched_getaffinity(0) if cpus else None
        if cpus:
            os.sched_setaffinity(0, cpus[0])
        try:
            sock, _ = server.accept()
            with sock:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.sendall(b"x")
                _exactly(sock, 1)
                trip_times = []
                for _ in range(trips):
                    start = time.perf_counter()
                    sock.sendall(b"x")
                    _exactly(sock, 1)
                    trip_times.append(time.perf_counter() - start)
                round_trip = median(trip_times)
                data = np.ones(nbytes // 8)
                times = []
                for _ in range(1 + ARRAY_REPEATS):  # the first untimed, as for the ranks
                    start = time.perf_counter()
                    sock.sendall(memoryview(data).cast("B"))
                    _into(sock, memoryview(mmap.mmap(-1, nbytes)))
                    times.append((time.perf_counter() - start) / 2)
                seconds = sorted(times[1:])[ARRAY_REPEATS // 2]
        finally:
            if mask:
                os.sched_setaffinity(0, mask)
            peer.join(timeout=30)
            if peer.is_alive():
                peer.kill()
    return {"round_trip_s": round_trip, "bandwidth_Bps": nbytes / seconds}


def run(runner: Runner, sizes: Sizes) -> BenchResult:
    """Two ranks against two processes; then, on ``sizes.workers`` workers, allreduce and
    gang starts."""
    harness = runner.harness(sizes.workers)
    assert harness.client is not None
    result = BenchResult(NAME)
    nbytes = min(BANDWIDTH_BYTES, sizes.big_megabytes << 20)
    trips = ROUND_TRIPS if sizes.repeats > 1 else 20
    # Alternated runs, each side's figures the median of its runs: where the four
    # processes land on the two cores moves a single run's figures both ways.
    runs: dict[str, list[dict[str, float]]] = {"ours": [], "raw": []}
    for _ in range(max(1, sizes.repeats)):
        runs["ours"].append(compute_this(_pingpong, ranks=2).compute(trips, nbytes)[0])
        runs["raw"].append(_raw_socket(trips, nbytes))
    ours, theirs = (
        {figure: median([run[figure] for run in runs[side]]) for figure in runs[side][0]}
        for side in ("ours", "raw")
    )
    mine, raw = ours["round_trip_s"] * 1e6, theirs["round_trip_s"] * 1e6
    result.rows.append(
        Row("rank round trip (vs raw TCP)", ratio(mine, raw), "<=", 2.0, "us", mine, raw)
    )
    mine, raw = ours["bandwidth_Bps"] / 2**20, theirs["bandwidth_Bps"] / 2**20
    result.rows.append(
        Row("rank 64 MiB bandwidth (vs raw TCP)", ratio(mine, raw), ">=", 0.8, "MiB/s", mine, raw)
    )
    mpi = _mpi4py(trips, nbytes)
    if mpi is not None:  # a second comparator, without a target: MPI uses shared memory
        mine, theirs_mpi = ours["round_trip_s"] * 1e6, mpi["round_trip_s"] * 1e6
        result.rows.append(
            Row("rank round trip (vs mpi4py)", ratio(mine, theirs_mpi), INFO, 0, "us", mine,
                theirs_mpi)
        )  # fmt: skip
        mine, theirs_mpi = ours["bandwidth_Bps"] / 2**20, mpi["bandwidth_Bps"] / 2**20
        result.rows.append(
            Row("rank 64 MiB bandwidth (vs mpi4py)", ratio(mine, theirs_mpi), INFO, 0, "MiB/s",
                mine, theirs_mpi)
        )  # fmt: skip
    runner.harness(sizes.spmd_workers)  # more workers: wider gangs
    ranks = min(4, sizes.spmd_workers)
    reduce_seconds = compute_this(_allreduce, ranks=ranks).compute(8 << 20)
    starts: dict[str, float] = {}
    plain = compute_this(noop)
    plain.compute(0)
    for gang in sorted({1, 2, 4, sizes.spmd_workers}):
        timings = []
        for _ in range(max(1, sizes.repeats)):
            start = time.perf_counter()
            compute_this(_rank_of, ranks=gang).compute()
            timings.append(time.perf_counter() - start)
        starts[f"ranks={gang}"] = median(timings) * 1e3
    plain_ms = median([_timed(plain.compute, 0) for _ in range(max(1, sizes.repeats))]) * 1e3
    result.data = {
        "ours": ours,
        "raw_socket": theirs,
        "runs": runs,
        "mpi4py": mpi,
        "allreduce_8MB_s": {f"ranks={ranks}": max(reduce_seconds)},
        "gang_start_ms": starts,
        "plain_job_ms": plain_ms,
    }
    return result


def _mpi4py(trips: int, nbytes: int) -> dict[str, float] | None:
    """The exchanges between two mpi4py ranks on this host, or None without mpi4py or
    ``mpirun`` (the row is then left out)."""
    mpirun = shutil.which("mpirun")
    if mpirun is None or importlib.util.find_spec("mpi4py") is None:
        return None
    command = [mpirun, "-n", "2", "--oversubscribe", "--allow-run-as-root"]
    command += [sys.executable, "-m", "benchmarks.mpi_pingpong", str(trips), str(nbytes)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=True)
        return json.loads(done.stdout.strip().splitlines()[-1])
    except (subprocess.SubprocessError, ValueError, IndexError) as exc:
        print(f"[bench] mpi4py comparator failed: {exc}", file=sys.stderr)
        return None


def _rank_of(comm: Any) -> int:
    return comm.rank


def _timed(call: Any, *args: Any) -> float:
    start = time.perf_counter()
    call(*args)
    return time.perf_counter() - start
