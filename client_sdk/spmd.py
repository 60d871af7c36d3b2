"""The communicator of an SPMD program: a folder job's command run on N workers at once
(``run_folder(..., ranks=N)``, ``computethis run FOLDER --ranks N -- CMD``).

    from client_sdk import spmd

    comm = spmd.world()
    comm.send(f"hi from {comm.rank}", dest=(comm.rank + 1) % comm.size)
    print(comm.recv(source=(comm.rank - 1) % comm.size))

Each rank's worker starts the command with :data:`WORLD_VARIABLE` set (JSON: the job,
this rank, the size, the job's secret, every rank's address, and the listening socket
the worker opened for this rank, inherited); :func:`world` connects to the other ranks
with it (directly, authenticated, over Dask's TLS when the cluster uses it), once per
process. Outside an SPMD job it is a world of one rank, so a program also runs alone.

The communicator closes cleanly when the program exits; an exception that ends the
program aborts the others first (their blocked ``recv`` raises ``RankFailed``, which,
uncaught, ends their program with :data:`PEER_FAILED_EXIT`).
"""

from __future__ import annotations

import atexit
import json
import os
import socket
import sys
import threading
from typing import Any

from client_sdk.spmd_comm import Communicator, KnownAddresses, RankFailed, connect

__all__ = ["PEER_FAILED_EXIT", "WORLD_VARIABLE", "Communicator", "RankFailed", "world"]

WORLD_VARIABLE = "COMPUTETHIS_SPMD"
# The exit status of a program ended by another rank's failure (an uncaught RankFailed):
# the job's error is then the failed rank's, not this one's.
PEER_FAILED_EXIT = 75
CONNECT_TIMEOUT = 600.0  # seconds every rank's program has to call world()

_lock = threading.Lock()
_world: Communicator | None = None


def world(timeout: float = CONNECT_TIMEOUT) -> Communicator:
    """This program's communicator (``rank``, ``size``, ``send``/``recv`` and the
    collectives of :class:`~client_sdk.spmd_collectives.Communicator`; ``encrypted``
    when its connections use the cluster's TLS), connected to every other rank on the
    first call, the same one afterwards. Every rank must call it; past ``timeout``
    seconds without all of them, TimeoutError."""
    global _world
    with _lock:
        if _world is None:
            _world = _connect(os.environ.pop(WORLD_VARIABLE, None), timeout)
            atexit.register(_world.close)  # after a failure: passes it on instead
            _abort_on_uncaught(_world)
        return _world


def _connect(setting: str | None, timeout: float) -> Communicator:
    if not setting:
        return Communicator(0, 1)
    try:
        config: dict[str, Any] = json.loads(setting)
        rank, size = int(config["rank"]), int(config["size"])
        addresses = [(str(host), int(port)) for host, port in config["addresses"]]
        listener = socket.socket(fileno=int(config["listener"]))
        secret = bytes.fromhex(config["secret"])
    except (ValueError, KeyError, TypeError, OSError) as exc:
        raise RuntimeError(
            f"{WORLD_VARIABLE} is not what a computethis worker sets ({exc}): run the "
            "program as an SPMD job (run_folder(..., ranks=N)), or unset it to run alone"
        ) from None
    server, client = _tls_contexts(config.get("tls"))
    comm = connect(
        rank,
        size,
        secret,
        str(config["job"]),
        KnownAddresses(addresses),
        timeout=timeout,
        ssl_server=server,
        ssl_client=client,
        listener=listener,
    )
    comm.encrypted = server is not None  # type: ignore[attr-defined]  # over Dask's TLS
    return comm


def _tls_contexts(tls: dict[str, str] | None) -> tuple[Any, Any]:
    """The worker's Dask TLS contexts (server, client), made from its certificate."""
    if not tls:
        return None, None
    from distributed.security import Security

    security = Security(
        tls_ca_file=tls["ca"],
        tls_worker_cert=tls["cert"],
        tls_worker_key=tls.get("key"),
        require_encryption=True,
    )
    server = security.get_listen_args("worker")["ssl_context"]
    client = security.get_connection_args("worker")["ssl_context"]
    return server, client


def _abort_on_uncaught(comm: Communicator) -> None:
    """An exception that ends the program aborts the other ranks (naming this one)."""
    previous = sys.excepthook

    def hook(kind: type[BaseException], error: BaseException, trace: Any) -> None:
        if not isinstance(error, RankFailed):
            comm.abort(error)
            previous(kind, error, trace)
            return
        previous(kind, error, trace)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(PEER_FAILED_EXIT)

    sys.excepthook = hook
