"""Start and stop real computethis processes for tests (stopped by pid, never by name)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import requests

from benchmarks.ports import free_port

REPO = Path(__file__).resolve().parent.parent
COMPUTETHIS = [sys.executable, "-m", "gateway.cli"]


@dataclass
class Stack:
    """A running ``computethis up`` (or gateway) process and how to reach it."""

    process: subprocess.Popen
    url: str
    token: str
    save_dir: Path
    log_path: Path
    children: list[psutil.Process] = field(default_factory=list)

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def api(self, path: str) -> str:
        return f"{self.url}/api/v1{path}"

    def wait_for_workers(self, count: int, timeout: float = 120, steady: float = 3.0) -> None:
        """Wait until ``count`` workers have been connected for ``steady`` seconds.

        A worker restarted by an earlier cancel or timeout drops out for a few seconds
        (the restart runs in the background), so one good reading is not enough.
        """
        deadline = time.monotonic() + timeout
        since = None
        while True:
            health = requests.get(self.api("/health"), timeout=10).json()
            now = time.monotonic()
            if health["workers"] != count:
                since = None
            elif since is None:
                since = now
            elif now - since >= steady:
                return
            if now > deadline:
                raise TimeoutError(f"{health['workers']} workers, expected {count}")
            time.sleep(0.1)

    def wait_until_idle(self, timeout: float = 120) -> None:
        """Wait until no job of any tenant is queued or running (earlier tests' jobs)."""
        deadline = time.monotonic() + timeout
        while True:
            busy = [
                status
                for status in ("queued", "running")
                if requests.get(
                    self.api("/jobs"),
                    params={"status": status, "limit": 1},
                    headers=self.headers(),
                    timeout=10,
                ).json()["jobs"]
            ]
            if not busy:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"jobs still {' and '.join(busy)} after {timeout} s")
            time.sleep(0.1)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        """Signal the process, wait for it and all its children to exit; return its code."""
        self.children = signal_tree(self.process, sig) or self.children
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            stacks = dump_stacks(self.process.pid)
            kill_tree(self.process.pid)
            raise TimeoutError(
                f"pid {self.process.pid} still running {timeout:g} s after signal {sig}\n"
                f"{stacks}\n--- log (last 8000 chars) ---\n{self.log()[-8000:]}"
            ) from exc
        _, alive = psutil.wait_procs(self.children, timeout=timeout)
        for proc in alive:
            proc.kill()
        assert not alive, f"processes left behind after stop: {alive}"
        return code


def stop_processes(processes: list[subprocess.Popen], timeout: float = 30) -> None:
    """SIGTERM every process at once (as ``docker-compose down`` does) and wait for each
    and the children it had; whatever still runs after ``timeout`` is killed, and then
    the stop fails, naming it. Processes already stopped are skipped: stopping twice
    does nothing."""
    trees = [signal_tree(process, signal.SIGTERM) for process in processes]
    deadline = time.monotonic() + timeout
    killed: list[str] = []
    for process, children in zip(processes, trees, strict=True):
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            killed.append(" ".join(map(str, process.args)))
        _, alive = psutil.wait_procs(children, timeout=max(0.0, deadline - time.monotonic()))
        for proc in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
            killed.append(f"child {proc.pid} of {process.pid}")
    assert not killed, f"still running {timeout:g} s after SIGTERM, killed: {killed}"


def dump_stacks(pid: int) -> str:
    """Every thread's Python stack of ``pid`` and its children (py-spy), for a hang's report."""
    py_spy = Path(sys.executable).parent / "py-spy"
    try:
        procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return f"pid {pid} is gone"
    dumps = []
    for proc in procs:
        try:
            out = subprocess.run(
                [str(py_spy), "dump", "--pid", str(proc.pid)],
                capture_output=True,
                text=True,
                timeout=30,
            )
            dumps.append(f"--- py-spy dump of {proc.pid} ---\n{out.stdout}{out.stderr}")
        except (OSError, subprocess.TimeoutExpired) as exc:
            dumps.append(f"--- py-spy dump of {proc.pid} failed: {exc}")
    return "\n".join(dumps)


def signal_tree(process: subprocess.Popen, sig: int) -> list[psutil.Process]:
    """Send ``sig`` to ``process`` if it still runs; the descendants it had just before
    (none if it had exited). psutil's handles refuse to kill a reused pid later."""
    if process.poll() is not None:
        return []
    with contextlib.suppress(psutil.NoSuchProcess):
        children = psutil.Process(process.pid).children(recursive=True)
        process.send_signal(sig)
        return children
    return []


def kill_tree(pid: int) -> None:
    try:
        parent = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return
    for proc in [*parent.children(recursive=True), parent]:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()


def start_process(args: list[str], log_path: Path, env: dict[str, str] | None = None):
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    log = open(log_path, "ab")  # noqa: SIM115 - owned by the child process
    return subprocess.Popen(
        args, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=full_env, start_new_session=True
    )


def wait_healthy(
    url: str,
    process: subprocess.Popen,
    log_path: Path,
    timeout: float = 90,
    verify: str | bool = True,
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process exited early:\n{log_path.read_text(errors='replace')}")
        try:
            health = requests.get(f"{url}/api/v1/health", timeout=2, verify=verify)
            if health.status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.1)
    raise TimeoutError(
        f"{url} not healthy after {timeout}s:\n{log_path.read_text(errors='replace')}"
    )


def start_stack(
    save_dir: Path,
    *,
    workers: int = 2,
    token: str = "test-token",
    port: int | None = None,
    extra: list[str] | None = None,
    ca: str | None = None,
) -> Stack:
    """``computethis up`` as a subprocess, waited for until /health answers 200.

    With ``--certfile`` in ``extra`` the gateway serves HTTPS, verified against ``ca``.
    """
    port = port or free_port()
    save_dir.mkdir(parents=True, exist_ok=True)
    log_path = save_dir.parent / f"{save_dir.name}-up-{port}.log"
    args = [
        *COMPUTETHIS,
        "up",
        "--workers",
        str(workers),
        "--port",
        str(port),
        "--save-dir",
        str(save_dir),
        "--token",
        token,
        *(extra or []),
    ]
    process = start_process(args, log_path)
    scheme = "https" if "--certfile" in args else "http"
    url = f"{scheme}://127.0.0.1:{port}"
    try:
        wait_healthy(url, process, log_path, verify=ca or True)
    except BaseException:
        kill_tree(process.pid)
        raise
    return Stack(process, url, token, save_dir, log_path)


def wait_until(
    condition: Callable[[], bool],
    message: str | Callable[[], str],
    timeout: float = 30.0,
    every: float = 0.05,
) -> None:
    """Check ``condition`` every ``every`` s until it holds; after ``timeout`` s fail the
    test with ``message`` (a callable is asked then, to describe the state at that time)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, message() if callable(message) else message
        time.sleep(every)


def scrape_metrics(stack: Stack) -> dict[str, float]:
    """The gateway's unlabelled Prometheus samples (``GET /metrics``), by name."""
    response = requests.get(f"{stack.url}/metrics", headers=stack.headers(), timeout=20)
    response.raise_for_status()
    samples = {}
    for line in response.text.splitlines():
        name, _, value = line.partition(" ")
        if line and not line.startswith("#") and "{" not in name:
            samples[name] = float(value)
    return samples
