"""A ``computethis gateway`` subprocess: started against a scheduler, stopped by its pid."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class GatewayProcess:
    """A running gateway and how to reach it."""

    process: subprocess.Popen
    url: str
    token: str
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def health(self) -> dict:
        return requests.get(f"{self.url}/api/v1/health", timeout=5).json()

    def wait_ready(self, workers: int, timeout: float = 120.0) -> None:
        """Wait until ``/health`` answers 200 with ``workers`` workers connected."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gateway exited early:\n{self.log()}")
            try:
                if self.health().get("workers") == workers:
                    return
            except (requests.ConnectionError, ValueError):
                pass
            time.sleep(0.05)
        raise TimeoutError(f"gateway not ready with {workers} workers:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM by pid, then SIGKILL by pid if it does not exit in time."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=timeout)


def start_gateway(
    scheduler: str, save_dir: Path, log_path: Path, *, token: str, max_body: int
) -> GatewayProcess:
    """Start ``computethis gateway`` on a free port (it retries the scheduler until up)."""
    port = free_port()
    args = [
        sys.executable,
        "-m",
        "gateway.cli",
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
    log = open(log_path, "ab")  # noqa: SIM115 - owned by the child process
    try:
        process = subprocess.Popen(
            args,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            start_new_session=True,
        )
    finally:
        log.close()
    return GatewayProcess(process, f"http://127.0.0.1:{port}", token, log_path)
