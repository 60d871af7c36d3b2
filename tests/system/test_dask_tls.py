"""TLS everywhere: Dask's own TLS between gateway, scheduler and workers, turned on by
Dask's config, and HTTPS on the gateway, as docker-compose.tls.yml sets them up.

A CA, one certificate per Dask role (scheduler, worker, client) and the gateway's HTTPS
certificate are made with trustme; the real ``computethis scheduler``, ``worker`` and
``gateway`` processes get Dask's settings through ``DASK_DISTRIBUTED__COMM__*``
environment variables only. Every Security object comes from Dask's config
(``Security()``), and the scheduler picks ``tls://`` because encryption is required.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import trustme
import yaml
from distributed import Client, Security

import client_sdk
from client_sdk import compute_this
from tests.stack import COMPUTETHIS, free_port, start_process, stop_processes, wait_healthy
from tests.system.test_compose import TLS_OVERRIDE_FILE, healthcheck_script

TOKEN = "tls-token"
ROLES = ("scheduler", "worker", "client")
CONNECT_TIMEOUT = 30.0  # for a connection that must succeed, on a loaded machine
# A connection that must fail is refused at once (Dask does not retry a failed TLS
# handshake); this only bounds how long that may take.
REFUSE_TIMEOUT = 5.0


@compute_this
def square(x):
    return x * x


@dataclass
class Certs:
    ca: Path
    cert: dict[str, Path]
    key: dict[str, Path]

    def env(self) -> dict[str, str]:
        """The Dask config, as environment variables, every computethis process gets."""
        env = {
            "DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION": "True",
            "DASK_DISTRIBUTED__COMM__TLS__CA_FILE": str(self.ca),
        }
        for role in ROLES:
            env[f"DASK_DISTRIBUTED__COMM__TLS__{role.upper()}__CERT"] = str(self.cert[role])
            env[f"DASK_DISTRIBUTED__COMM__TLS__{role.upper()}__KEY"] = str(self.key[role])
        return env

    def gateway_https_options(self) -> list[str]:
        return ["--certfile", str(self.cert["gateway"]), "--keyfile", str(self.key["gateway"])]


def make_certs(directory: Path, ca: trustme.CA) -> Certs:
    """PEM files of ``ca`` and of one certificate per role that ``ca`` signed, named as in
    docker-compose.tls.yml's /certs."""
    directory.mkdir(parents=True, exist_ok=True)
    ca.cert_pem.write_to_path(directory / "ca.pem")
    certs = Certs(directory / "ca.pem", {}, {})
    for role in ROLES:
        # Dask does not check hostnames (any certificate the CA signed is accepted).
        issued = ca.issue_cert(f"computethis-{role}", common_name=f"computethis-{role}")
        certs.cert[role] = directory / f"{role}.pem"
        certs.key[role] = directory / f"{role}-key.pem"
        issued.cert_chain_pems[0].write_to_path(certs.cert[role])
        issued.private_key_pem.write_to_path(certs.key[role])
    # HTTPS is checked by name, unlike Dask's TLS: this one names the test's host.
    https = ca.issue_cert("127.0.0.1", "localhost")
    certs.cert["gateway"] = directory / "gateway.pem"
    certs.key["gateway"] = directory / "gateway-key.pem"
    https.cert_chain_pems[0].write_to_path(certs.cert["gateway"])
    https.private_key_pem.write_to_path(certs.key["gateway"])
    return certs


def client_security(certs: Certs, ca: Path | None = None) -> Security:
    """A client's TLS settings: ``certs``' client certificate, trusting ``ca`` (or its own)."""
    return Security(
        require_encryption=True,
        tls_ca_file=str(ca or certs.ca),
        tls_client_cert=str(certs.cert["client"]),
        tls_client_key=str(certs.key["client"]),
    )


async def _workers_seen(address: str, security: Security | None, timeout: float) -> list[str]:
    client = Client(address, security=security, asynchronous=True, timeout=timeout)
    try:
        await client
        return sorted((await client.scheduler.identity())["workers"])
    finally:
        await client.close()


