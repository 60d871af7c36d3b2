"""Make a realistic sample of ticks: ``python -m demos.prices.generate FILE.csv``.

A EUR/USD-like random walk, one tick every ~250 ms from 2024-01-02 on, columns
``Timestamp,Ask,Bid,AskVolume,BidVolume``; a few rows are invalid on purpose (a
non-numeric, a negative and a missing value), as real exports have. Seeded: the same
arguments make the same file. Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path

COLUMNS = ("Timestamp", "Ask", "Bid", "AskVolume", "BidVolume")
START = datetime(2024, 1, 2, tzinfo=timezone.utc)
BROKEN = ("N/A", "-1.5", "")  # what an invalid row has in one of its price columns


def generate(path: Path, rows: int, seed: int = 1, invalid: int | None = None) -> int:
    """Write ``rows`` ticks to ``path``; returns how many of them are invalid."""
    rng = random.Random(seed)
    broken = max(3, rows // 100_000) if invalid is None else invalid
    spoiled = set(rng.sample(range(rows), min(broken, rows)))
    bid, moment = 1.0950, START
    with open(path, "w", encoding="utf-8", newline="\n") as out:
        out.write(",".join(COLUMNS) + "\n")
        lines = []
        for row in range(rows):
            moment += timedelta(milliseconds=rng.randint(50, 450))
            bid = max(0.5, bid + rng.gauss(0, 0.00004))
            ask = bid + 0.00001 * rng.randint(1, 20)
            values = [
                f"{ask:.5f}",
                f"{bid:.5f}",
                f"{rng.uniform(0.1, 9.9):.2f}",
                f"{rng.uniform(0.1, 9.9):.2f}",
            ]
            if row in spoiled:
                values[rng.randrange(4)] = BROKEN[row % len(BROKEN)]
            stamp = moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{moment.microsecond // 1000:03d}"
            lines.append(f"{stamp},{','.join(values)}\n")
            if len(lines) >= 10_000:
                out.writelines(lines)
                lines.clear()
        out.writelines(lines)
    return len(spoiled)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", type=Path, help="the CSV file to write")
    parser.add_argument("--rows", type=int, default=1_000_000, help="ticks (default 1,000,000)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    args = parser.parse_args()
    if args.rows < 1:
        parser.error("--rows must be at least 1")
    broken = generate(args.file, args.rows, args.seed)
    print(f"wrote {args.rows} ticks to {args.file} ({broken} of them invalid)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
