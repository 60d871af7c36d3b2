"""The low and high of a price column: on the cluster (the file read a chunk at a
time, each chunk scanned on a worker through the SDK, the answers merged) and, to compare, in one
process with pandas."""

from __future__ import annotations

import csv
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from functools import reduce
from pathlib import Path

from client_sdk import Job, compute_this
from demos.prices.ticks import Extremes, scan, scan_item

CHUNK_BYTES = 4 << 20  # bytes of CSV per job (about 90,000 ticks)
IN_FLIGHT = 4  # chunk jobs submitted and not yet collected, at most


@dataclass
class Answer:
    """The extremes found, how long it took, and how."""

    extremes: Extremes
    seconds: float
    how: str


def columns(path: Path) -> list[str]:
    """The CSV's column names (its first line)."""
    with open(path, newline="", encoding="utf-8", errors="replace") as file:
        return next(csv.reader(file), [])


def column_index(path: Path, column: str) -> int:
    """Where ``column`` is; ValueError naming the columns there are."""
    names = columns(path)
    if column not in names[1:]:
        raise ValueError(
            f"{path.name} has no price column {column!r}: pick one of {', '.join(names[1:])}"
        )
    return names.index(column)


def chunks(path: Path, size: int = CHUNK_BYTES) -> Iterator[bytes]:
    """The file after its header, ``size`` bytes at a time, each cut after a whole line
    (only one chunk is in memory at a time)."""
    with open(path, "rb") as file:
        file.readline()
        rest = b""
        while block := file.read(size):
            block = rest + block
            cut = block.rfind(b"\n") + 1
            if cut:
                yield block[:cut]
                rest = block[cut:]
            else:
                rest = block
        if rest:
            yield rest


def on_cluster(
    path: Path, column: str, size: int = CHUNK_BYTES, in_flight: int = IN_FLIGHT
) -> Answer:
    """Scan the file's chunks on the cluster's workers (one job per chunk, at most
    ``in_flight`` submitted and not yet collected: the client holds that many chunks at
    most) and merge their answers in file order."""
    index = column_index(path, column)
    started = time.perf_counter()
    remote = compute_this(name=f"prices-{column}")(scan_item)
    waiting: deque[Job] = deque()
    merged, count = Extremes(), 0
    for chunk in chunks(path, size):
        if len(waiting) >= in_flight:
            merged = merged.merge(Extremes(**waiting.popleft().result()))
        waiting.append(remote.submit((chunk, index)))
        count += 1
    while waiting:
        merged = merged.merge(Extremes(**waiting.popleft().result()))
    return Answer(merged, time.perf_counter() - started, f"{count} chunks on the cluster")


def in_one_process(path: Path, column: str) -> Answer:
    """The same answer in this process: pandas if it is installed, else plain Python."""
    column_index(path, column)
    started = time.perf_counter()
    try:
        import pandas as pd
    except ImportError:
        index = column_index(path, column)
        merged = reduce(Extremes.merge, (scan(chunk, index) for chunk in chunks(path)), Extremes())
        return Answer(merged, time.perf_counter() - started, "one process, plain Python")
    frame = pd.read_csv(path, usecols=["Timestamp", column], dtype=str, keep_default_na=False)
    values = pd.to_numeric(frame[column], errors="coerce")
    good = values.notna() & (values >= 0) & (values != float("inf"))
    valid = values[good]
    found = Extremes(valid=int(good.sum()), invalid=int((~good).sum()))
    if len(valid):
        low, high = valid.idxmin(), valid.idxmax()
        found.low, found.low_at = float(values[low]), str(frame["Timestamp"][low])
        found.high, found.high_at = float(values[high]), str(frame["Timestamp"][high])
    return Answer(found, time.perf_counter() - started, "one process, pandas")
