"""``computethis worker``: Dask workers (one thread each), each behind a nanny."""

from __future__ import annotations

import asyncio
import signal

from distributed import Nanny


def worker_names(name: str | None, count: int) -> list[str | None]:
    if name is None:
        return [None] * count
    return [name] if count == 1 else [f"{name}-{i}" for i in range(count)]


async def run_workers(scheduler: str, nworkers: int, name: str | None, host: str | None) -> None:
    """Run ``nworkers`` single-threaded workers until SIGINT or SIGTERM.

    Each worker sits behind a nanny, so Dask restarts it if it dies, and the
    gateway can restart it to stop a job (timeout, cancel).
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    nannies = [
        Nanny(scheduler, nthreads=1, name=worker_name, host=host, dashboard=False)
        for worker_name in worker_names(name, nworkers)
    ]
    await asyncio.gather(*(nanny.start() for nanny in nannies))
    print(f"computethis: {nworkers} worker(s) connected to {scheduler}", flush=True)
    finished = [asyncio.ensure_future(nanny.finished()) for nanny in nannies]
    stopped = asyncio.ensure_future(stop.wait())
    await asyncio.wait({*finished, stopped}, return_when=asyncio.FIRST_COMPLETED)
    await asyncio.gather(*(nanny.close() for nanny in nannies), return_exceptions=True)


def main(scheduler: str, nworkers: int, name: str | None, host: str | None) -> None:
    asyncio.run(run_workers(scheduler, nworkers, name, host))