def workers_seen(
    address: str, security: Security | None = None, timeout: float = CONNECT_TIMEOUT
) -> list[str]:
    """Connect a Dask client from this (unconfigured) test process; the workers it sees."""
    return asyncio.run(_workers_seen(address, security, timeout))


@dataclass
class TlsCluster:
    certs: Certs
    other_ca_certs: Certs
    scheduler_address: str
    port: int
    url: str
    logs: Path

    def wait_for_scheduler_log(self, *parts: str, timeout: float = 15) -> None:
        """Wait for a line of the scheduler's log that contains every one of ``parts``."""
        log = self.logs / "scheduler.log"
        deadline = time.monotonic() + timeout
        while True:
            text = log.read_text(errors="replace")
            if any(all(part in line for part in parts) for line in text.splitlines()):
                return
            assert time.monotonic() < deadline, f"no line with {parts} in:\n{text}"
            time.sleep(0.1)


def _scheduler_address(log: Path, process, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.search(r"computethis scheduler at (\S+)", log.read_text(errors="replace"))
        if found:
            return found.group(1)
        assert process.poll() is None, log.read_text(errors="replace")
        time.sleep(0.1)
    raise TimeoutError(f"no scheduler address after {timeout}s:\n{log.read_text()}")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsCluster]:
    """Scheduler, one worker and the gateway as separate processes, TLS via env only."""
    root = tmp_path_factory.mktemp("dask-tls")
    certs = make_certs(root / "certs", trustme.CA())
    other_ca_certs = make_certs(root / "other-certs", trustme.CA())
    port, http_port = free_port(), free_port()
    url = f"https://127.0.0.1:{http_port}"
    env = certs.env()
    processes = []
    try:
        scheduler_log = root / "scheduler.log"
        scheduler = start_process(
            [*COMPUTETHIS, "scheduler", "--host", "127.0.0.1", "--port", str(port)],
            scheduler_log,
            env=env,
        )
        processes.append(scheduler)
        tls_address = f"tls://127.0.0.1:{port}"
        processes.append(
            start_process(
                [*COMPUTETHIS, "worker", tls_address, "--nworkers", "2"],
                root / "worker.log",
                env=env,
            )
        )
        gateway_log = root / "gateway.log"
        gateway = start_process(
            [
                *COMPUTETHIS,
                "gateway",
                "--scheduler",
                tls_address,
                "--port",
                str(http_port),
                "--save-dir",
                str(root / "save"),
                "--token",
                TOKEN,
                *certs.gateway_https_options(),
            ],
            gateway_log,
            env=env,
        )
        processes.append(gateway)
        address = _scheduler_address(scheduler_log, scheduler)
        wait_healthy(url, gateway, gateway_log, timeout=90, verify=str(certs.ca))
        yield TlsCluster(certs, other_ca_certs, address, port, url, root)
    finally:
        stop_processes(processes)


@pytest.fixture
def point_sdk(cluster: TlsCluster) -> Iterator[TlsCluster]:
    client = client_sdk.Client(cluster.url, TOKEN, ca=str(cluster.certs.ca))
    previous = client_sdk.set_default_client(client)
    yield cluster
    client_sdk.set_default_client(previous)


def test_scheduler_listens_on_tls(cluster: TlsCluster):
    assert cluster.scheduler_address == f"tls://127.0.0.1:{cluster.port}"


def test_a_job_runs_through_the_sdk_over_tls(point_sdk: TlsCluster):
    assert square.compute(7) == 49
    ca = str(point_sdk.certs.ca)
    health = requests.get(f"{point_sdk.url}/api/v1/health", timeout=10, verify=ca).json()
    assert health["scheduler"] == point_sdk.scheduler_address
    workers = requests.get(
        f"{point_sdk.url}/api/v1/workers",
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=10,
        verify=ca,
    ).json()["workers"]
    assert workers and all(w["address"].startswith("tls://") for w in workers), workers


def test_spmd_ranks_talk_over_tls_too(point_sdk: TlsCluster):
    @compute_this(ranks=2)
    def pair(comm):
        return comm.allreduce(comm.rank + 1), comm.encrypted

    assert pair.compute() == [(3, True), (3, True)]


