"""computethis across hosts (Linux network namespaces): no accepted job is lost when a
worker host dies or is cut off, when the gateway host dies, or when the scheduler host dies.

Each test gets a fresh cluster from :mod:`tests.netns`: a scheduler host, two worker
hosts with two single-threaded workers each, and a gateway host, running the same
``computethis`` subcommands as docker-compose.yml. The fault tests run JOBS naps from
CLIENTS SDK threads and inject one fault mid-load; every nap notes its start and finish
in shared files, which count executions. Needs root and iproute2 (as in CI); skipped
otherwise.
"""

from __future__ import annotations

import contextlib
import random
import re
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

import client_sdk
from client_sdk import Job, compute_this
from tests import netns
from tests.netns import Cluster, NetnsUnavailable, computethis_cluster

REASON = netns.unavailable_reason()
if REASON:
    pytest.skip(f"multi-host tests need network namespaces: {REASON}", allow_module_level=True)

# How fast the scheduler gives up on a silently cut-off worker host. Dask's defaults
# notice it after ~30 s: the TCP keepalive / user timeout of the scheduler's stream to
# the worker (distributed.comm.timeouts.tcp, 30 s) fires long before the heartbeat TTL
# (distributed.scheduler.worker-ttl, 5 minutes). A 10 s TTL alone does not help: the
# TTL check then asks the unreachable nanny to restart its worker and only removes the
# worker when that connection attempt times out (distributed.comm.timeouts.connect,
# 30 s). With both below, the host is removed 15-21 s after the cut.
SCHEDULER_ENV = {
    "DASK_DISTRIBUTED__SCHEDULER__WORKER_TTL": "10s",
    "DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "5s",
}

JOBS = 500
CLIENTS = 20
FAULT_AFTER = 100  # finished executions before the fault is injected
RESULT_TIMEOUT = 240.0


@compute_this
def nap(index: int, seconds: float, log_dir: str) -> int:
    """Sleep, noting each start and finish in shared files; return ``index``.

    Uses no module globals: pickling from many threads at once can drop a function's
    globals (dill's global detection swaps ``sys.stdout`` process-wide, not thread-safe).
    """
    import os
    import time

    def note(name: str) -> None:
        with open(os.path.join(log_dir, name), "a") as log:
            log.write(f"{index}\n")

    note("started.log")
    time.sleep(seconds)
    note("finished.log")
    return index


@pytest.fixture
def network(tmp_path: Path) -> Iterator[Cluster]:
    """A fresh, started four-host cluster; the SDK points at its gateway.

    ``network.url`` / ``network.token`` / ``network.api(path)`` / ``network.headers()``
    reach the gateway; ``network.network[name]`` is a :class:`tests.netns.Host`.
    """
    with contextlib.ExitStack() as stack:
        try:
            cluster = stack.enter_context(
                computethis_cluster(tmp_path, scheduler_env=SCHEDULER_ENV)
            )
        except NetnsUnavailable as exc:
            pytest.skip(f"cannot build the test network: {exc}")
        previous = client_sdk.set_default_client(None)
        client_sdk.configure(url=cluster.url, token=cluster.token)
        try:
            yield cluster
        finally:
            client_sdk.set_default_client(previous)


def host_of(worker_address: str | None) -> str | None:
    """``10.254.77.11`` from ``tcp://10.254.77.11:40123``."""
    if not worker_address:
        return None
    return worker_address.removeprefix("tcp://").rpartition(":")[0]


def all_records(cluster: Cluster) -> list[dict]:
    """Every job record the gateway lists, following the cursor."""
    records: list[dict] = []
    cursor = None
    while True:
        params: dict[str, object] = {"limit": 1000}
        if cursor:
            params["cursor"] = cursor
        response = cluster.get("/jobs", **params)
        assert response.status_code == 200, response.text
        body = response.json()
        records.extend(body["jobs"])
        cursor = body["next_cursor"]
        if not cursor:
            return records


def show(text: str) -> None:
    """Print to the real stdout (visible with ``-s``).

    Concurrent SDK submissions can leave ``sys.stdout`` replaced by dill's capture buffer.
    """
    print(f"\n{text}", file=sys.__stdout__, flush=True)


def lines(path: Path) -> Counter[int]:
    """How often each index was written to ``path``."""
    if not path.exists():
        return Counter()
    return Counter(int(line) for line in path.read_text().split())


