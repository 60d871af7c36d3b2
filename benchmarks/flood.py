"""Connection floods against one gateway, and how it keeps serving everyone else.

``python -m benchmarks.flood`` starts ``computethis scheduler``, one ``computethis worker``
kept busy by a job that sleeps (every later job stays queued) and ``computethis
gateway``, and runs three phases, each for ``--seconds``:

The load opens its connections at 2,000 a second, then holds them for ``--seconds``.

1. **slowloris**: ``--slowloris`` connections from 127.0.0.2, each sending a partial
   request header and then a header line every 2 s; a connection cut is reopened 2 s
   later;
2. **idle keep-alive**: ``--idle`` connections, each after one ``GET /health``, left
   open and silent (spread over 127.0.0.3-12);
3. **long-polls**: ``--polls`` ``GET /jobs/<id>/result?wait=60`` on queued jobs, held
   open (spread over 127.0.0.13-22).

The load runs in a process of its own. Once its connections are open (a second after
its ramp), another client (127.0.0.1) asks ``/health`` every 0.1 s and submits a job
every 0.5 s, each on a new connection; the table shows their latency (p50/p99) and
errors, the load's connections and cuts, and the gateway's threads and RSS (peak).
Loopback only; bounded in time and count.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import statistics
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import dill
import requests

from benchmarks.ports import free_port
from benchmarks.processes import GatewayProcess, start_gateway, start_scheduler, start_workers

TOKEN = "flood-token"
PROBE_EVERY = 0.1  # s between /health probes
SUBMIT_EVERY = 0.5  # s between job submissions
TRICKLE_EVERY = 2.0  # s between a slowloris connection's header lines
OPEN_RATE = 2000  # connections opened per second by the load
PROBE_TIMEOUT = 30.0
ADDRESSES = 10  # addresses the idle and long-poll loads are spread over


@dataclass
class Probes:
    """Another client's requests during a phase: latencies (s) and errors."""

    health: list[float] = field(default_factory=list)
    submit: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@dataclass
class Load:
    """What the flooding client saw."""

    open: int = 0  # connections open now
    peak: int = 0
    opened: int = 0
    cut: int = 0  # closed or reset by the gateway


def ramp(count: int) -> float:
    """Seconds the load takes to open ``count`` connections."""
    return count / OPEN_RATE


def probe(gateway: GatewayProcess, stop: threading.Event, probes: Probes, after: float) -> None:
    """From ``after`` s on, ask /health every PROBE_EVERY s and submit a job every
    SUBMIT_EVERY s, each on a new connection, until ``stop``."""
    if stop.wait(after):
        return
    payload = dill.dumps((abs, (-1,), {}))
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/octet-stream"}
    next_submit = 0.0
    while not stop.is_set():
        try:
            health = requests.get(f"{gateway.url}/api/v1/health", timeout=PROBE_TIMEOUT)
            probes.health.append(health.elapsed.total_seconds())
            if health.status_code != 200:
                probes.errors.append(f"health {health.status_code}")
            if time.monotonic() >= next_submit:
                next_submit = time.monotonic() + SUBMIT_EVERY
                started = time.perf_counter()
                job = requests.post(
                    f"{gateway.url}/api/v1/jobs",
                    data=payload,
                    headers=headers,
                    timeout=PROBE_TIMEOUT,
                )
                probes.submit.append(time.perf_counter() - started)
                if job.status_code != 201:
                    probes.errors.append(f"submit {job.status_code}")
        except requests.RequestException as exc:
            probes.errors.append(type(exc).__name__)
        stop.wait(PROBE_EVERY)


async def _open(host: str, port: int, source: str, load: Load):
    reader, writer = await asyncio.open_connection(host, port, local_addr=(source, 0))
    load.opened += 1
    load.open += 1
    load.peak = max(load.peak, load.open)
    return reader, writer


def _closed(writer: asyncio.StreamWriter, load: Load) -> None:
    load.open -= 1
    with contextlib.suppress(Exception):
        writer.close()


