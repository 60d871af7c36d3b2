"""Run one rank of an SPMD job on a Dask worker: meet the other ranks, run the user's
function with a communicator, and (rank 0) send back every rank's return value.

The ranks find each other through Dask (each publishes its listening address in a
``distributed.Variable`` named for the job) and then talk directly, worker to worker
(:mod:`client_sdk.spmd_comm`), over TLS when the cluster uses Dask's TLS, each connection
authenticated with the job's secret. Rank 0 gathers the return values (and the other
ranks' output) and reports the job's outcome as :func:`worker.runner.run_job` does; a
rank that raises aborts the others, and rank 0 fails the job with that exception, its
message naming the rank.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

from client_sdk.pickling import dump_buffers
from client_sdk.spmd_comm import Communicator, RankFailed, connect
from wire.envelope import RESULT_TOPIC, Envelope, pack
from wire.errors import error_info, exception_info
from worker.live_output import LiveOutput
from worker.runner import (
    JobFailed,
    announce_start,
    current_worker,
    deliver,
    load_call,
    pickle_exception,
)

MEET_TIMEOUT = 24 * 3600.0  # seconds a rank waits for its peers (queued behind other jobs)
VARIABLE_PREFIX = "computethis-spmd"
MAX_REPORTED_EXCEPTION = 64 * 1024  # a pickled exception a rank's event may carry


class DaskRendezvous:
    """Ranks publish and look up their addresses in Dask Variables named for the job."""

    def __init__(self, job_id: str, secret: bytes) -> None:
        from distributed import Variable, get_client

        self._client = get_client()
        # Each sending of the job has its own secret, so its own variables.
        self._job_id = f"{job_id}-{hashlib.sha256(secret).hexdigest()[:12]}"
        self._variable = Variable
        self._names: list[str] = []

    def _named(self, what: str | int) -> Any:
        name = f"{VARIABLE_PREFIX}-{self._job_id}-{what}"
        self._names.append(name)
        return self._variable(name, client=self._client)

    def publish(self, rank: int, address: tuple[str, int]) -> None:
        """Tell the other ranks where ``rank`` listens."""
        self._named(rank).set(list(address))

    def lookup(self, rank: int, timeout: float) -> tuple[str, int]:
        """Where ``rank`` listens, once it has said (TimeoutError past ``timeout``)."""
        host, port = self._named(rank).get(timeout=timeout)
        return host, int(port)

    def share(self, what: str, value: Any | None, timeout: float) -> Any:
        """Publish ``value`` under ``what`` (rank 0), or wait for it (the others)."""
        variable = self._named(what)
        if value is not None:
            variable.set(value)
            return value
        return variable.get(timeout=timeout)

    def forget(self) -> None:
        """Delete the job's variables (rank 0, once every rank has met)."""
        for name in set(self._names):
            with contextlib.suppress(Exception):
                self._variable(name, client=self._client).delete()


def run_rank(
    job_id: str, payload: bytes | memoryview, rank: int, size: int, secret: bytes
) -> memoryview | None:
    """Run rank ``rank`` of ``size`` of the SPMD job ``job_id`` (``payload``: dill bytes of
    ``(func, args, kwargs)``; ``func`` gets the communicator first). Rank 0 returns the
    job's packed envelope (the list of every rank's return value) or raises
    :class:`JobFailed`; the other ranks return None, whatever happens."""
    worker = current_worker()

    def work(comm: Communicator, output: LiveOutput) -> Any:
        func, args, kwargs = load_call(payload)
        with _rank_environment(comm, job_id, worker), _captured(output):
            return func(comm, *args, **kwargs)

    return run_as_rank(
        job_id,
        rank,
        size,
        secret,
        work,
        merge=lambda values: (dump_buffers(values), False),
        failure=lambda exc, comm: rank_failure(exc, comm, size, rank),
    )


def run_as_rank(
    job_id: str,
    rank: int,
    size: int,
    secret: bytes,
    work: Callable[[Communicator, LiveOutput], Any],
    merge: Callable[[list[Any]], tuple[Any, bool]],
    failure: Callable[[BaseException, Communicator | None], tuple[dict, bytes]],
) -> memoryview | None:
    """Be rank ``rank`` of ``size`` of an SPMD job: meet the other ranks, do this rank's
    ``work`` (with the communicator and the rank's output), and gather every rank's
    return value at rank 0, which reports the job's outcome: the body ``merge`` makes of
    them (and whether it is a result kept even on failure), the logs of every rank.

    A rank that raises aborts the others, and reports ``failure(exc, comm)`` (the job's
    error and body): rank 0 by raising :class:`JobFailed`, another rank straight to the
    gateway. A rank stopped by another's failure reports nothing. Rank 0 returns the
    packed envelope; the other ranks return None, whatever happens."""
    worker = current_worker()
    address = worker.address if worker is not None else None
    started = time.time()
    announced_done: Any = lambda: None  # noqa: E731 - replaced once the ranks have met
    output = LiveOutput(job_id, worker if rank == 0 else None)
    comm: Communicator | None = None
    try:
        comm = meet(job_id, rank, size, secret, worker)
        if rank == 0:  # running from here: a gang that never met can be sent again
            started = time.time()
            announced_done = announce_start(job_id, address, started)
        mine = work(comm, output)
        gathered = comm.gather((mine, output.encoded() if rank else b""), root=0)
        comm.close()
        if rank:
            return None
        assert gathered is not None
        body, result_body = merge([item[0] for item in gathered])
        logs = labelled_logs(output.encoded(), [item[1] for item in gathered])
        announced_done()
        envelope = Envelope(True, address, started, time.time(), None, body, logs, result_body)
        return deliver(job_id, address, pack(envelope))
    except BaseException as exc:  # noqa: BLE001 - every failure of a rank is reported
        if comm is not None:
            comm.abort(exc)
        if rank and isinstance(exc, RankFailed):
            return None  # another rank failed: it reports
        announced_done()
        error, body = failure(exc, comm)
        failed = pack(Envelope(False, address, started, time.time(), error, body, output.encoded()))
    if rank:  # straight to the gateway: rank 0 may be busy and not notice for long
        if worker is not None:
            message = {"job": job_id, "envelope": bytes(failed)}
            worker.loop.add_callback(worker.log_event, RESULT_TOPIC, message)
        return None
    raise JobFailed(bytes(failed))


