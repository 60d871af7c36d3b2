"""``computethis worker``: Dask workers (one thread each), each behind a nanny.

Dask's nanny restarts a worker process that dies, but a nanny closes itself when it
loses the scheduler. So each nanny here is supervised: unless the command was asked to
stop, a nanny that closed is replaced by a new one, which waits for the scheduler to come
back and registers again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Iterable
from typing import Any

import dask
import psutil
from distributed import Nanny
from distributed.core import Status

from scheduler.config import set_defaults

log = logging.getLogger("computethis.worker")
RECONNECT_DELAY = 1.0
CLOSE_TIMEOUT = 10.0
PRE_SPAWN_ENVIRON = "distributed.nanny.pre-spawn-environ"
# glibc backs large allocations with transparent huge pages: a fresh 256 MB buffer (an
# unpickled array, say) is then filled ~3x faster, since its pages fault in 2 MB at a time.
HUGE_PAGES_TUNABLE = "glibc.malloc.hugetlb=1"
PRELOAD = "distributed.worker.preload"
PRELOAD_ARGV = "distributed.worker.preload-argv"
WORKER_PRELOAD = "worker.preload"  # imports the job runner; shortens the stream

WORKER_CONFIG: dict[str, object] = {
    # Dask's statistical profiler samples each worker's stack every 10 ms, for the
    # dashboard's profile page; computethis's workers run no dashboard. Without it a
    # running job is no longer interrupted 100 times a second, and 32 idle workers with
    # their nannies use ~0.45 of a core instead of ~1.5 (with the tick below).
    "distributed.worker.profile.enabled": False,
    # How often each worker and nanny checks that its event loop is responsive (Dask's
    # default: 20 ms); it only feeds the "event loop was unresponsive" warning (3 s).
    "distributed.admin.tick.interval": "100ms",
}


def prepare_worker_processes() -> None:
    """Dask settings for the nannies this process makes and the workers they start.

    A setting given as a DASK_* environment variable wins over computethis's default.
    """
    set_defaults(WORKER_CONFIG)
    huge_page_environ()
    preload_worker_setup()


def preload_worker_setup() -> None:
    """Have every worker process run :mod:`worker.preload` as it starts (a Dask preload):
    the job runner imported at once, the stream to the scheduler shortened. Preloads the
    user configured are kept."""
    configured = dask.config.get(PRELOAD, default=[]) or []
    preloads = [configured] if isinstance(configured, str) else list(configured)
    if WORKER_PRELOAD in preloads:
        return
    settings: dict[str, Any] = {PRELOAD: [*preloads, WORKER_PRELOAD]}
    argv = list(dask.config.get(PRELOAD_ARGV, default=[]) or [])
    if argv and not isinstance(argv[0], str):  # one argv per preload: ours takes none
        settings[PRELOAD_ARGV] = [*argv, []]
    dask.config.set(settings)


def huge_page_environ() -> None:
    """Have the nannies start worker processes with glibc's huge-page tunable set.

    Through Dask's ``pre-spawn-environ`` (as Dask sets ``MALLOC_TRIM_THRESHOLD_``):
    glibc reads ``GLIBC_TUNABLES`` only when a process starts. Tunables already set
    (there or in this process's environment) are kept, ``glibc.malloc.hugetlb=0``
    included; other C libraries ignore the variable.
    """
    environ = dict(dask.config.get(PRE_SPAWN_ENVIRON, default={}) or {})
    current = str(environ.get("GLIBC_TUNABLES") or os.environ.get("GLIBC_TUNABLES", ""))
    if "glibc.malloc.hugetlb" not in current:
        environ["GLIBC_TUNABLES"] = f"{current}:{HUGE_PAGES_TUNABLE}".lstrip(":")
        dask.config.set({PRE_SPAWN_ENVIRON: environ})


def worker_names(name: str | None, count: int) -> list[str | None]:
    if name is None:
        return [None] * count
    return [name] if count == 1 else [f"{name}-{i}" for i in range(count)]


async def supervise(
    scheduler: str, name: str | None, host: str | None, stop: asyncio.Event
) -> None:
    """Keep one single-threaded worker connected to ``scheduler`` until ``stop`` is set.

    However long the scheduler is unreachable (not started yet, restarting), the
    worker keeps trying to connect: it never gives up and exits.
    """
    while not stop.is_set():
        nanny = Nanny(scheduler, nthreads=1, name=name, host=host, dashboard=False)
        try:
            started = await _until_stopped(nanny.start(), stop)
        except Exception as exc:  # the scheduler stayed unreachable past Dask's connect timeout
            log.warning("worker %s cannot reach %s (%s); trying again", name, scheduler, exc)
            await _close(nanny)
            await asyncio.sleep(RECONNECT_DELAY)
            continue
        if not started:
            await _close(nanny)
            return
        await _until_stopped(nanny.finished(), stop)
        if stop.is_set():
            await _close(nanny)
            return
        log.warning("worker %s lost the scheduler; reconnecting", name)
        await asyncio.sleep(RECONNECT_DELAY)


async def close_nannies(nannies: Iterable[Nanny]) -> None:
    """Stop the worker processes of ``nannies``, then the nannies, all at once: as the
    ``computethis worker`` command does on SIGTERM (see :func:`_close`)."""
    await asyncio.gather(*(_close(nanny) for nanny in nannies))


async def _close(nanny: Nanny) -> None:
    """Stop a nanny's worker process, then the nanny, giving up after CLOSE_TIMEOUT (its
    process is killed in main).

    The worker process is stopped while its nanny still listens: a worker told to close
    by its scheduler at the same moment (a whole cluster stopping) first calls its
    nanny, and ``Nanny.close`` stops listening before it stops the worker, which then
    waited for that call until the nanny killed it, 4 s later.

    A job still running is not waited for: a closing worker tells its scheduler it is
    gone before it waits for its jobs, so the job is already handed to another worker and
    its result would be dropped. A worker process still starting (its nanny restarting
    it) is ended at once: it has no job yet, and Dask would first wait for it to finish
    starting, which it never does when its scheduler is stopping too.
    """
    try:
        await asyncio.wait_for(_stop_worker_then_nanny(nanny), CLOSE_TIMEOUT)
    except (asyncio.TimeoutError, Exception) as exc:
        log.warning("worker %s did not close cleanly (%r)", nanny.name, exc)


async def _stop_worker_then_nanny(nanny: Nanny) -> None:
    worker = nanny.process
    if worker is not None and worker.status in (Status.running, Status.starting):
        nanny.close_gracefully(reason="computethis-worker-stop")  # not restarted
        if worker.status == Status.running:
            await worker.kill(
                timeout=CLOSE_TIMEOUT / 2, executor_wait=False, reason="computethis-worker-stop"
            )
        elif worker.process is not None:
            await worker.process.terminate()
    await nanny.close(timeout=CLOSE_TIMEOUT / 2)


async def _until_stopped(awaitable: Any, stop: asyncio.Event) -> bool:
    """Await ``awaitable`` unless ``stop`` is set first; True if it completed."""
    task = asyncio.ensure_future(awaitable)
    stopped = asyncio.ensure_future(stop.wait())
    await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    if not task.done():
        task.cancel()
        return False
    task.result()
    return True


async def run_workers(scheduler: str, nworkers: int, name: str | None, host: str | None) -> None:
    """Run ``nworkers`` supervised single-threaded workers until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"computethis: {nworkers} worker(s) for {scheduler}", flush=True)
    await asyncio.gather(
        *(
            supervise(scheduler, worker_name, host, stop)
            for worker_name in worker_names(name, nworkers)
        )
    )


def main(scheduler: str, nworkers: int, name: str | None, host: str | None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    prepare_worker_processes()
    try:
        asyncio.run(run_workers(scheduler, nworkers, name, host))
    finally:
        _kill_leftover_children()


def _kill_leftover_children() -> None:
    """A worker process caught mid-restart may outlive its nanny: end it by pid.

    multiprocessing's resource tracker (which the nannies' spawned processes share) is
    ended too, without a warning: it is always there.
    """
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            if "multiprocessing.resource_tracker" not in " ".join(child.cmdline()):
                log.warning("killing leftover worker process %d", child.pid)
            child.kill()
