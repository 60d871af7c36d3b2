"""SPMD jobs on Dask: N ranks of one job on N distinct workers, started as a gang.

Dask has no gang scheduling (two collective jobs interleaving on the same workers
deadlock: dask/distributed#4485). Here each rank is a task pinned to one worker
(``workers=[address]``, no stealing), all ranks of a job are sent together, and every
rank has a priority above single jobs, higher the older its job (its sequence number in
the store: Dask gives tasks of separate submissions the same generation, so their order
must be in the priority itself). A worker runs the highest-priority task it holds next,
so:

- the oldest waiting gang's ranks are first in line on each of its workers: it always
  completes, and two gangs that need the same workers run one after the other;
- a worker that frees up takes its gang rank before any single job, which holds the
  worker for the gang (a rank waits for its peers before running the user's code), so
  a stream of single jobs cannot starve a gang.

Rank 0 runs under the job's own key and reports the job's outcome (every rank's return
value, gathered over the ranks' own connections); the other ranks' keys are held and
released with it by the keep-alive plugin.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

from distributed import Client, Future

from gateway.dask.link import rank_key
from gateway.store import FOLDER, Job
from worker.spmd import run_rank
from worker.spmd_program import run_program_rank

log = logging.getLogger(__name__)

GANG_PRIORITY = 1 << 50  # minus the job's sequence number: above single jobs (priority 0)
RESTART_TIMEOUT = 60  # seconds a stopped rank's worker has to restart
STOP_GRACE = 2.0  # seconds the ranks of a stopped job have to end by themselves
FORGET_TIMEOUT = 10.0  # seconds for Dask to forget the ranks of a stopped job


def gang_workers(client: Client, workers: list[str], ranks: int) -> list[str]:
    """``ranks`` distinct workers for a gang: the least busy first (then by address).
    The scheduler is asked which workers there are now (``workers``, the cached view,
    may still hold one that just died)."""
    try:
        processing = client.processing()
        workers = list(processing)
    except Exception:
        processing = {}
    if ranks > len(workers):
        raise ValueError(f"{ranks} ranks, {len(workers)} workers")
    chosen = sorted(workers, key=lambda worker: (len(processing.get(worker, ())), worker))
    return chosen[:ranks]


def send_gang(client: Client, job: Job, arguments: tuple[Any, ...], workers: list[str]) -> None:
    """Send the ranks of ``job`` (an SPMD job: a function's, or with its folder's
    ``arguments`` a program's), rank r to ``workers[r]``, with a secret that
    authenticates their connections to each other."""
    ranks = job.ranks or 1
    task = run_program_rank if job.kind == FOLDER else run_rank
    secret = secrets.token_bytes(32)
    for rank in range(ranks):
        options: dict[str, Any] = {"key": rank_key(job.id, rank), "pure": False}
        if ranks > 1:  # one rank alone may run anywhere (and run again after its worker)
            options.update(
                workers=[workers[rank]],
                allow_other_workers=False,
                priority=GANG_PRIORITY - job.seq,
            )
        client.submit(task, job.id, *arguments, rank, ranks, secret, **options)


def stop_gang(
    client: Client, job_id: str, ranks: int, then: Callable[[], None] = lambda: None
) -> None:
    """Stop every rank of an SPMD job, in the background: ranks blocked on their peers
    end by themselves once one has failed or gone; the workers of those still running
    after :data:`STOP_GRACE` (busy computing) are restarted; then the keys are cancelled,
    and ``then`` is called."""
    keys = {rank_key(job_id, rank) for rank in range(ranks)}
    threading.Thread(target=_stop, args=(client, keys, then), daemon=True).start()


def _stop(client: Client, keys: set[str], then: Callable[[], None]) -> None:
    deadline = time.monotonic() + STOP_GRACE
    busy: list[str] = []
    while True:
        try:
            processing = client.processing()
        except Exception:
            break
        busy = [worker for worker, held in processing.items() if keys & set(held)]
        if not busy or time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    if busy:
        try:
            client.restart_workers(busy, timeout=RESTART_TIMEOUT, raise_for_error=False)
        except Exception:
            log.exception("could not restart workers %s", busy)
    with contextlib.suppress(Exception):  # forced: the keep-alive plugin holds them
        client.cancel([Future(key, client) for key in keys], force=True)
    _wait_forgotten(client, keys)
    then()


def _wait_forgotten(client: Client, keys: set[str]) -> None:
    """Wait (:data:`FORGET_TIMEOUT` at most) until neither the scheduler nor this client
    knows ``keys``: sent again under the same keys before that, the ranks would not run
    (the client would hand back its old future, the scheduler its old task)."""
    deadline = time.monotonic() + FORGET_TIMEOUT
    while time.monotonic() < deadline:
        try:
            known = client.sync(client.scheduler.computethis_states, keys=sorted(keys))
        except Exception:
            return
        if not known and not keys.intersection(client.futures):
            return
        time.sleep(0.05)
    log.warning("the scheduler still holds ranks of a stopped job: %s", sorted(keys))
