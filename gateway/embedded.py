"""``computethis up``: a LocalCluster, the gateway and the store in one foreground process."""

from __future__ import annotations

from pathlib import Path

from distributed import LocalCluster

from gateway.server import run_gateway
from scheduler.config import apply_config


def run_embedded(
    *,
    workers: int,
    host: str,
    port: int,
    save_dir: str | Path,
    token: str | None,
    max_body: int,
) -> None:
    """Start ``workers`` single-threaded worker processes and serve the gateway."""
    apply_config()
    cluster = LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        scheduler_port=0,
        dashboard_address=None,
    )
    try:
        print(
            f"computethis: {workers} worker(s), scheduler {cluster.scheduler_address}", flush=True
        )
        run_gateway(
            cluster.scheduler_address,
            host=host,
            port=port,
            save_dir=save_dir,
            token=token,
            max_body=max_body,
        )
    finally:
        cluster.close(timeout=30)
