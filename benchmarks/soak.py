"""Soak test: many trivial jobs through the SDK against a fresh ``computethis up``.

``python -m benchmarks.soak [--jobs 10000] [--threads 50] [--workers N] [--json PATH]``

Starts its own ``computethis up --workers N`` subprocess on a free loopback port with a
temporary save dir, then submits ``--jobs`` calls of a trivial function from
``--threads`` SDK client threads. Each thread takes the next job index, submits it and
waits for its result, timing submit -> result. The function appends its index to a
file, one line per execution, so executions are counted independently of the gateway.

Afterwards it checks, besides the results the clients got back:

* **lost**: accepted jobs (the SDK returned an id) that never finished in the gateway's
  store (``GET /api/v1/jobs``, every page);
* **duplicated**: job ids listed more than once, listed jobs no client was given (a
  retried submission stored twice), and job indexes executed more than once.

It prints those counts, p50/p99 latency, throughput, wall time and the machine, writes
them as JSON with ``--json``, stops the subprocess by pid (SIGTERM) and exits 1 if a
job was lost, duplicated or not finished. The temporary directory (save dir, gateway
log, executions file) is kept when something went wrong, removed otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import os
import platform
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import requests

import client_sdk
from benchmarks.ports import free_port
from client_sdk import compute_this

REPO = Path(__file__).resolve().parent.parent
DEFAULT_JOBS = 10_000
DEFAULT_THREADS = 50
START_TIMEOUT = 180.0  # seconds for `computethis up` to report all its workers
STOP_TIMEOUT = 60.0  # seconds to exit after SIGTERM before the process tree is killed
PROGRESS_EVERY = 10.0  # seconds between progress lines on stderr
PAGE = 1000  # the gateway's largest page of GET /jobs


@compute_this
def tick(index: int, path: str) -> int:
    """Append ``index`` to the file ``path`` (one line per execution); return ``index``.

    Uses no module globals, so it ships by value and runs anywhere.
    """
    with open(path, "a") as executions:
        executions.write(f"{index}\n")
    return index


# -- the computethis process -----------------------------------------------------------


@dataclass
class Server:
    """A ``computethis up`` subprocess and how to reach it."""

    process: subprocess.Popen
    url: str
    token: str
    log_path: Path

    @classmethod
    def start(cls, workdir: Path, workers: int) -> Server:
        """Start ``computethis up`` in ``workdir``; wait until ``workers`` are connected."""
        port = free_port()
        token = secrets.token_urlsafe(16)
        log_path = workdir / "computethis-up.log"
        pythonpath = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": pythonpath}
        command = [sys.executable, "-m", "gateway.cli", "up", "--workers", str(workers)]
        command += ["--port", str(port), "--save-dir", str(workdir / "save")]
        command.append(f"--token={token}")  # one word: a random token may start with "-"
        with open(log_path, "ab") as log:
            process = subprocess.Popen(
                command,
                cwd=workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        server = cls(process, f"http://127.0.0.1:{port}", token, log_path)
        try:
            server.wait_ready(workers)
        except BaseException:
            server.stop()
            raise
        return server

    def wait_ready(self, workers: int, timeout: float = START_TIMEOUT) -> None:
        """Wait until ``/health`` answers 200 with ``workers`` workers."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"computethis up exited early:\n{self.log_tail()}")
            with contextlib.suppress(requests.RequestException, ValueError):
                response = requests.get(f"{self.url}/api/v1/health", timeout=5)
                if response.status_code == 200 and response.json().get("workers") == workers:
                    return
            time.sleep(0.1)
        raise TimeoutError(f"computethis up not ready with {workers} workers:\n{self.log_tail()}")

    def list_jobs(self) -> list[dict[str, Any]]:
        """Every job record of ``GET /api/v1/jobs``, following the cursor page by page."""
        records: list[dict[str, Any]] = []
        params: dict[str, Any] = {"limit": PAGE}
        while True:
            response = requests.get(
                f"{self.url}/api/v1/jobs",
                params=params,
                headers={"Authorization": f"Bearer {self.token}"},
                timeout=60,
            )
            response.raise_for_status()
            body = response.json()
            records.extend(body["jobs"])
            if not body.get("next_cursor"):
                return records
            params = {"limit": PAGE, "cursor": body["next_cursor"]}

    def stop(self) -> int | None:
        """SIGTERM by pid and wait; SIGKILL the process tree (by pid) if it does not exit.

        Returns the exit code of ``computethis up`` (None if it had to be killed).
        """
        try:
            children = psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            children = []
        code: int | None = None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=STOP_TIMEOUT)
        _, alive = psutil.wait_procs(children, timeout=STOP_TIMEOUT)
        for child in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
        return code

    def log_tail(self, chars: int = 5000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]