async def slowloris(host: str, port: int, until: float, load: Load) -> None:
    """One connection that never finishes its headers; reopened when cut."""
    while time.monotonic() < until:
        try:
            reader, writer = await _open(host, port, "127.0.0.2", load)
        except OSError:
            load.cut += 1
            await asyncio.sleep(TRICKLE_EVERY)
            continue
        try:
            writer.write(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n")
            while time.monotonic() < until:
                await writer.drain()
                with contextlib.suppress(TimeoutError):
                    if not await asyncio.wait_for(reader.read(65536), TRICKLE_EVERY):
                        raise ConnectionResetError  # closed (after a 408 or a 503)
                    raise ConnectionResetError  # answered: it will close
                writer.write(b"X-Trickle: a\r\n")
        except OSError:
            load.cut += 1
        finally:
            _closed(writer, load)
        await asyncio.sleep(TRICKLE_EVERY)


async def idle(host: str, port: int, source: str, until: float, load: Load) -> None:
    """One keep-alive connection: one request, then silence."""
    try:
        reader, writer = await _open(host, port, source, load)
    except OSError:
        load.cut += 1
        return
    try:
        writer.write(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        await reader.readexactly(length)
        # Silent from here: anything more, or the end, before the phase's end is a cut.
        await asyncio.wait_for(reader.read(65536), max(0.0, until - time.monotonic()))
        load.cut += 1
    except TimeoutError:  # (an OSError too: first) still open at the end, as it should be
        pass
    except (OSError, asyncio.IncompleteReadError):
        load.cut += 1
    finally:
        _closed(writer, load)


async def long_poll(
    host: str, port: int, source: str, job_id: str, until: float, load: Load
) -> None:
    """One long-poll on a queued job, held open until the end of the phase."""
    try:
        reader, writer = await _open(host, port, source, load)
    except OSError:
        load.cut += 1
        return
    try:
        writer.write(
            f"GET /api/v1/jobs/{job_id}/result?wait=60 HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {TOKEN}\r\n\r\n".encode()
        )
        await asyncio.wait_for(reader.read(65536), max(0.0, until - time.monotonic()))
        load.cut += 1  # answered or closed before the end
    except TimeoutError:  # (an OSError too: first) still waiting at the end, as it should be
        pass
    except OSError:
        load.cut += 1
    finally:
        _closed(writer, load)


async def run_load(
    kind: str, count: int, gateway: GatewayProcess, seconds: float, jobs: list[str]
) -> Load:
    host, port = gateway.url.removeprefix("http://").split(":")
    load = Load()
    until = time.monotonic() + ramp(count) + seconds
    tasks = []
    for index in range(count):
        source = f"127.0.0.{3 + index % ADDRESSES if kind == 'idle' else 13 + index % ADDRESSES}"
        if kind == "slowloris":
            task = slowloris(host, int(port), until, load)
        elif kind == "idle":
            task = idle(host, int(port), source, until, load)
        else:
            task = long_poll(host, int(port), source, jobs[index % len(jobs)], until, load)
        tasks.append(asyncio.create_task(task))
        if index % (OPEN_RATE // 10) == 0:
            await asyncio.sleep(0.1)
    await asyncio.gather(*tasks)
    return load


def _load_process(kind: str, count: int, url: str, seconds: float, jobs: list[str]) -> Load:
    gateway = GatewayProcess(None, Path(), url=url, token=TOKEN)  # type: ignore[arg-type]
    return asyncio.run(run_load(kind, count, gateway, seconds, jobs))


def gateway_peaks(pid: int, stop: threading.Event, peaks: dict[str, int]) -> None:
    """The gateway's peak thread count and RSS, sampled every 0.2 s."""
    status = Path(f"/proc/{pid}/status")
    while not stop.wait(0.2):
        with contextlib.suppress(OSError):
            for line in status.read_text().splitlines():
                key, _, value = line.partition(":")
                if key in ("Threads", "VmRSS"):
                    number = int(value.split()[0])
                    peaks[key] = max(peaks.get(key, 0), number)


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else float("nan")


def phase(kind: str, count: int, gateway: GatewayProcess, seconds: float, jobs: list[str]) -> dict:
    """Run one phase with the other client's probes beside it; its figures."""
    probes, peaks, stop = Probes(), {}, threading.Event()
    threads = [
        threading.Thread(target=probe, args=(gateway, stop, probes, ramp(count) + 1.0)),
        threading.Thread(target=gateway_peaks, args=(gateway.pid, stop, peaks)),
    ]
    for thread in threads:
        thread.start()
    try:  # the load in a process of its own: the probes' timings are not its GIL's
        with concurrent.futures.ProcessPoolExecutor(1) as pool:
            load = pool.submit(_load_process, kind, count, gateway.url, seconds, jobs).result()
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    return {
        "phase": kind,
        "connections": count,
        "peak_open": load.peak,
        "opened": load.opened,
        "cut": load.cut,
        "health_p50_ms": 1000 * statistics.median(probes.health) if probes.health else None,
        "health_p99_ms": 1000 * percentile(probes.health, 0.99),
        "submit_p50_ms": 1000 * statistics.median(probes.submit) if probes.submit else None,
        "submit_p99_ms": 1000 * percentile(probes.submit, 0.99),
        "probes": len(probes.health) + len(probes.submit),
        "errors": len(probes.errors),
        "error_kinds": sorted(set(probes.errors)),
        "gateway_threads_peak": peaks.get("Threads"),
        "gateway_rss_peak_mib": round(peaks.get("VmRSS", 0) / 1024, 1),
    }


def submit_jobs(gateway: GatewayProcess, count: int, payload: bytes) -> list[str]:
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/octet-stream"}
    with requests.Session() as session:
        return [
            session.post(
                f"{gateway.url}/api/v1/jobs", data=payload, headers=headers, timeout=30
            ).json()["id"]
            for _ in range(count)
        ]


def report(rows: list[dict]) -> str:
    head = (
        f"{'phase':<10} {'conns':>6} {'peak open':>9} {'cut':>6} {'health p50/p99 ms':>18} "
        f"{'submit p50/p99 ms':>18} {'errors':>6} {'threads':>7} {'RSS MiB':>8}"
    )
    lines = [head]
    for row in rows:
        lines.append(
            f"{row['phase']:<10} {row['connections']:>6} {row['peak_open']:>9} {row['cut']:>6} "
            f"{row['health_p50_ms']:>8.1f}/{row['health_p99_ms']:<9.1f} "
            f"{row['submit_p50_ms']:>8.1f}/{row['submit_p99_ms']:<9.1f} {row['errors']:>6} "
            f"{row['gateway_threads_peak']:>7} {row['gateway_rss_peak_mib']:>8}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slowloris", type=int, default=10_000)
    parser.add_argument("--idle", type=int, default=5_000)
    parser.add_argument("--polls", type=int, default=5_000)
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each phase")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="computethis-flood-") as workdir:
        work = Path(workdir)
        scheduler_port = free_port()
        scheduler = start_scheduler(scheduler_port, work / "scheduler.log")
        gateway = start_gateway(
            f"tcp://127.0.0.1:{scheduler_port}",
            work / "save",
            work / "gateway.log",
            token=TOKEN,
            max_body=1 << 20,
        )
        workers = start_workers(f"tcp://127.0.0.1:{scheduler_port}", 1, work / "worker.log")
        try:
            gateway.wait_ready(workers=1)
            submit_jobs(gateway, 1, dill.dumps((time.sleep, (3600,), {})))  # the worker's
            jobs = submit_jobs(gateway, 50, dill.dumps((abs, (-1,), {})))  # queued behind it
            rows = [
                phase("slowloris", args.slowloris, gateway, args.seconds, jobs),
                phase("idle", args.idle, gateway, args.seconds, jobs),
                phase("long-poll", args.polls, gateway, args.seconds, jobs),
            ]
        finally:
            gateway.stop()
            workers.stop()
            scheduler.stop()
    print(report(rows))
    for row in rows:
        if row["error_kinds"]:
            print(f"{row['phase']}: errors {row['error_kinds']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
