"""The results table on stdout and the JSON file."""

from __future__ import annotations

import json
import math
import os
import platform
import time
from pathlib import Path
from typing import Any

from benchmarks.config import Sizes
from benchmarks.results import INFO, BenchResult

COLUMNS = ("benchmark", "metric", "computethis", "theirs", "unit", "value", "target", "result")


def _number(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def table(results: list[BenchResult], errors: dict[str, str]) -> str:
    """A fixed-width table: one line per row, ``value OP target`` decides PASS/FAIL."""
    lines: list[tuple[str, ...]] = [COLUMNS]
    for result in results:
        for row in result.rows:
            lines.append(
                (
                    result.name,
                    row.metric,
                    _number(row.computethis),
                    _number(row.theirs),
                    row.unit,
                    _number(row.value),
                    "" if row.op == INFO else f"{row.op} {row.target:g}",
                    "-" if row.op == INFO else "PASS" if row.passed else "FAIL",
                )
            )
    for name, error in errors.items():
        lines.append((name, error[:60], "-", "-", "", "-", "", "ERROR"))
    widths = [max(len(line[i]) for line in lines) for i in range(len(COLUMNS))]
    rule = "-+-".join("-" * width for width in widths)
    rendered = [
        " | ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True))
        for line in lines
    ]
    return "\n".join([rendered[0], rule, *rendered[1:]])


def write_json(
    path: Path, results: list[BenchResult], errors: dict[str, str], sizes: Sizes, quick: bool
) -> None:
    """All rows, raw measurements and the run's context as JSON."""
    document: dict[str, Any] = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "quick": quick,
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
        "sizes": {key: getattr(sizes, key) for key in sizes.__dataclass_fields__},
        "benchmarks": {result.name: result.to_json() for result in results},
        "errors": errors,
    }
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
