"""Run one rank of an SPMD program: a folder job's command on N workers at once, each in
its own sandbox with the folder (:func:`worker.folder.run_in_sandbox`).

The ranks' tasks meet as a function's ranks do (:func:`worker.spmd.meet`); each then
opens a listening socket for its program, and they exchange those addresses. The
command starts with the torch-style variables (``RANK``, ``WORLD_SIZE``...) and
:data:`client_sdk.spmd.WORLD_VARIABLE`, with which :func:`client_sdk.spmd.world`
connects the programs to each other (on the inherited socket, with a secret of their
own). While it runs, the task watches its own connections: once another rank failed,
it kills its command.

A rank whose command fails (a non-zero exit, or it could not run) aborts the others and
fails the job with its error, the message naming the rank (its output is in the job's
logs; no outputs are kept for a failed program). When every command exited 0,
rank 0 gathers each rank's outputs and reports one result: a zip with each rank's files
under ``rank-<r>/`` and each one's exit status (``returncodes``).
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import socket
import threading
import time
import zipfile
from typing import Any

from client_sdk.spmd import PEER_FAILED_EXIT, WORLD_VARIABLE
from client_sdk.spmd_comm import Communicator, RankFailed
from wire.http import OUTPUTS_DIR, RUN_MEMBER
from worker.folder import KEPT_NOTE, ZIP_DATE, SandboxRun, run_in_sandbox
from worker.live_output import LiveOutput
from worker.runner import current_worker
from worker.sandbox import kill_group
from worker.spmd import named, rank_failure, rank_variables, run_as_rank, worker_host

WATCH_EVERY = 0.1  # seconds between two looks for another rank's failure
PEER_GRACE = 10.0  # seconds for the failure that ended a program to reach its rank


class ProgramFailed(Exception):
    """This rank's command failed; ``error`` is the job's error for it."""

    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(error.get("message", "the command failed"))
        self.error = error

    def __reduce__(self) -> tuple[Any, ...]:
        return ProgramFailed, (self.error,)


def run_program_rank(
    job_id: str,
    run: bytes,
    bundle: bytes | memoryview | None,
    rank: int,
    size: int,
    secret: bytes,
) -> memoryview | None:
    """Run rank ``rank`` of ``size`` of the SPMD program ``job_id`` (``run``: the folder
    job's JSON; ``bundle``: the folder's tar), as :func:`worker.spmd.run_as_rank` runs
    a rank. Rank 0 returns the job's packed envelope or raises :class:`worker.runner.JobFailed`; the
    other ranks return None, whatever happens."""
    worker = current_worker()

    def work(comm: Communicator, logs: LiveOutput) -> tuple[int | None, bytes]:
        ran = _run_program(job_id, json.loads(run), bundle, comm, secret, worker, logs)
        if ran.returncode == PEER_FAILED_EXIT:  # another rank failed first: its error
            _wait_for_failure(comm, PEER_GRACE)
        if comm.failure() is not None:
            raise comm.failure()  # type: ignore[misc]
        if not ran.ok:
            raise ProgramFailed(named_error(ran.error or {}, rank, size))
        return ran.returncode, ran.body

    return run_as_rank(
        job_id,
        rank,
        size,
        secret,
        work,
        merge=lambda ranks: (merged_outputs(ranks), True),
        failure=lambda exc, comm: (_program_error(exc, comm, size, rank), b""),
    )


def _run_program(
    job_id: str,
    spec: dict[str, Any],
    bundle: bytes | memoryview | None,
    comm: Communicator,
    secret: bytes,
    worker: Any,
    logs: LiveOutput,
) -> SandboxRun:
    """Run this rank's command with what :func:`client_sdk.spmd.world` needs; kill it
    once another rank failed."""
    host = worker_host(worker)
    with socket.create_server(("0.0.0.0", 0), backlog=max(64, comm.size)) as listener:
        addresses = comm.allgather([host, listener.getsockname()[1]])
        world = {
            "job": f"{job_id}:program",
            "rank": comm.rank,
            "size": comm.size,
            # the programs' own secret: the tasks' connections stay theirs
            "secret": hmac.new(secret, b"program", hashlib.sha256).hexdigest(),
            "addresses": addresses,
            "listener": listener.fileno(),
            "tls": _tls_files(worker),
        }
        env = {**rank_variables(comm, job_id, worker), WORLD_VARIABLE: json.dumps(world)}
        watch = _Watch(comm)
        try:
            return run_in_sandbox(
                job_id,
                spec,
                bundle,
                logs,
                worker.address if worker is not None else None,
                env=env,
                pass_fds=(listener.fileno(),),
                on_start=watch.start,
            )
        finally:
            watch.stop()


class _Watch:
    """Kills the command's process group once another rank has failed."""

    def __init__(self, comm: Communicator) -> None:
        self._comm = comm
        self._done = threading.Event()

    def start(self, group: int) -> None:
        threading.Thread(target=self._watch, args=(group,), daemon=True).start()

    def stop(self) -> None:
        self._done.set()

    def _watch(self, group: int) -> None:
        while not self._done.wait(WATCH_EVERY):
            if self._comm.failure() is not None:
                kill_group(group)
                return