def meet(job_id: str, rank: int, size: int, secret: bytes, worker: Any) -> Communicator:
    """Connect to every other rank of the job (one alone needs no one), through Dask."""
    if size == 1:
        return connect(0, 1, secret, job_id, _NoRendezvous())
    rendezvous = DaskRendezvous(job_id, secret)
    host = worker_host(worker)
    server, client = tls_contexts(worker)
    comm = connect(
        rank,
        size,
        secret,
        job_id,
        rendezvous,
        advertise=host,
        timeout=MEET_TIMEOUT,
        ssl_server=server,
        ssl_client=client,
    )
    master = rendezvous.share("master", [host, _free_port()] if rank == 0 else None, MEET_TIMEOUT)
    comm.master_address = (str(master[0]), int(master[1]))  # type: ignore[attr-defined]
    comm.hosts = comm.allgather(host)  # type: ignore[attr-defined]
    comm.encrypted = server is not None  # type: ignore[attr-defined]  # over Dask's TLS
    if rank == 0:
        rendezvous.forget()
    return comm


class _NoRendezvous:
    def publish(self, rank: int, address: tuple[str, int]) -> None:
        return None

    def lookup(self, rank: int, timeout: float) -> tuple[str, int]:
        raise TimeoutError("a single rank has no peers")


def worker_host(worker: Any) -> str:
    """The worker's host as the other workers reach it."""
    if worker is None:
        return "127.0.0.1"
    return urlsplit(worker.address).hostname or "127.0.0.1"


def tls_contexts(worker: Any) -> tuple[Any, Any]:
    """The worker's Dask TLS contexts (server, client) when it talks TLS, else Nones."""
    if worker is None or not str(worker.address).startswith("tls://"):
        return None, None
    security = worker.security
    server = security.get_listen_args("worker").get("ssl_context")
    client = security.get_connection_args("worker").get("ssl_context")
    return server, client


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("", 0))
        return probe.getsockname()[1]


def rank_variables(comm: Communicator, job_id: str, worker: Any) -> dict[str, str]:
    """``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT`` (as
    torch.distributed's ``env://`` reads them) and ``COMPUTETHIS_JOB_ID`` of a rank."""
    hosts = getattr(comm, "hosts", [worker_host(worker)])
    master = getattr(comm, "master_address", (worker_host(worker), _free_port()))
    return {
        "RANK": str(comm.rank),
        "WORLD_SIZE": str(comm.size),
        "LOCAL_RANK": str(hosts[: comm.rank].count(hosts[comm.rank])),
        "MASTER_ADDR": master[0],
        "MASTER_PORT": str(master[1]),
        "COMPUTETHIS_JOB_ID": job_id,
    }


@contextlib.contextmanager
def _rank_environment(comm: Communicator, job_id: str, worker: Any) -> Iterator[None]:
    """The :func:`rank_variables` while the rank runs; the worker's own afterwards."""
    values = rank_variables(comm, job_id, worker)
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def _captured(output: LiveOutput) -> Iterator[None]:
    with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
        try:
            yield
        finally:
            output.end()


def labelled_logs(own: bytes, others: list[bytes]) -> bytes:
    """Rank 0's output (``own``), then each other rank's under a ``[rank r]`` line."""
    parts = [own]
    for rank, logs in enumerate(others[1:], start=1):
        if logs:
            parts.append(f"[rank {rank}]\n".encode() + logs)
    return b"".join(parts)


def rank_failure(
    exc: BaseException, comm: Communicator | None, size: int, rank: int
) -> tuple[dict, bytes]:
    """The job's error and pickled exception: this rank's own, or the failed rank's."""
    if isinstance(exc, RankFailed) and exc.rank is not None:
        original = getattr(exc, "error", None)
        if isinstance(original, BaseException):
            return named(original, exc.rank, size), pickle_exception(original)
        message = (
            f"rank {exc.rank} of {size} stopped answering: its worker died or lost its "
            f"connection ({exc}); run the job again"
        )
        return error_info("WorkerDied", message), b""
    pickled = pickle_exception(exc)
    return named(exc, rank, size), pickled if len(pickled) <= MAX_REPORTED_EXCEPTION else b""


def named(exc: BaseException, rank: int, size: int) -> dict:
    """The error of ``exc``, raised on ``rank``: its message and a note name the rank."""
    note = f"raised on rank {rank} of {size}"
    if hasattr(exc, "add_note") and note not in getattr(exc, "__notes__", ()):
        exc.add_note(note)
    info = exception_info(exc)
    info["message"] = f"{info['message']} ({note})"
    info["rank"] = rank
    return info
