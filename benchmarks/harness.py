"""One cluster, two ways in: the gateway and a direct Dask client on the same scheduler.

The cluster is the deployed shape on one machine: ``computethis scheduler``,
``computethis worker --nworkers W`` and ``computethis gateway``, each its own process.
The benchmark process holds only what a user's process would: the SDK and a direct
:class:`distributed.Client`. ``Runner`` keeps one harness alive at a time.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import psutil
from distributed import Client

import client_sdk
from benchmarks.processes import (
    GatewayProcess,
    Service,
    free_port,
    start_gateway,
    start_scheduler,
    start_workers,
)

TOKEN = "benchmark-token"
START_TIMEOUT = 180.0  # seconds for the scheduler and every worker to come up


class Harness:
    """``workers`` single-threaded worker processes, the gateway and a direct client."""

    def __init__(self, workers: int, max_body: int) -> None:
        self.workers = workers
        self.max_body = max_body
        self.workdir = Path(tempfile.mkdtemp(prefix=f"computethis-bench-{workers}w-"))
        self.scheduler: Service | None = None
        self.worker_pool: Service | None = None
        self.gateway: GatewayProcess | None = None
        self.client: Client | None = None

    def start(self) -> Harness:
        """Start scheduler, workers and gateway together; return once all are connected."""
        port = free_port()
        address = f"tcp://127.0.0.1:{port}"
        try:
            self.scheduler = start_scheduler(port, self.workdir / "scheduler.log")
            self.worker_pool = start_workers(address, self.workers, self.workdir / "workers.log")
            self.gateway = start_gateway(
                address,
                self.workdir / "save",
                self.workdir / "gateway.log",
                token=TOKEN,
                max_body=self.max_body,
            )
            self.client = Client(address, timeout=START_TIMEOUT, set_as_default=False)
            self.client.wait_for_workers(self.workers, timeout=START_TIMEOUT)
            self.gateway.wait_ready(self.workers, timeout=START_TIMEOUT)
        except BaseException as exc:
            logs = "".join(
                f"\n--- {service.log_path.name}\n{service.log()}"
                for service in (self.scheduler, self.worker_pool)
                if service is not None
            )
            self.close()
            raise RuntimeError(f"the benchmark cluster did not start: {exc}{logs}") from exc
        client_sdk.configure(url=self.gateway.url, token=TOKEN)
        return self

    def processes(self) -> dict[str, list[psutil.Process]]:
        """The cluster's processes by part: this (benchmark) process, the gateway, the
        scheduler, and the worker command with its worker processes."""
        # Only this process itself: the services below are its children.
        groups = {"benchmark": [psutil.Process(os.getpid())]}
        for part, service in (
            ("gateway", self.gateway),
            ("scheduler", self.scheduler),
            ("workers", self.worker_pool),
        ):
            if service is not None:
                process = psutil.Process(service.pid)
                groups[part] = [process, *process.children(recursive=True)]
        return groups

    def close(self) -> None:
        """Stop the gateway, the client, the workers and the scheduler; remove files."""
        if self.gateway is not None:
            self.gateway.stop()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if self.client is not None:
                self.client.close(timeout=30)
        if self.worker_pool is not None:
            self.worker_pool.stop()
        if self.scheduler is not None:
            self.scheduler.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


class Runner:
    """Hands out harnesses by worker count, keeping only the latest one running."""

    def __init__(self, max_body: int) -> None:
        self.max_body = max_body
        self.current: Harness | None = None

    def harness(self, workers: int) -> Harness:
        if self.current is not None and self.current.workers == workers:
            return self.current
        self.close()
        self.current = Harness(workers, self.max_body).start()
        return self.current

    def close(self) -> None:
        if self.current is not None:
            harness, self.current = self.current, None
            harness.close()


def cpu_seconds(groups: dict[str, list[psutil.Process]]) -> dict[str, float]:
    """User + system CPU seconds each group of processes has used so far."""
    used = {}
    for part, processes in groups.items():
        used[part] = 0.0
        for process in processes:
            with contextlib.suppress(psutil.NoSuchProcess):
                times = process.cpu_times()
                used[part] += times.user + times.system
    return used
