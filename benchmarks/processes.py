"""The benchmark cluster's processes, as deployed: ``computethis scheduler``, ``computethis
worker`` and ``computethis gateway``, each in its own session and stopped by its pid.

The scheduler runs in its own process (as in docker-compose), not in the benchmark's:
there it would share one interpreter lock with the client threads being measured.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from benchmarks.ports import free_port

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Service:
    """A running ``computethis`` command and its log file."""

    process: subprocess.Popen
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]

    def check_running(self) -> None:
        """Raise with the end of its log if the process has exited."""
        if self.process.poll() is not None:
            raise RuntimeError(f"{self.log_path.stem} exited early:\n{self.log()}")

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM by pid, then SIGKILL to its process group (it leads it) if still alive."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=timeout)
        # Worker processes started by nannies live in this process's group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=timeout)


@dataclass
class GatewayProcess(Service):
    """A running gateway and how to reach it."""

    url: str = ""
    token: str = ""

    def health(self) -> dict:
        return requests.get(f"{self.url}/api/v1/health", timeout=5).json()

    def wait_ready(self, workers: int, timeout: float = 120.0) -> None:
        """Wait until ``/health`` answers 200 with ``workers`` workers connected."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_running()
            try:
                if self.health().get("workers") == workers:
                    return
            except (requests.ConnectionError, ValueError):
                pass
            time.sleep(0.05)
        raise TimeoutError(f"gateway not ready with {workers} workers:\n{self.log()}")


def start_process(command: list[str], log_path: Path) -> subprocess.Popen:
    """Start ``computethis COMMAND...`` (this interpreter) in a new session, output to a log."""
    args = [sys.executable, "-m", "gateway.cli", *command]
    pythonpath = os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": pythonpath}
    log = open(log_path, "ab")  # noqa: SIM115 - owned by the child process
    try:
        return subprocess.Popen(
            args,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=PROJECT_ROOT,
            start_new_session=True,
        )
    finally:
        log.close()


def start_scheduler(port: int, log_path: Path) -> Service:
    """``computethis scheduler`` on the loopback interface."""
    command = ["scheduler", "--host", "127.0.0.1", "--port", str(port)]
    return Service(start_process(command, log_path), log_path)


def start_workers(scheduler: str, count: int, log_path: Path) -> Service:
    """``computethis worker``: ``count`` single-threaded workers, each behind a nanny."""
    command = ["worker", scheduler, "--nworkers", str(count), "--host", "127.0.0.1"]
    return Service(start_process(command, log_path), log_path)


def start_gateway(
    scheduler: str, save_dir: Path, log_path: Path, *, token: str, max_body: int
) -> GatewayProcess:
    """Start ``computethis gateway`` on a free port (it retries the scheduler until up)."""
    port = free_port()
    command = [
        "gateway",
        "--scheduler",
        scheduler,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--save-dir",
        str(save_dir),
        "--token",
        token,
        "--max-body",
        str(max_body),
    ]
    process = start_process(command, log_path)
    return GatewayProcess(process, log_path, url=f"http://127.0.0.1:{port}", token=token)
