"""The functions the benchmarks run, plain (direct Dask runs them as they are).

The SDK side wraps them with ``compute_this``; being in a file that is not an
installed package, they are shipped by value, as a user's own functions would be.
"""

from __future__ import annotations

import time
from typing import Any


def noop(x: Any) -> Any:
    """Return the argument: a call with no work in it."""
    return x


def nap(seconds: float) -> float:
    """Sleep (holds a worker, needs no core)."""
    time.sleep(seconds)
    return seconds


def burn(iterations: int) -> int:
    """Pure-Python CPU work: ``iterations`` rounds of integer arithmetic."""
    total = 0
    for i in range(iterations):
        total = (total + i * i) % 1_000_003
    return total


def echo(data: Any) -> Any:
    """Return the (large) argument as the result."""
    return data


def burn_iterations(seconds: float) -> int:
    """How many :func:`burn` iterations take about ``seconds`` of CPU here."""
    probe = 200_000
    start = time.process_time()
    burn(probe)
    elapsed = max(time.process_time() - start, 1e-6)
    return max(1, int(probe * seconds / elapsed))
