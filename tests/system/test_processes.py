"""Real `computethis` processes: restarts keep results, signals stop everything, and the
scheduler / worker / gateway subcommands work as separate processes."""

from __future__ import annotations

import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import dask
import psutil
import pytest
import requests

import client_sdk
from client_sdk import Job, compute_this
from tests.stack import (
    COMPUTETHIS,
    REPO,
    free_port,
    start_process,
    start_stack,
    stop_processes,
    wait_healthy,
)
from worker.main import (
    HUGE_PAGES_TUNABLE,
    PRE_SPAWN_ENVIRON,
    PRELOAD,
    PRELOAD_ARGV,
    WORKER_PRELOAD,
    huge_page_environ,
    preload_worker_setup,
    prepare_worker_processes,
)


@compute_this
def cube(x):
    return x**3


@compute_this
def worker_environ(name):
    import os

    return os.environ.get(name, "")


@compute_this
def worker_preloads():
    from distributed import get_worker

    return [preload.name for preload in get_worker().preloads]


@compute_this
def stream_intervals():
    """Seconds between batched sends: this worker's stream to the scheduler, and the
    scheduler's streams to its workers and clients."""
    from distributed import get_worker

    worker = get_worker()

    def scheduler_side(dask_scheduler):
        streams = [*dask_scheduler.stream_comms.values(), *dask_scheduler.client_comms.values()]
        return sorted({stream.interval for stream in streams})

    return worker.batched_stream.interval, worker.client.run_on_scheduler(scheduler_side)


@compute_this
def worker_periodic_work():
    """The worker's periodic callbacks, and its event-loop tick interval in seconds."""
    from distributed import get_worker

    worker = get_worker()
    return sorted(worker.periodic_callbacks), worker._tick_interval


@compute_this
def nap_then_cube(x, seconds):
    import time

    time.sleep(seconds)
    return x**3


@compute_this
def big_bytes(size):
    return b"x" * size


@pytest.fixture
def point_sdk():
    """``point_sdk(url, token)`` points the SDK's default client at a gateway; the
    default before the test is put back after it."""
    previous = client_sdk.set_default_client(None)

    def point(stack_url: str, token: str) -> None:
        client_sdk.configure(url=stack_url, token=token)

    yield point
    client_sdk.set_default_client(previous)


def test_results_and_unfinished_jobs_survive_a_restart(tmp_path: Path, point_sdk):
    save_dir = tmp_path / "save"
    first = start_stack(save_dir, workers=1)
    try:
        point_sdk(first.url, first.token)
        finished = cube.submit(3)
        assert finished.result(timeout=60) == 27
        assert "glibc.malloc.hugetlb=1" in worker_environ.compute("GLIBC_TUNABLES")
        assert WORKER_PRELOAD in worker_preloads.compute()
        assert "profile" not in worker_periodic_work.compute()[0]
        blocker = nap_then_cube.submit(1, 600)  # occupies the only worker
        unfinished = cube.submit(4)  # still queued when the gateway stops
        time.sleep(0.5)
        assert unfinished.status() == "queued"
    finally:
        assert first.stop(signal.SIGTERM) == 0
    # The blocker's worker process closed by itself: its job was not waited for.
    assert "still alive after" not in first.log(), first.log()[-4000:]

    second = start_stack(save_dir, workers=1, port=free_port())
    try:
        point_sdk(second.url, second.token)
        assert Job.from_id(finished.id).result(timeout=10) == 27
        # Resubmitted after the restart: its cancel must restart the worker that runs it
        # now, not the one its record still names until the new start is recorded.
        assert blocker.cancel() == "cancelled"
        assert Job.from_id(unfinished.id).result(timeout=120) == 64
    finally:
        assert second.stop(signal.SIGINT) == 0


def test_a_worker_restarted_twice_within_seconds_comes_back(tmp_path: Path, point_sdk):
    """A LocalCluster closes a nanny whose worker is absent 15 s after it first left;
    `computethis up` must not: each cancel restarts the worker, and the second restart
    here spans that mark."""
    stack = start_stack(tmp_path / "save", workers=1)
    try:
        point_sdk(stack.url, stack.token)
        first_left = time.monotonic()
        cancel_running(nap_then_cube.submit(1, 600))
        stack.wait_for_workers(1, steady=0.5)
        time.sleep(max(0.0, first_left + 12.5 - time.monotonic()))
        cancel_running(nap_then_cube.submit(2, 600))  # gone from ~12.5 s to ~17 s
        time.sleep(max(0.0, first_left + 20 - time.monotonic()))
        stack.wait_for_workers(1, timeout=30, steady=0.5)
        assert cube.compute(2) == 8
    finally:
        assert stack.stop() == 0


def cancel_running(job: Job) -> None:
    deadline = time.monotonic() + 30
    while job.status() != "running":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert job.cancel() == "cancelled"


def test_sigterm_stops_everything_without_orphans(tmp_path: Path):
    stack = start_stack(tmp_path / "save", workers=2)
    assert stack.stop(signal.SIGTERM) == 0  # stop() asserts every child process exited
    assert stack.children, "expected worker processes to have been running"
    assert "stopping gateway" in stack.log()