def test_four_hosts_run_jobs_on_both_worker_hosts(network: Cluster, tmp_path: Path):
    health = network.health()
    assert health == {"status": "ok", "scheduler": network.scheduler_address, "workers": 4}
    workers = network.get("/workers").json()["workers"]
    assert sorted(w["name"] for w in workers) == [
        "worker1-0",
        "worker1-1",
        "worker2-0",
        "worker2-1",
    ]
    assert {host_of(w["address"]) for w in workers} == {h.ip for h in network.worker_hosts}

    # `ip netns exec` execs: the started process is the Python process itself.
    for host in network.network.hosts.values():
        (process,) = host.processes
        cmdline = psutil.Process(process.pid).cmdline()
        assert cmdline[1:3] == ["-m", "gateway.cli"], cmdline

    jobs = [nap.submit(i, 0.3, str(tmp_path)) for i in range(16)]
    assert [job.result(timeout=60) for job in jobs] == list(range(16))
    ran_on = {host_of(job.info()["worker"]) for job in jobs}
    assert ran_on == {h.ip for h in network.worker_hosts}, ran_on


def client_failures(clients: list[Future]) -> list[str]:
    """The exceptions of the client threads that failed, explained where we know why."""
    failures = []
    for client in clients:
        exc = client.exception() if client.done() else None
        if exc is not None:
            failures.append(f"{type(exc).__name__}: {exc}")
    return failures


# When to inject the fault: called with the seconds since the first submission and
# the number of executions finished so far.
Trigger = Callable[[float, int], bool]


def after_finished(count: int) -> Trigger:
    """Fire once ``count`` executions have finished."""
    return lambda elapsed, finished: finished >= count


def after_seconds(seconds: float) -> Trigger:
    """Fire ``seconds`` after the first submission."""
    return lambda elapsed, finished: elapsed >= seconds


@dataclass
class LoadReport:
    """What happened to one load run with a fault in the middle."""

    fault_at: float  # seconds after the first submission
    finished_at_fault: int  # executions finished when the fault was injected
    awaited_workers: int | None  # worker count watched for after the fault
    workers_seen_after: float | None  # seconds from the fault until the gateway saw them
    duration: float
    started: Counter[int]
    finished: Counter[int]
    records: list[dict]

    @property
    def reexecuted(self) -> list[int]:
        """Indexes of the jobs whose function started more than once."""
        return sorted(i for i, n in self.started.items() if n > 1)

    def summary(self) -> str:
        refinished = sorted(i for i, n in self.finished.items() if n > 1)
        attempts = Counter(r["attempts"] for r in self.records)
        seen = ""
        if self.awaited_workers is not None:
            seen = (
                f"gateway saw {self.awaited_workers} workers {self.workers_seen_after}s after it, "
            )
        return (
            f"fault at {self.fault_at:.1f}s ({self.finished_at_fault}/{JOBS} finished), "
            f"{seen}all done at {self.duration:.1f}s; "
            f"{len(self.reexecuted)} jobs started more than once {self.reexecuted}, "
            f"{len(refinished)} finished more than once {refinished}; "
            f"attempts {dict(sorted(attempts.items()))}"
        )