# -- the load ----------------------------------------------------------------------------


@dataclass
class Load:
    """What the client threads saw, per job index."""

    jobs: int
    ids: dict[int, str] = field(default_factory=dict)  # accepted: index -> job id
    results: dict[int, Any] = field(default_factory=dict)
    latencies: dict[int, float] = field(default_factory=dict)  # seconds, submit -> result
    submit_errors: dict[int, str] = field(default_factory=dict)
    result_errors: dict[int, str] = field(default_factory=dict)
    wall: float = 0.0


def run_load(jobs: int, threads: int, executions: Path, timeout: float) -> Load:
    """Submit ``jobs`` ticks from ``threads`` threads, each waiting for its result in turn."""
    load = Load(jobs)
    lock = threading.Lock()
    indexes = iter(range(jobs))
    done = threading.Event()

    def client() -> None:
        while True:
            with lock:
                index = next(indexes, None)
            if index is None:
                return
            began = time.perf_counter()
            try:
                job = tick.submit(index, str(executions))
            except Exception as exc:
                with lock:
                    load.submit_errors[index] = f"{type(exc).__name__}: {exc}"
                continue
            with lock:
                load.ids[index] = job.id
            try:
                result = job.result(timeout=timeout)
            except Exception as exc:
                with lock:
                    load.result_errors[index] = f"{type(exc).__name__}: {exc}"
                continue
            elapsed = time.perf_counter() - began
            with lock:
                load.results[index] = result
                load.latencies[index] = elapsed

    def progress() -> None:
        while not done.wait(PROGRESS_EVERY):
            with lock:
                finished, failed = len(load.results), len(load.submit_errors | load.result_errors)
            rate = finished / (time.perf_counter() - began)
            print(
                f"soak: {finished}/{jobs} finished, {failed} errors, {rate:.0f} jobs/s",
                file=sys.stderr,
                flush=True,
            )

    began = time.perf_counter()
    reporter = threading.Thread(target=progress, name="soak-progress", daemon=True)
    reporter.start()
    workers = [
        threading.Thread(target=client, name=f"soak-client-{n}", daemon=True)
        for n in range(threads)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    load.wall = time.perf_counter() - began
    done.set()
    reporter.join()
    return load


# -- the figures -------------------------------------------------------------------------


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """The nearest-rank percentile of ``values`` (None if there are none)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def machine() -> dict[str, Any]:
    """Cores, RAM, Python and OS of this machine, and how busy it was."""
    return {
        "cores": os.cpu_count(),
        "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


def count_executions(path: Path) -> Counter[int]:
    """How often each job index ran (lines of the executions file)."""
    if not path.exists():
        return Counter()
    return Counter(int(line) for line in path.read_text().split())


def figures(
    load: Load,
    records: list[dict[str, Any]],
    executions: Counter[int],
    *,
    threads: int,
    workers: int,
) -> dict[str, Any]:
    """Everything the run measured and checked, as plain JSON-able values."""
    accepted = set(load.ids.values())
    listed = Counter(record["id"] for record in records)
    status = {record["id"]: record["status"] for record in records}
    finished_ids = {job_id for job_id in accepted if status.get(job_id) == "finished"}
    correct = sum(1 for index, value in load.results.items() if value == index)
    duplicated_records = sum(1 for count in listed.values() if count > 1)
    unknown_records = len(set(listed) - accepted)
    executed_twice = sum(1 for count in executions.values() if count > 1)
    latencies = list(load.latencies.values())

    def ms(value: float | None) -> float | None:
        return None if value is None else round(value * 1000, 2)

    return {
        "jobs": load.jobs,
        "threads": threads,
        "workers": workers,
        "submitted": len(load.ids),
        "submit_errors": len(load.submit_errors),
        "finished": correct,
        "wrong_results": len(load.results) - correct,
        "result_errors": len(load.result_errors),
        "recorded_finished": len(finished_ids),
        "lost": len(accepted - finished_ids),
        "duplicated": duplicated_records + unknown_records + executed_twice,
        "duplicated_records": duplicated_records,
        "unknown_records": unknown_records,
        "executed_twice": executed_twice,
        "executions": sum(executions.values()),
        "never_executed": len(set(load.ids) - set(executions)),
        "record_statuses": dict(Counter(status.values())),
        "latency_p50_ms": ms(percentile(latencies, 0.50)),
        "latency_p99_ms": ms(percentile(latencies, 0.99)),
        "latency_mean_ms": ms(sum(latencies) / len(latencies)) if latencies else None,
        "latency_max_ms": ms(max(latencies, default=None)),
        "throughput_jobs_per_s": round(correct / load.wall, 1) if load.wall else None,
        "wall_s": round(load.wall, 2),
        "errors_sample": list(
            itertools.islice(
                itertools.chain(load.submit_errors.values(), load.result_errors.values()), 5
            )
        ),
    }


def report(result: dict[str, Any]) -> str:
    """The figures as a few aligned lines of text."""
    machine_info = result["machine"]
    lines = [
        f"computethis soak: {result['jobs']} jobs from {result['threads']} threads, "
        f"{result['workers']} workers (computethis up)",
        f"  submitted    {result['submitted']}  ({result['submit_errors']} submit errors)",
        f"  finished     {result['finished']}  ({result['wrong_results']} wrong results, "
        f"{result['result_errors']} result errors, "
        f"{result['recorded_finished']} recorded finished)",
        f"  lost         {result['lost']}",
        f"  duplicated   {result['duplicated']}  (ids listed twice {result['duplicated_records']}, "
        f"listed but never accepted {result['unknown_records']}, "
        f"executed more than once {result['executed_twice']}; "
        f"{result['executions']} executions)",
        f"  latency      p50 {result['latency_p50_ms']} ms, p99 {result['latency_p99_ms']} ms, "
        f"mean {result['latency_mean_ms']} ms, max {result['latency_max_ms']} ms "
        "(submit -> result)",
        f"  throughput   {result['throughput_jobs_per_s']} jobs/s",
        f"  wall time    {result['wall_s']} s of load, {result['total_s']} s in all "
        f"(start {result['startup_s']} s)",
        f"  machine      {machine_info['cores']} cores, {machine_info['ram_gib']} GiB RAM, "
        f"{machine_info['python']}, {machine_info['platform']}; load average "
        f"{result['load_average_before']} before, {machine_info['load_average_1m']} after",
    ]
    if result["errors_sample"]:
        lines.append(f"  errors       {result['errors_sample']}")
    return "\n".join(lines)


def ok(result: dict[str, Any]) -> bool:
    """Nothing lost, nothing duplicated, every job finished with its own result."""
    return (
        result["lost"] == 0 and result["duplicated"] == 0 and result["finished"] == result["jobs"]
    )


# -- command line ------------------------------------------------------------------------


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.soak",
        description="Soak computethis: many trivial jobs from many SDK threads; "
        "check nothing is lost or duplicated.",
    )
    parser.add_argument("--jobs", type=positive, default=DEFAULT_JOBS, help="jobs to run")
    parser.add_argument(
        "--threads", type=positive, default=DEFAULT_THREADS, help="concurrent SDK client threads"
    )
    parser.add_argument(
        "--workers",
        type=positive,
        default=os.cpu_count() or 1,
        help="worker processes of computethis up (default: CPU count)",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument(
        "--timeout", type=float, default=600.0, help="seconds a client waits for one result"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the temporary directory even if all went well"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    load_before = round(os.getloadavg()[0], 2)
    workdir = Path(tempfile.mkdtemp(prefix="computethis-soak-"))
    executions_path = workdir / "executions.log"
    began = time.perf_counter()
    server = Server.start(workdir, args.workers)
    startup = time.perf_counter() - began
    try:
        client_sdk.configure(url=server.url, token=server.token)
        load = run_load(args.jobs, args.threads, executions_path, args.timeout)
        records = server.list_jobs()
    finally:
        exit_code = server.stop()
    result = figures(
        load,
        records,
        count_executions(executions_path),
        threads=args.threads,
        workers=args.workers,
    )
    result.update(
        startup_s=round(startup, 2),
        total_s=round(time.perf_counter() - began, 2),
        load_average_before=load_before,
        machine=machine(),
        server_exit_code=exit_code,
    )
    print(report(result), flush=True)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    passed = ok(result)
    if passed and not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        print(f"soak: kept {workdir} (save dir, computethis-up.log, executions.log)")
    if not passed:
        print("soak: FAILED: jobs lost, duplicated or not finished", file=sys.stderr)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
