"""One cluster, two ways in: a LocalCluster with a gateway subprocess and a direct Client.

The gateway is started first against the scheduler's (chosen) address, so its start
overlaps the cluster's. ``Runner`` keeps one harness alive at a time.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import warnings
from pathlib import Path

from distributed import Client, LocalCluster

import client_sdk
from benchmarks.gateway_process import GatewayProcess, free_port, start_gateway
from scheduler.config import apply_config

TOKEN = "benchmark-token"


class Harness:
    """``workers`` single-threaded worker processes, the gateway and a direct client."""

    def __init__(self, workers: int, max_body: int) -> None:
        self.workers = workers
        self.max_body = max_body
        self.workdir = Path(tempfile.mkdtemp(prefix=f"computethis-bench-{workers}w-"))
        self.cluster: LocalCluster | None = None
        self.client: Client | None = None
        self.gateway: GatewayProcess | None = None

    def start(self) -> Harness:
        apply_config()
        address = f"tcp://127.0.0.1:{free_port()}"
        self.gateway = start_gateway(
            address,
            self.workdir / "save",
            self.workdir / "gateway.log",
            token=TOKEN,
            max_body=self.max_body,
        )
        try:
            with warnings.catch_warnings():
                # Another process may hold the scheduler's default HTTP port (8787).
                warnings.filterwarnings("ignore", message="Port .* is already in use")
                self.cluster = LocalCluster(
                    n_workers=self.workers,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=None,
                    host="127.0.0.1",
                    scheduler_port=int(address.rsplit(":", 1)[1]),
                    silence_logs=logging.CRITICAL,
                )
            self.client = Client(self.cluster, set_as_default=False)
            self.gateway.wait_ready(self.workers)
        except BaseException:
            self.close()
            raise
        client_sdk.configure(url=self.gateway.url, token=TOKEN)
        return self

    def close(self) -> None:
        """Stop the gateway (SIGTERM by pid), the client and the cluster; remove files."""
        if self.gateway is not None:
            self.gateway.stop()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if self.client is not None:
                self.client.close(timeout=30)
            if self.cluster is not None:
                self.cluster.close(timeout=30)
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