def run_with_fault(
    cluster: Cluster,
    log_dir: Path,
    fault: Callable[[], None],
    *,
    trigger: Trigger | None = None,
    await_workers: int | None = 2,
) -> LoadReport:
    """Run JOBS naps from CLIENTS threads; call ``fault`` once when ``trigger`` fires
    (default: once FAULT_AFTER executions have finished).

    After the fault, also waits (until every job is done) for the gateway to report
    ``await_workers`` workers, and notes when it did; None skips that. Checks that every
    job returns its own index, that each ran at least once and that the gateway holds
    exactly one finished record per job.
    """
    trigger = trigger or after_finished(FAULT_AFTER)
    rng = random.Random(JOBS)
    seconds = [rng.uniform(0.02, 0.08) for _ in range(JOBS)]
    jobs: dict[int, Job] = {}
    results: dict[int, object] = {}
    lock = threading.Lock()

    def client(number: int) -> None:
        mine = [(i, nap.submit(i, seconds[i], str(log_dir))) for i in range(number, JOBS, CLIENTS)]
        with lock:
            jobs.update(mine)
        for index, job in mine:
            # A reply cut off by the fault (even after its headers) is retried by the
            # SDK itself: any exception here fails the test.
            result = job.result(timeout=RESULT_TIMEOUT)
            with lock:
                results[index] = result

    begin = time.monotonic()
    with ThreadPoolExecutor(CLIENTS, thread_name_prefix="client") as pool:
        clients = [pool.submit(client, number) for number in range(CLIENTS)]
        while True:
            finished_now = sum(lines(log_dir / "finished.log").values())
            if trigger(time.monotonic() - begin, finished_now):
                break
            failures = client_failures(clients)
            assert not failures, failures
            assert time.monotonic() - begin < 120, "jobs do not run\n" + cluster.logs()
            time.sleep(0.02)
        fault_at = time.monotonic()
        fault()
        workers_seen_after = None
        while not all(c.done() for c in clients) or (
            await_workers is not None and workers_seen_after is None
        ):
            if await_workers is not None and workers_seen_after is None:
                health = cluster.health() or {}
                if health.get("workers") == await_workers:
                    workers_seen_after = round(time.monotonic() - fault_at, 1)
            if any(c.done() and c.exception() for c in clients):
                break  # c.result() below raises it
            if time.monotonic() - fault_at > RESULT_TIMEOUT + 30:
                break
            time.sleep(0.1)
        failures = client_failures(clients)
        assert not failures, failures
        for c in clients:
            c.result()
    duration = time.monotonic() - begin

    assert len(jobs) == JOBS
    assert results == {i: i for i in range(JOBS)}
    records = all_records(cluster)
    ids = Counter(r["id"] for r in records)
    assert len(records) == JOBS and set(ids) == {job.id for job in jobs.values()}, ids
    assert max(ids.values()) == 1
    assert Counter(r["status"] for r in records) == {"finished": JOBS}
    finished_jobs = cluster.get("/jobs", status="finished", limit=1000).json()["jobs"]
    assert len(finished_jobs) == JOBS

    started, finished = lines(log_dir / "started.log"), lines(log_dir / "finished.log")
    assert set(finished) == set(range(JOBS))
    assert set(started) == set(range(JOBS))
    return LoadReport(
        fault_at=round(fault_at - begin, 1),
        finished_at_fault=finished_now,
        awaited_workers=await_workers,
        workers_seen_after=workers_seen_after,
        duration=duration,
        started=started,
        finished=finished,
        records=records,
    )


def test_no_job_lost_when_a_worker_host_is_killed(network: Cluster, tmp_path: Path):
    worker1 = network.network["worker1"]
    report = run_with_fault(network, tmp_path, worker1.kill_processes)
    show(f"worker host killed: {report.summary()}")
    assert report.workers_seen_after is not None
    hosts = Counter(host_of(r["worker"]) for r in report.records)
    assert hosts[worker1.ip] > 0, hosts  # the killed host did run jobs before it died
    assert worker1.pids() == set()

    network.start_workers(worker1)  # the host reboots and rejoins
    network.wait_for_workers(4)


def test_no_job_lost_when_a_worker_host_is_cut_off(network: Cluster, tmp_path: Path):
    worker1 = network.network["worker1"]
    try:
        report = run_with_fault(network, tmp_path, worker1.cut)
    finally:
        worker1.restore()
    show(f"worker host cut off: {report.summary()}")
    assert report.workers_seen_after is not None
    hosts = Counter(host_of(r["worker"]) for r in report.records)
    assert hosts[worker1.ip] > 0, hosts

    # Dask workers do not reconnect: once its scheduler connection times out, the cut
    # host's `computethis worker` exits on its own. Restarting it brings the host back.
    worker1.kill_processes()
    network.start_workers(worker1)
    network.wait_for_workers(4)


def wait_for_health(
    cluster: Cluster, status: int, timeout: float = 30
) -> tuple[float, dict[str, object]]:
    """Wait until the gateway's /health answers ``status``; return the wait and the body."""
    began = time.monotonic()
    last = None
    while time.monotonic() - began < timeout:
        last = cluster.health_response()
        if last is not None and last[0] == status:
            return round(time.monotonic() - began, 1), last[1]
        time.sleep(0.1)
    raise AssertionError(f"/health never answered {status} in {timeout}s (last: {last})")


RECONCILED = re.compile(r"reconciled: (\d+) jobs re-attached, (\d+) resubmitted")


