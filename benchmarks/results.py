"""What a benchmark reports: rows checked against targets, plus raw data for the JSON."""

from __future__ import annotations

import math
import operator
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

_OPS: dict[str, Callable[[float, float], bool]] = {"<=": operator.le, ">=": operator.ge}
INFO = "info"  # a row's op when it compares without a target (a second comparator)


@dataclass
class Row:
    """One measured quantity, checked against a target (``value OP target``)."""

    metric: str
    value: float
    op: str
    target: float
    unit: str = ""
    computethis: float | None = None
    theirs: float | None = None  # the comparator's: direct Dask unless the metric names one

    @property
    def passed(self) -> bool:
        """Whether the target is met (a row without a target, :data:`INFO`, has none)."""
        if self.op == INFO:
            return True
        return not math.isnan(self.value) and _OPS[self.op](self.value, self.target)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "passed": None if self.op == INFO else self.passed}


@dataclass
class BenchResult:
    """A benchmark's rows and whatever raw measurements it wants kept."""

    name: str
    rows: list[Row] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "rows": [row.to_json() for row in self.rows],
            "passed": all(row.passed for row in self.rows),
            "seconds": round(self.seconds, 3),
            "data": self.data,
        }


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100), linear between closest ranks."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else math.nan


def timed(call: Callable[[], Any], expected: Any = None) -> float:
    """Seconds ``call()`` takes; with ``expected``, its result must equal that."""
    start = time.perf_counter()
    value = call()
    elapsed = time.perf_counter() - start
    assert expected is None or value == expected, "results differ from the input"
    return elapsed
