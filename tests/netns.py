"""A multi-host computethis cluster on one machine, built from Linux network namespaces.

:class:`Network` builds a small virtual LAN: a Linux bridge in the root namespace
(holding the ``.1`` address, so the test process can reach every host) and one
network namespace per host, each joined to the bridge by a veth pair. Processes
started with :meth:`Host.start` run inside their host's namespace through
``ip netns exec``; :meth:`Host.kill_processes` kills them (by pid, with their
children), :meth:`Host.cut` / :meth:`Host.restore` take the host's link down and up.

:class:`Cluster` runs computethis on top of it exactly as ``docker-compose.yml`` does:
a ``scheduler`` host, two worker hosts (``worker1``, ``worker2``, two single-threaded
workers each) and a ``gateway`` host. :func:`computethis_cluster` starts one and
tears everything down afterwards (processes first, then namespaces, veths, bridge).

All traffic stays inside one private /24 (``10.254.77.0/24`` unless another run on
this machine already uses it, then the next free ``10.254.x.0/24``; override with
``$COMPUTETHIS_NETNS_SUBNET``) and loopback. Names carry a random suffix, so
concurrent runs do not clash. Needs root and iproute2: :func:`unavailable_reason`
says why a machine cannot run it, so tests can skip.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import psutil
import requests

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
SUBNET_ENV = "COMPUTETHIS_NETNS_SUBNET"
DEFAULT_SUBNET = "10.254.77.0/24"
FALLBACK_SUBNETS = [f"10.254.{third}.0/24" for third in range(78, 128)]
SCHEDULER_PORT = 8786
GATEWAY_PORT = 5000
HOSTS = ("scheduler", "worker1", "worker2", "gateway")
WORKER_HOSTS = ("worker1", "worker2")
WORKERS_PER_HOST = 2
LINK_ALIAS = "computethis-netns test network"

log = logging.getLogger(__name__)


class NetnsUnavailable(RuntimeError):
    """This machine cannot build network namespaces (not root, no ``ip``, no netns)."""


class NetnsError(RuntimeError):
    """An ``ip`` command failed."""


def ip(*args: str, check: bool = True) -> str:
    """Run ``ip ARGS`` and return its output; raise :class:`NetnsError` if it fails."""
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and result.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)}: {result.stderr.strip() or result.returncode}")
    return result.stdout


@cache
def unavailable_reason() -> str | None:
    """Why network namespaces cannot be used here, or None when they can.

    Checks for Linux, root and iproute2, then really creates (and deletes) a
    namespace, a bridge and a veth pair, the three things :class:`Network` needs.
    """
    if not sys.platform.startswith("linux"):
        return f"network namespaces need Linux, this is {sys.platform}"
    if os.geteuid() != 0:
        return "network namespaces need root (run the tests as root, as CI does)"
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed"
    suffix = secrets.token_hex(3)
    namespace, bridge, veth = f"ctprobe-{suffix}", f"ctpb{suffix}", f"ctpv{suffix}"
    try:
        ip("netns", "add", namespace)
        ip("link", "add", bridge, "type", "bridge")
        ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", namespace)
    except (NetnsError, OSError, subprocess.SubprocessError) as exc:
        return f"cannot create network namespaces, bridges or veth pairs: {exc}"
    finally:
        ip("link", "del", veth, check=False)
        ip("link", "del", bridge, check=False)
        ip("netns", "del", namespace, check=False)
    return None


# -- processes ----------------------------------------------------------------------


def _alive(proc: psutil.Process) -> bool:
    """True while ``proc`` runs (a zombie counts as gone: it no longer does anything)."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _tree(pid: int) -> list[psutil.Process]:
    """``pid`` and all its descendants (empty if it is gone)."""
    try:
        parent = psutil.Process(pid)
        return [parent, *parent.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _signal_all(procs: Sequence[psutil.Process], sig: int) -> None:
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.send_signal(sig)


def _wait_gone(procs: Sequence[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait until every process exited; return those still running after ``timeout``."""
    deadline = time.monotonic() + timeout
    alive = [proc for proc in procs if _alive(proc)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = [proc for proc in alive if _alive(proc)]
    return alive


# -- network ------------------------------------------------------------------------


@dataclass
class Host:
    """One machine of the virtual network: a namespace with one address on the LAN."""

    name: str
    namespace: str
    ip: str
    veth: str  # the root-namespace end, enslaved to the bridge
    processes: list[subprocess.Popen] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)

    def __repr__(self) -> str:
        return f"<Host {self.name} {self.ip} netns={self.namespace}>"

    def start(
        self, args: Sequence[str], log_path: Path, env: dict[str, str] | None = None
    ) -> subprocess.Popen:
        """Run ``python -m gateway.cli ARGS`` on this host, output appended to ``log_path``.

        ``ip netns exec`` execs the command, so the returned process's pid is the
        Python process itself. ``env`` is added to this process's environment. Can be
        called again after :meth:`kill_processes` (restarts).
        """
        return self.run([PYTHON, "-m", "gateway.cli", *args], log_path, env)

    def run(
        self, command: Sequence[str], log_path: Path, env: dict[str, str] | None = None
    ) -> subprocess.Popen:
        """Run any command in this host's namespace (see :meth:`start`)."""
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log_file:
            process = subprocess.Popen(
                ["ip", "netns", "exec", self.namespace, *command],
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=full_env,
                start_new_session=True,
            )
        self.processes.append(process)
        self.logs.append(log_path)
        return process

    def pids(self) -> set[int]:
        """Every process in this host's namespace (including orphans of killed ones)."""
        output = ip("netns", "pids", self.namespace, check=False)
        return {int(word) for word in output.split() if word.isdigit()}

    def running(self) -> list[psutil.Process]:
        """The processes started here that still run, with their children."""
        procs: dict[int, psutil.Process] = {}
        for process in self.processes:
            if process.poll() is None:
                procs.update((proc.pid, proc) for proc in _tree(process.pid))
        for pid in self.pids():
            with contextlib.suppress(psutil.NoSuchProcess):
                procs.setdefault(pid, psutil.Process(pid))
        return [proc for proc in procs.values() if _alive(proc)]

    def kill_processes(self, sig: int = signal.SIGKILL, timeout: float = 30) -> list[int | None]:
        """Stop everything this host runs; return the exit codes of the started processes.

        With SIGKILL every process of the host (each started process, its children and
        anything else left in the namespace) dies at once, like a machine losing power.
        With another signal only the started processes get it, so they can shut down
        their children cleanly; whatever still runs after ``timeout`` is SIGKILLed.
        """
        procs = self.running()
        if sig == signal.SIGKILL:
            _signal_all(procs, sig)
        else:
            _signal_all(
                [proc for proc in procs if proc.pid in {p.pid for p in self.processes}], sig
            )
            _signal_all(_wait_gone(procs, timeout), signal.SIGKILL)
        left = _wait_gone(procs, timeout)
        codes: list[int | None] = []
        for process in self.processes:
            try:
                codes.append(process.wait(timeout=timeout))
            except subprocess.TimeoutExpired:
                codes.append(None)
        self.processes.clear()
        if left:
            raise RuntimeError(f"{self}: processes survived SIGKILL: {left}")
        return codes

    def cut(self) -> None:
        """Cut the host off from every other host: its link goes down, silently.

        Packets are dropped, no connection is reset: peers notice only by timeouts.
        """
        ip("link", "set", self.veth, "down")

    def restore(self) -> None:
        """Bring the host's link back up after :meth:`cut`."""
        ip("link", "set", self.veth, "up")

    def log_text(self) -> str:
        """The output of every process started on this host."""
        return "".join(
            f"----- {path.name} -----\n{path.read_text(errors='replace')}"
            for path in dict.fromkeys(self.logs)
            if path.exists()
        )


class Network:
    """A bridge in the root namespace plus one namespace per host, torn down on exit.

    Use as a context manager::

        with Network(["a", "b"]) as net:
            net["a"].start([...], log_path)
    """

    def __init__(self, hosts: Sequence[str] = HOSTS, subnet: str | None = None) -> None:
        reason = unavailable_reason()
        if reason:
            raise NetnsUnavailable(reason)
        self.names = list(hosts)
        self.requested_subnet = subnet or os.environ.get(SUBNET_ENV)
        self.suffix = secrets.token_hex(3)
        self.bridge = f"ctbr{self.suffix}"
        self.subnet: ipaddress.IPv4Network | None = None
        self.hosts: dict[str, Host] = {}
        self._namespaces: list[str] = []
        self._veths: list[str] = []
        self._bridge_made = False

    def __enter__(self) -> Network:
        try:
            self.build()
        except BaseException:
            self.teardown()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.teardown()

    def __getitem__(self, name: str) -> Host:
        return self.hosts[name]

    @property
    def gateway_ip(self) -> str:
        """The bridge's address: the root namespace (the test process) as seen by hosts."""
        assert self.subnet is not None
        return str(self.subnet.network_address + 1)

    def build(self) -> None:
        """Create the bridge, the namespaces and the veth pairs."""
        with _subnet_lock():
            self.subnet = _free_subnet(self.requested_subnet)
            prefix = self.subnet.prefixlen
            ip("link", "add", self.bridge, "type", "bridge")
            self._bridge_made = True
            ip("link", "set", self.bridge, "alias", LINK_ALIAS)
            ip("addr", "add", f"{self.gateway_ip}/{prefix}", "dev", self.bridge)
        ip("link", "set", self.bridge, "up")
        for index, name in enumerate(self.names):
            namespace = f"ct-{self.suffix}-{name}"
            veth = f"ct{self.suffix}v{index}"
            host_ip = str(self.subnet.network_address + 10 + index)
            ip("netns", "add", namespace)
            self._namespaces.append(namespace)
            ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", namespace)
            self._veths.append(veth)
            ip("link", "set", veth, "alias", LINK_ALIAS)
            ip("link", "set", veth, "master", self.bridge)
            ip("link", "set", veth, "up")
            ip("-n", namespace, "addr", "add", f"{host_ip}/{prefix}", "dev", "eth0")
            ip("-n", namespace, "link", "set", "eth0", "up")
            ip("-n", namespace, "link", "set", "lo", "up")
            self.hosts[name] = Host(name, namespace, host_ip, veth)
        for host in self.hosts.values():
            _wait_reachable(host)

    def teardown(self) -> None:
        """Kill every process, then delete the namespaces, the veths and the bridge.

        Never raises: problems are logged, and later steps still run.
        """
        for host in self.hosts.values():
            try:
                host.kill_processes(signal.SIGKILL, timeout=15)
            except Exception:
                log.exception("could not kill the processes of %s", host)
        for namespace in self._namespaces:
            with contextlib.suppress(Exception):
                ip("netns", "del", namespace)
        for veth in self._veths:  # normally gone with their namespace
            ip("link", "del", veth, check=False)
        if self._bridge_made:
            ip("link", "del", self.bridge, check=False)
        self._namespaces.clear()
        self._veths.clear()
        self._bridge_made = False


@contextlib.contextmanager
def _subnet_lock() -> Iterator[None]:
    """Serialize choosing a subnet and claiming it, between runs on this machine."""
    path = Path(tempfile.gettempdir()) / "computethis-netns.lock"
    with open(path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _free_subnet(requested: str | None) -> ipaddress.IPv4Network:
    """The first candidate /24 no address or route of the root namespace lies inside."""
    candidates = [requested] if requested else [DEFAULT_SUBNET, *FALLBACK_SUBNETS]
    used = _used_networks()
    for candidate in candidates:
        subnet = ipaddress.IPv4Network(candidate)
        if not subnet.is_private or subnet.num_addresses < 16:
            raise ValueError(f"{candidate} must be a private network of at least 16 addresses")
        if not any(net.subnet_of(subnet) for net in used):
            return subnet
    raise NetnsUnavailable(f"no free test subnet among {candidates} (left over from old runs?)")


def _used_networks() -> list[ipaddress.IPv4Network]:
    """Networks of the root namespace's IPv4 addresses and routes (default route aside)."""
    networks = []
    for line in ip("-4", "-o", "addr", "show").splitlines():
        words = line.split()
        if "inet" in words:
            networks.append(ipaddress.IPv4Interface(words[words.index("inet") + 1]).network)
    for line in ip("-4", "route", "show", "table", "all").splitlines():
        # "10.0.0.0/8 via ...", or with a route type first: "local 127.0.0.0/8 dev lo ..."
        for word in line.split()[:2]:
            with contextlib.suppress(ValueError):
                networks.append(ipaddress.IPv4Network(word, strict=False))
                break
    return networks


def _wait_reachable(host: Host, timeout: float = 10) -> None:
    """Wait until the host's link is up (a fresh bridge port needs a moment)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = ip("-n", host.namespace, "-o", "link", "show", "eth0")
        if "LOWER_UP" in state and "NO-CARRIER" not in state:
            return
        time.sleep(0.05)
    raise NetnsError(f"{host}: link not up after {timeout}s")


# -- computethis on the network ------------------------------------------------------


@dataclass
class Cluster:
    """computethis on a :class:`Network`: scheduler, two worker hosts and a gateway.

    ``scheduler_env`` is added to the scheduler's environment (e.g. a short
    ``DASK_DISTRIBUTED__SCHEDULER__WORKER_TTL``).
    """

    network: Network
    workdir: Path
    token: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    scheduler_env: dict[str, str] = field(default_factory=dict)

    @property
    def scheduler(self) -> Host:
        return self.network["scheduler"]

    @property
    def gateway(self) -> Host:
        return self.network["gateway"]

    @property
    def worker_hosts(self) -> list[Host]:
        return [self.network[name] for name in WORKER_HOSTS]

    @property
    def scheduler_address(self) -> str:
        return f"tcp://{self.scheduler.ip}:{SCHEDULER_PORT}"

    @property
    def url(self) -> str:
        """The gateway's base URL, reachable from the root namespace."""
        return f"http://{self.gateway.ip}:{GATEWAY_PORT}"

    @property
    def save_dir(self) -> Path:
        return self.workdir / "save"

    def api(self, path: str) -> str:
        """The full URL of an API v1 path, e.g. ``api("/jobs")``."""
        return f"{self.url}/api/v1{path}"

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def get(self, path: str, **params: object) -> requests.Response:
        """An authenticated GET of an API v1 path."""
        return requests.get(self.api(path), headers=self.headers(), params=params, timeout=30)

    def log_path(self, host: Host) -> Path:
        return self.workdir / "logs" / f"{host.name}.log"

    def env(self, **extra: str) -> dict[str, str]:
        """Environment for every host's process: Dask's scratch space under ``workdir``."""
        return {"DASK_TEMPORARY_DIRECTORY": str(self.workdir / "dask-scratch"), **extra}

    # -- the computethis subcommands docker-compose.yml runs, one per host

    def start_scheduler(self) -> subprocess.Popen:
        host = self.scheduler
        args = ["scheduler", "--host", host.ip, "--port", str(SCHEDULER_PORT)]
        return host.start(args, self.log_path(host), env=self.env(**self.scheduler_env))

    def start_workers(self, host: Host) -> subprocess.Popen:
        args = [
            "worker",
            self.scheduler_address,
            "--nworkers",
            str(WORKERS_PER_HOST),
            "--name",
            host.name,
            "--host",
            host.ip,
        ]
        return host.start(args, self.log_path(host), env=self.env())

    def start_gateway(self) -> subprocess.Popen:
        host = self.gateway
        args = [
            "gateway",
            "--scheduler",
            self.scheduler_address,
            "--host",
            host.ip,
            "--port",
            str(GATEWAY_PORT),
            "--save-dir",
            str(self.save_dir),
            f"--token={self.token}",  # one word: a random token may start with "-"
        ]
        return host.start(args, self.log_path(host), env=self.env())

    def start(self) -> None:
        """Start all four hosts' processes and wait until every worker is connected."""
        self.start_scheduler()
        for host in self.worker_hosts:
            self.start_workers(host)
        self.start_gateway()
        self.wait_for_workers(len(WORKER_HOSTS) * WORKERS_PER_HOST)

    # -- observing

    def health(self) -> dict[str, object] | None:
        """The gateway's /health body, or None while it does not answer."""
        try:
            return requests.get(self.api("/health"), timeout=5).json()
        except (requests.ConnectionError, requests.Timeout, ValueError):
            return None

    def health_response(self) -> tuple[int, dict[str, object]] | None:
        """The gateway's /health status code and body, or None while it does not answer."""
        try:
            response = requests.get(self.api("/health"), timeout=5)
            return response.status_code, response.json()
        except (requests.ConnectionError, requests.Timeout, ValueError):
            return None

    def wait_for_workers(self, count: int, timeout: float = 120) -> None:
        """Wait until the gateway sees exactly ``count`` workers (and is healthy if > 0)."""
        deadline = time.monotonic() + timeout
        health = None
        while time.monotonic() < deadline:
            self.check_running()
            health = self.health()
            if health is not None and health.get("workers") == count:
                return
            time.sleep(0.1)
        raise TimeoutError(
            f"gateway health {health}, expected {count} workers after {timeout}s\n{self.logs()}"
        )

    def check_running(self) -> None:
        """Raise if a process started on a host exited on its own."""
        for host in self.network.hosts.values():
            for process in host.processes:
                if process.poll() is not None:
                    raise RuntimeError(
                        f"{host}: `{' '.join(process.args[4:])}` exited with "
                        f"{process.returncode}"
                        f"\n{self.logs()}"
                    )

    def logs(self) -> str:
        """Every host's process output, for failure messages."""
        return "\n".join(host.log_text() for host in self.network.hosts.values())


@contextlib.contextmanager
def computethis_cluster(
    workdir: Path, *, scheduler_env: dict[str, str] | None = None, start: bool = True
) -> Iterator[Cluster]:
    """A fresh four-host cluster (started unless ``start=False``), torn down on exit.

    Raises :class:`NetnsUnavailable` when this machine cannot build namespaces.
    """
    with Network(HOSTS) as network:
        cluster = Cluster(network, workdir, scheduler_env=dict(scheduler_env or {}))
        if start:
            cluster.start()
        yield cluster
