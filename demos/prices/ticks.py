"""Scanning ticks: one chunk of CSV lines -> its low and high (with their timestamps)
and how many rows were invalid. Plain Python, so any worker runs it; this function is
what travels to the workers."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class Extremes:
    """The low and high of one column over some rows, and the rows skipped."""

    low: float | None = None
    low_at: str | None = None
    high: float | None = None
    high_at: str | None = None
    valid: int = 0
    invalid: int = 0

    def merge(self, later: Extremes) -> Extremes:
        """These rows' extremes followed by ``later``'s (a tie keeps the earlier row)."""
        merged = Extremes(
            self.low,
            self.low_at,
            self.high,
            self.high_at,
            self.valid + later.valid,
            self.invalid + later.invalid,
        )
        if later.low is not None and (merged.low is None or later.low < merged.low):
            merged.low, merged.low_at = later.low, later.low_at
        if later.high is not None and (merged.high is None or later.high > merged.high):
            merged.high, merged.high_at = later.high, later.high_at
        return merged


def scan_item(item: tuple[bytes, int]) -> dict:
    """:func:`scan` of ``(chunk, column)``, as a plain dict (what a worker sends back)."""
    return vars(scan(*item))


def scan(chunk: bytes, column: int) -> Extremes:
    """The extremes of field ``column`` over the CSV lines in ``chunk`` (no header).

    A row is invalid (counted, skipped) when the field is missing, not a number, not
    finite, or negative.
    """
    found = Extremes()
    low = high = None
    low_at = high_at = None
    valid = invalid = 0
    for line in chunk.decode("utf-8", "replace").splitlines():
        if not line:
            continue
        fields = line.split(",")
        try:
            value = float(fields[column])
        except (IndexError, ValueError):
            invalid += 1
            continue
        if value < 0 or not math.isfinite(value):
            invalid += 1
            continue
        valid += 1
        if low is None or value < low:
            low, low_at = value, fields[0]
        if high is None or value > high:
            high, high_at = value, fields[0]
    found.low, found.low_at, found.high, found.high_at = low, low_at, high, high_at
    found.valid, found.invalid = valid, invalid
    return found
