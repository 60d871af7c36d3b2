"""Many threads making sequential calls at once, the way many users' clients would."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any


def hammer(call: Callable[[int], Any], threads: int, calls: int) -> float:
    """Seconds for ``threads`` threads to make ``calls`` calls each, started together."""
    barrier = threading.Barrier(threads + 1)
    errors: list[BaseException] = []

    def work(offset: int) -> None:
        barrier.wait()
        try:
            for i in range(calls):
                if call(offset + i) != offset + i:
                    raise AssertionError("wrong result")
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    workers = [
        threading.Thread(target=work, args=(t * calls,), daemon=True) for t in range(threads)
    ]
    for worker in workers:
        worker.start()
    barrier.wait()
    start = time.perf_counter()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise errors[0]
    return elapsed