def test_a_stop_answers_the_long_polls_in_flight_at_once(tmp_path: Path, point_sdk):
    """Requests waiting for a job are answered when the gateway stops (a result poll
    with 202, an outcome stream ended without the job), so it stops in seconds rather
    than when their waits run out; the clients then ask again. A download whose client
    stopped reading is cut (it held the stop for the 120 s idle timeout)."""
    stack = start_stack(tmp_path / "save", workers=1)
    stalled = socket.socket()
    try:
        point_sdk(stack.url, stack.token)
        big = big_bytes.submit(32 << 20)
        assert len(big.result(timeout=120)) == 32 << 20
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.connect(("127.0.0.1", int(stack.url.rsplit(":", 1)[1])))
        request = f"GET /api/v1/jobs/{big.id}/result HTTP/1.1\r\nHost: gateway\r\n"
        request += f"Authorization: Bearer {stack.token}\r\n\r\n"
        stalled.sendall(request.encode())
        assert stalled.recv(4096).startswith(b"HTTP/1.1 200"), "the download did not start"
        job = nap_then_cube.submit(2, 120)
        answers: dict[str, requests.Response] = {}

        def wait_for(name: str, method: str, path: str, **kwargs) -> None:
            answers[name] = requests.request(
                method, stack.api(path), headers=stack.headers(), timeout=200, **kwargs
            )

        waiting = [
            threading.Thread(
                target=wait_for, args=("poll", "GET", f"/jobs/{job.id}/result?wait=300")
            ),
            threading.Thread(
                target=wait_for,
                args=("stream", "POST", "/results?wait=300"),
                kwargs={"json": {"jobs": [job.id]}},
            ),
        ]
        for thread in waiting:
            thread.start()
        time.sleep(1.0)  # both requests are waiting
        assert not answers
    finally:
        started = time.monotonic()
        assert stack.stop(signal.SIGTERM) == 0
        stopped_in = time.monotonic() - started
        stalled.close()
    for thread in waiting:
        thread.join(timeout=30)
    assert stopped_in < 30, f"the stop took {stopped_in:.1f} s:\n{stack.log()[-2000:]}"
    assert answers["poll"].status_code == 202
    assert answers["poll"].json()["status"] == "running"
    assert answers["stream"].status_code == 200
    assert answers["stream"].content == b"", "a frame for a job that is not done"


def test_a_second_ctrl_c_while_stopping_exits_at_once(tmp_path: Path):
    stack = start_stack(tmp_path / "save", workers=1)
    stack.process.send_signal(signal.SIGINT)
    time.sleep(0.05)
    # stop() sends the second one and checks that no child is left: the cluster's
    # process saw its parent go and closed the workers.
    assert stack.stop(signal.SIGINT) == 128 + signal.SIGINT
    assert "Ctrl+C again while stopping: exiting now" in stack.log()


def test_killed_up_leaves_no_cluster_behind(tmp_path: Path):
    """SIGKILL gives `computethis up` no chance to clean up: its cluster process notices
    and closes the scheduler and the workers itself."""
    stack = start_stack(tmp_path / "save", workers=2)
    descendants = psutil.Process(stack.process.pid).children(recursive=True)
    assert len(descendants) >= 3, "expected the cluster process and two workers"
    stack.process.kill()
    stack.process.wait(timeout=10)
    _, alive = psutil.wait_procs(descendants, timeout=60)
    for process in alive:
        process.kill()
    assert not alive, f"left behind after SIGKILL: {[p.pid for p in alive]}"


def _start(args: list[str], log: Path):
    return start_process([*COMPUTETHIS, *args], log)


def test_separate_scheduler_worker_and_gateway_processes(tmp_path: Path, point_sdk):
    scheduler_port, http_port = free_port(), free_port()
    scheduler_address = f"tcp://127.0.0.1:{scheduler_port}"
    url = f"http://127.0.0.1:{http_port}"
    processes = []
    try:
        # The gateway comes up first: degraded, but it accepts and stores jobs.
        gateway_log = tmp_path / "gateway.log"
        gateway = _start(
            [
                "gateway",
                "--scheduler",
                scheduler_address,
                "--port",
                str(http_port),
                "--save-dir",
                str(tmp_path / "save"),
                "--token",
                "sep-token",
            ],
            gateway_log,
        )
        processes.append(gateway)
        deadline = time.monotonic() + 30
        while True:
            try:
                health = requests.get(f"{url}/api/v1/health", timeout=2)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, gateway_log.read_text()
                time.sleep(0.1)
        assert health.status_code == 503 and health.json()["status"] == "degraded"
        point_sdk(url, "sep-token")
        early = cube.submit(5)
        assert early.status() == "queued"

        processes.append(
            _start(
                ["scheduler", "--host", "127.0.0.1", "--port", str(scheduler_port)],
                tmp_path / "scheduler.log",
            )
        )
        processes.append(
            _start(
                ["worker", scheduler_address, "--nworkers", "2", "--name", "box"],
                tmp_path / "worker.log",
            )
        )
        wait_healthy(url, gateway, gateway_log, timeout=90)
        assert early.result(timeout=60) == 125
        # Worker processes start with glibc's huge-page tunable (Dask's pre-spawn-environ).
        assert "glibc.malloc.hugetlb=1" in worker_environ.compute("GLIBC_TUNABLES")
        # ... and import the job runner as they start, not when their first job arrives.
        assert WORKER_PRELOAD in worker_preloads.compute()
        # ... without Dask's 10 ms stack profiler (no dashboard), with a 100 ms tick.
        callbacks, tick = worker_periodic_work.compute()
        assert "profile" not in callbacks and "heartbeat" in callbacks
        assert tick == 0.1
        # Dask's batched streams send at once (scheduler.config.send_interval), on the
        # worker and on the scheduler, whose plugin the gateway registered.
        assert stream_intervals.compute() == (0, [0])
        assert cube.map(range(6)) == [x**3 for x in range(6)]
        # Healthy means one worker or more; the second may register a moment later.
        deadline = time.monotonic() + 30
        while True:
            workers = requests.get(
                f"{url}/api/v1/workers", headers={"Authorization": "Bearer sep-token"}, timeout=10
            ).json()["workers"]
            if len(workers) == 2 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert sorted(w["name"] for w in workers) == ["box-0", "box-1"]
    finally:
        stop_processes(processes)


