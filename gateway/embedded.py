"""``computethis up``: a LocalCluster, the gateway and the store from one foreground command.

The LocalCluster (its scheduler and the workers' nannies) runs in a child process and
the gateway in this one, as on a real cluster: in one process they would share one
interpreter lock, and every request would wait for the scheduler's work and the other
way round (the soak, 50 client threads on 2 workers: 77 jobs/s in one process, 93 in two).
The child stops when the gateway stops, and on its own if this process dies.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import signal
import time
from multiprocessing.connection import Connection

from distributed import LocalCluster

from gateway.config import GatewayConfig, TlsFiles
from gateway.server import run_gateway
from scheduler.config import apply_config, set_defaults
from worker.main import close_nannies, prepare_worker_processes

log = logging.getLogger("computethis")

CLUSTER_START_TIMEOUT = 300.0  # seconds for the scheduler and every worker to start
CLUSTER_STOP_TIMEOUT = 60.0
EMBEDDED_CLUSTER_CONFIG: dict[str, object] = {
    # A LocalCluster closes a worker's nanny for good when, 15 s (Dask's default) after
    # the worker left the scheduler, no worker of that name is connected. Cancelling
    # or timing out a job restarts its worker (gone for ~4 s); a second restart of the
    # same worker that spans the 15 s mark of the first then lost the worker. Here the
    # nannies bring their workers back, so the cluster never closes them.
    "distributed.deploy.lost-worker-timeout": "3650 days",
}


class ClusterFailed(RuntimeError):
    """The embedded cluster's process could not start its LocalCluster."""


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
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    cluster = context.Process(
        target=serve_cluster,
        args=(workers, allowed_failures, theirs),
        name="computethis-cluster",
    )
    cluster.start()
    theirs.close()
    try:
        address = _scheduler_address(ours, cluster)
        print(f"computethis: {workers} worker(s), scheduler {address}", flush=True)
        run_gateway(
            address,
            config,
            host=host,
            port=port,
            token_generated=token_generated,
            tls=tls,
        )
    finally:
        started = time.monotonic()
        ours.close()  # the cluster process's signal to close
        cluster.join(CLUSTER_STOP_TIMEOUT)
        if cluster.is_alive():
            log.warning("the local cluster did not stop in %g s: killing it", CLUSTER_STOP_TIMEOUT)
            cluster.kill()
            cluster.join(5)
        log.info("local cluster stopped in %.1f s", time.monotonic() - started)


def _scheduler_address(connection: Connection, cluster: multiprocessing.process.BaseProcess) -> str:
    if not connection.poll(CLUSTER_START_TIMEOUT):
        raise ClusterFailed(f"the local cluster did not start in {CLUSTER_START_TIMEOUT:g} s")
    try:
        kind, value = connection.recv()
    except EOFError:
        raise ClusterFailed(
            f"the local cluster's process exited (code {cluster.exitcode}) before starting"
        ) from None
    if kind != "address":
        raise ClusterFailed(f"the local cluster could not start: {value}")
    return value


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(0)


def serve_cluster(workers: int, allowed_failures: int | None, parent: Connection) -> None:
    """(cluster process) Run the LocalCluster until the parent closes its end of the pipe.

    Ctrl+C reaches the whole process group: the parent decides when to stop, so this
    process ignores SIGINT. SIGTERM closes the cluster (its workers too) and exits.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _exit_on_signal)
    apply_config(allowed_failures)
    set_defaults(EMBEDDED_CLUSTER_CONFIG)
    prepare_worker_processes()
    try:
        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            scheduler_port=0,
            dashboard_address=None,
        )
    except Exception as exc:
        parent.send(("error", f"{type(exc).__name__}: {exc}"))
        raise
    try:
        parent.send(("address", cluster.scheduler_address))
        with contextlib.suppress(EOFError):
            parent.recv()  # nothing is ever sent: EOFError once the parent closes or dies
    finally:
        # Workers first, as `computethis worker` stops them: a running job is not waited
        # for (LocalCluster.close would wait 4 s for it, then kill its worker process).
        with contextlib.suppress(Exception):
            cluster.sync(close_nannies, list(cluster.workers.values()))
        cluster.close(timeout=30)