def _wait_for_failure(comm: Communicator, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while comm.failure() is None and time.monotonic() < deadline:
        time.sleep(WATCH_EVERY / 2)


def _tls_files(worker: Any) -> dict[str, str] | None:
    """The worker's Dask TLS certificate (paths or PEM text), for the program's ranks."""
    if worker is None or not str(worker.address).startswith("tls://"):
        return None
    security = worker.security
    return {
        "ca": security.tls_ca_file,
        "cert": security.tls_worker_cert,
        "key": security.tls_worker_key,
    }


def named_error(error: dict[str, Any], rank: int, size: int) -> dict[str, Any]:
    """``error`` (a failed command's) with its message naming the rank."""
    message = str(error.get("message", "")).replace(
        KEPT_NOTE, "its output is in the job's logs (a failed program keeps no files)"
    )
    return {**error, "message": f"rank {rank} of {size}: {message}", "rank": rank}


def _program_error(
    exc: BaseException, comm: Communicator | None, size: int, rank: int
) -> dict[str, Any]:
    """The job's error: the failed command's (this rank's or another's), else the
    failure of the rank itself (its worker died, it could not meet the others...)."""
    if isinstance(exc, ProgramFailed):
        return exc.error
    if isinstance(exc, RankFailed) and isinstance(exc.error, ProgramFailed):
        return exc.error.error
    if isinstance(exc, RankFailed) or comm is None:
        return rank_failure(exc, comm, size, rank)[0]
    return named(exc, rank, size)


def merged_outputs(ranks: list[tuple[int | None, bytes]]) -> bytes:
    """One outputs zip from each rank's (exit status, zip): rank r's files under
    ``rank-<r>/``, and a run summary with every rank's exit status."""
    buffer = io.BytesIO()
    files: list[dict[str, Any]] = []
    summaries: list[dict[str, Any]] = []
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED, allowZip64=True) as merged:
        for rank, (_, zipped) in enumerate(ranks):
            if not zipped:
                summaries.append({})
                continue
            with zipfile.ZipFile(io.BytesIO(zipped)) as own:
                summaries.append(json.loads(own.read(RUN_MEMBER)))
                for info in own.infolist():
                    if not info.filename.startswith(OUTPUTS_DIR):
                        continue
                    path = f"rank-{rank}/{info.filename[len(OUTPUTS_DIR) :]}"
                    copied = zipfile.ZipInfo(OUTPUTS_DIR + path, ZIP_DATE)
                    copied.external_attr = info.external_attr
                    with own.open(info) as source, merged.open(copied, "w") as out:
                        while block := source.read(1 << 20):
                            out.write(block)
                    files.append({"path": path, "size": info.file_size})
        codes = [code for code, _ in ranks]
        summary = {
            "returncode": next((code for code in codes if code), 0),
            "returncodes": codes,
            "timed_out": any(s.get("timed_out") for s in summaries),
            "duration": max((s.get("duration", 0.0) for s in summaries), default=0.0),
            "stdout": _labelled([s.get("stdout", "") for s in summaries]),
            "stderr": _labelled([s.get("stderr", "") for s in summaries]),
            "files": files,
        }
        merged.writestr(zipfile.ZipInfo(RUN_MEMBER, ZIP_DATE), json.dumps(summary))
    return buffer.getvalue()


def _labelled(texts: list[str]) -> str:
    """Rank 0's text, then each other rank's under a ``[rank r]`` line."""
    return "".join([texts[0], *(f"[rank {r}]\n{t}" for r, t in enumerate(texts) if r and t)])