@pytest.mark.parametrize(
    ("command", "what"),
    [
        (["scheduler"], "scheduler"),
        (["gateway", "--scheduler", "tcp://127.0.0.1:1"], "gateway"),
        (["up", "--workers", "1"], "gateway"),
    ],
    ids=["scheduler", "gateway", "up"],
)
def test_a_taken_port_stops_the_command_with_a_message(
    tmp_path: Path, command: list[str], what: str
):
    """A port another process listens on: the command exits 1 and says so in one line,
    with what to do; no traceback (``up`` stops the cluster it had started)."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        args = [*command, "--host", "127.0.0.1", "--port", str(port)]
        if command[0] != "scheduler":
            args += ["--save-dir", str(tmp_path / "save")]
        done = subprocess.run(
            [*COMPUTETHIS, *args], cwd=REPO, capture_output=True, text=True, timeout=120
        )
    assert done.returncode == 1, done.stdout + done.stderr
    message = done.stderr.strip().splitlines()[-1]
    assert message.startswith(f"computethis {command[0]}: cannot "), done.stderr
    assert f"127.0.0.1:{port}" in message and "already in use" in message, message
    assert f"another {'scheduler' if what == 'scheduler' else 'computethis gateway'}" in message
    assert "--port" in message and "Traceback" not in done.stderr, done.stderr


def test_huge_page_tunable_keeps_what_the_user_set(monkeypatch):
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    with dask.config.set({PRE_SPAWN_ENVIRON: {"MALLOC_TRIM_THRESHOLD_": 65536}}):
        huge_page_environ()
        environ = dask.config.get(PRE_SPAWN_ENVIRON)
        assert environ == {"MALLOC_TRIM_THRESHOLD_": 65536, "GLIBC_TUNABLES": HUGE_PAGES_TUNABLE}
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.arena_max=2")
    with dask.config.set({PRE_SPAWN_ENVIRON: {}}):
        huge_page_environ()
        assert dask.config.get(PRE_SPAWN_ENVIRON)["GLIBC_TUNABLES"] == (
            f"glibc.malloc.arena_max=2:{HUGE_PAGES_TUNABLE}"
        )
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.hugetlb=0")
    with dask.config.set({PRE_SPAWN_ENVIRON: {}}):
        huge_page_environ()
        assert "GLIBC_TUNABLES" not in dask.config.get(PRE_SPAWN_ENVIRON)


def test_job_runner_preload_keeps_what_the_user_set():
    with dask.config.set({PRELOAD: "my_setup", PRELOAD_ARGV: []}):
        preload_worker_setup()
        assert dask.config.get(PRELOAD) == ["my_setup", WORKER_PRELOAD]
        assert dask.config.get(PRELOAD_ARGV) == []
        preload_worker_setup()  # not twice
        assert dask.config.get(PRELOAD) == ["my_setup", WORKER_PRELOAD]
    # One argv per preload: Dask refuses lists of different lengths.
    with dask.config.set({PRELOAD: ["a", "b"], PRELOAD_ARGV: [["--x"], []]}):
        preload_worker_setup()
        assert dask.config.get(PRELOAD) == ["a", "b", WORKER_PRELOAD]
        assert dask.config.get(PRELOAD_ARGV) == [["--x"], [], []]


def test_worker_settings_yield_to_dask_environment_variables(monkeypatch):
    monkeypatch.setenv("DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED", "True")
    touched = {
        "distributed.worker.profile.enabled": True,
        "distributed.admin.tick.interval": "20ms",
        PRELOAD: [],
        PRELOAD_ARGV: [],
        PRE_SPAWN_ENVIRON: {},
    }
    with dask.config.set(touched):  # restored afterwards, for the tests that follow
        prepare_worker_processes()
        assert dask.config.get("distributed.worker.profile.enabled") is True
        assert dask.config.get("distributed.admin.tick.interval") == "100ms"