def test_spmd_programs_talk_over_tls_too(point_sdk: TlsCluster, tmp_path: Path):
    (tmp_path / "main.py").write_text(
        "from client_sdk import spmd\n"
        "comm = spmd.world()\n"
        "print('total', comm.allreduce(comm.rank + 1), 'encrypted', comm.encrypted)\n"
    )
    result = client_sdk.run_folder(tmp_path, ranks=2).result(timeout=120)
    assert result.stdout == "total 3 encrypted True\n[rank 1]\ntotal 3 encrypted True\n"


def test_a_client_with_a_certificate_of_the_cluster_ca_connects(cluster: TlsCluster):
    """The control for the refusals below: same address, right certificate."""
    workers = workers_seen(cluster.scheduler_address, client_security(cluster.certs))
    assert len(workers) == 2 and all(w.startswith("tls://") for w in workers), workers


def test_a_plain_tcp_client_cannot_connect(cluster: TlsCluster):
    started = time.monotonic()
    with pytest.raises(OSError):  # the scheduler resets the connection
        workers_seen(f"tcp://127.0.0.1:{cluster.port}", timeout=REFUSE_TIMEOUT)
    assert time.monotonic() - started < REFUSE_TIMEOUT + 10
    cluster.wait_for_scheduler_log("TLS handshake failed", "WRONG_VERSION_NUMBER")


def test_a_client_certificate_of_another_ca_is_refused(cluster: TlsCluster):
    """Dask's TLS is mutual: the scheduler refuses a client certificate its CA did not sign
    (the client here trusts the cluster's CA, so only the scheduler can refuse)."""
    security = client_security(cluster.other_ca_certs, ca=cluster.certs.ca)
    started = time.monotonic()
    with pytest.raises(OSError):
        workers_seen(cluster.scheduler_address, security, timeout=REFUSE_TIMEOUT)
    assert time.monotonic() - started < REFUSE_TIMEOUT + 10
    cluster.wait_for_scheduler_log("TLS handshake failed", "CERTIFICATE_VERIFY_FAILED")


def test_the_compose_tls_healthchecks_pass_against_a_tls_scheduler(cluster: TlsCluster):
    """docker-compose.tls.yml's scheduler and worker healthchecks, pointed at this cluster:
    they pass, and the scheduler does not log them as failed TLS handshakes."""
    services = yaml.safe_load(TLS_OVERRIDE_FILE.read_text())["services"]
    log = cluster.logs / "scheduler.log"
    before = log.read_text(errors="replace")
    for name, target in (("scheduler", "'127.0.0.1', 8786"), ("worker", "'scheduler', 8786")):
        script = healthcheck_script(services[name])
        script = script.replace("'/certs/", f"'{cluster.certs.ca.parent}/")
        script = script.replace(target, f"'127.0.0.1', {cluster.port}")
        assert subprocess.run([sys.executable, "-c", script], timeout=30).returncode == 0, name
    # Each healthcheck closes after the TLS handshake, before Dask's own (logged at INFO).
    closed = "closed before handshake completed"
    deadline = time.monotonic() + 15
    while log.read_text(errors="replace").count(closed) < before.count(closed) + 2:
        assert time.monotonic() < deadline, log.read_text(errors="replace")
        time.sleep(0.1)
    failed = "TLS handshake failed"
    assert log.read_text(errors="replace").count(failed) == before.count(failed)


def test_the_compose_gateway_healthcheck_passes_over_https(cluster: TlsCluster):
    """docker-compose.tls.yml's gateway healthcheck, pointed at this gateway."""
    services = yaml.safe_load(TLS_OVERRIDE_FILE.read_text())["services"]
    script = healthcheck_script(services["gateway"])
    script = script.replace("'/certs/", f"'{cluster.certs.ca.parent}/")
    script = script.replace("https://127.0.0.1:5000/", f"{cluster.url}/")
    assert subprocess.run([sys.executable, "-c", script], timeout=30).returncode == 0
