"""``computethis up``: a LocalCluster, the gateway and the store in one foreground process."""

from __future__ import annotations

from distributed import LocalCluster

from gateway.config import GatewayConfig, TlsFiles
from gateway.server import run_gateway
from scheduler.config import apply_config


def run_embedded(
    config: GatewayConfig,
    *,
    workers: int,
    host: str,
    port: int,
    token_generated: bool = False,
    allowed_failures: int | None = None,
    tls: TlsFiles | None = None,
) -> None:
    """Start ``workers`` single-threaded worker processes and serve the gateway."""
    apply_config(allowed_failures)
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
            config,
            host=host,
            port=port,
            token_generated=token_generated,
            tls=tls,
        )
    finally:
        cluster.close(timeout=30)