def test_no_job_reexecuted_when_the_gateway_host_is_killed(network: Cluster, tmp_path: Path):
    """The gateway host dies 1-3 s into the load and comes back on the same save dir.

    The scheduler and workers stay up and the scheduler plugin keeps every task alive, so
    the restarted gateway re-attaches them: nothing may run twice.
    """
    gateway = network.gateway
    log_path = network.log_path(gateway)
    kill_after = round(random.uniform(1.0, 3.0), 2)
    outage: dict[str, Any] = {}

    def kill_and_restart_gateway() -> None:
        outage["log_offset"] = log_path.stat().st_size
        killed = time.monotonic()
        assert gateway.kill_processes(signal.SIGKILL) == [-signal.SIGKILL]
        assert gateway.pids() == set()
        network.start_gateway()  # same host, port and save dir
        wait_for_health(network, 200, timeout=60)
        outage["down_for"] = round(time.monotonic() - killed, 1)

    report = run_with_fault(
        network,
        tmp_path,
        kill_and_restart_gateway,
        trigger=after_seconds(kill_after),
        await_workers=None,
    )
    restarted_log = log_path.read_text(errors="replace")[int(outage["log_offset"]) :]
    reconciled = RECONCILED.findall(restarted_log)
    show(
        f"gateway host killed {kill_after}s into the load, healthy again "
        f"{outage['down_for']}s after; reconciled (re-attached, resubmitted): {reconciled}; "
        f"{report.summary()}"
    )
    assert report.finished_at_fault < JOBS  # killed mid-load
    assert "reconciled" in restarted_log, restarted_log
    # Once, on connecting: a later sweep finding outcomes means their events were missed
    # (those callers then waited up to 30 s for a result already there).
    assert len(reconciled) == 1, restarted_log[-4000:]
    assert not report.reexecuted, f"re-executed while the cluster stayed up: {report.summary()}"
    assert max(report.finished.values()) == 1


def test_no_job_lost_when_the_scheduler_host_is_killed(network: Cluster, tmp_path: Path):
    """The scheduler host dies mid-load and comes back at the same address.

    Nobody restarts the gateway or the workers: the gateway answers 503 "degraded" while
    the scheduler is gone and reconnects by itself, the workers' supervisors reconnect
    their nannies, and the gateway resubmits what the new scheduler does not know. Jobs
    caught running may run again (at-least-once), but each is recorded once.
    """
    scheduler = network.scheduler
    others = [network.gateway, *network.worker_hosts]
    survivors = {host.name: list(host.processes) for host in others}
    outage: dict[str, Any] = {}

    def kill_and_restart_scheduler() -> None:
        assert scheduler.kill_processes(signal.SIGKILL) == [-signal.SIGKILL]
        assert scheduler.pids() == set()
        outage["degraded_after"], outage["health"] = wait_for_health(network, 503)
        network.start_scheduler()  # same host and port

    report = run_with_fault(network, tmp_path, kill_and_restart_scheduler, await_workers=4)
    worker_log = "".join(host.log_text() for host in network.worker_hosts)
    reconnects = worker_log.count("lost the scheduler; reconnecting")
    show(
        f"scheduler host killed: /health answered 503 {outage['health']} "
        f"{outage['degraded_after']}s after; {reconnects} worker reconnects; "
        f"{len(report.reexecuted)} jobs re-executed; {report.summary()}"
    )
    assert outage["health"]["status"] == "degraded", outage
    assert report.workers_seen_after is not None
    for host in others:  # the same processes, never restarted, still running
        assert host.processes == survivors[host.name]
        assert all(process.poll() is None for process in host.processes), host
    health = network.health()
    assert health == {"status": "ok", "scheduler": network.scheduler_address, "workers": 4}


def test_spmd_ranks_and_programs_span_both_worker_hosts(network: Cluster, tmp_path: Path):
    @compute_this(ranks=4)
    def spread(comm):
        import os

        from distributed import get_worker

        local, master = os.environ["LOCAL_RANK"], os.environ["MASTER_ADDR"]
        return get_worker().address, int(local), master, comm.allreduce(comm.rank)

    seen = spread.compute()
    hosts = [host_of(address) for address, *_ in seen]
    assert set(hosts) == {host.ip for host in network.worker_hosts}  # across the hosts
    for rank, (_, local, master, total) in enumerate(seen):
        assert total == 0 + 1 + 2 + 3
        assert master == hosts[0]  # rank 0's host
        assert local == hosts[:rank].count(hosts[rank])  # its index among its host's ranks
    program = tmp_path / "program"  # (tmp_path also holds the cluster's files)
    program.mkdir()
    (program / "main.py").write_text(
        "import os\n"
        "from client_sdk import spmd\n"
        "comm = spmd.world()\n"
        "total = comm.allreduce(comm.rank)\n"
        "print(comm.rank, os.environ['LOCAL_RANK'], os.environ['MASTER_ADDR'], total)\n"
    )
    result = client_sdk.run_folder(program, ranks=4).result(timeout=120)
    lines = [line.split() for line in result.stdout.splitlines() if not line.startswith("[")]
    assert [int(rank) for rank, *_ in lines] == [0, 1, 2, 3]
    assert {total for *_, total in lines} == {"6"}
    assert {local for _, local, *_ in lines} == {"0", "1"}  # two ranks on each host
    masters = {master for _, _, master, _ in lines}
    assert len(masters) == 1 and masters <= {host.ip for host in network.worker_hosts}
