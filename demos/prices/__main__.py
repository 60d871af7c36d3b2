"""``python -m demos.prices FILE.csv --column Ask``: the low and high of a price column,
computed on the cluster and compared with one process; ``--serve``: the page.

Run it: ``make up`` in one shell (it prints a token), then in another shell::

    python -m demos.prices.generate ticks.csv            # 1,000,000 ticks, a few invalid
    COMPUTETHIS_TOKEN=<printed token> python -m demos.prices ticks.csv --column Ask
    COMPUTETHIS_TOKEN=<printed token> python -m demos.prices --serve   # the page, port 8050

Set ``COMPUTETHIS_URL`` too if the gateway is not at http://127.0.0.1:5000.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from demos.prices.compute import CHUNK_BYTES, in_one_process, on_cluster


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m demos.prices",
        description="The low and high of a price column of a CSV of ticks, on the cluster.",
    )
    parser.add_argument("file", nargs="?", type=Path, help="the CSV (Timestamp, then prices)")
    parser.add_argument("--column", default="Ask", help="Ask, Bid, AskVolume or BidVolume")
    parser.add_argument("--chunk-bytes", type=int, default=CHUNK_BYTES, help="bytes per job")
    parser.add_argument("--no-baseline", action="store_true", help="skip the one-process run")
    parser.add_argument("--serve", action="store_true", help="serve the page instead")
    parser.add_argument("--host", default="127.0.0.1", help="the page's address (--serve)")
    parser.add_argument("--port", type=int, default=8050, help="the page's port (--serve)")
    args = parser.parse_args()
    if args.serve:
        from demos.prices.serve import serve

        serve(args.host, args.port)
        return 0
    if args.file is None:
        parser.error("give the CSV file (or --serve)")
    if not args.file.is_file():
        print(f"error: no file {args.file}", file=sys.stderr)
        return 2
    try:
        answer = on_cluster(args.file, args.column, max(1024, args.chunk_bytes))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    found = answer.extremes
    if found.low is None:
        print(f"no valid {args.column} value in {args.file} ({found.invalid} invalid rows)")
        return 1
    print(f"low  {args.column} {found.low:g} at {found.low_at}")
    print(f"high {args.column} {found.high:g} at {found.high_at}")
    print(f"rows: {found.valid} valid, {found.invalid} invalid skipped")
    print(f"cluster: {answer.seconds:.2f} s ({answer.how})")
    if not args.no_baseline:
        local = in_one_process(args.file, args.column)
        agrees = (local.extremes.low, local.extremes.high, local.extremes.invalid) == (
            found.low,
            found.high,
            found.invalid,
        )
        print(
            f"baseline: {local.seconds:.2f} s ({local.how}); "
            f"{'same answer' if agrees else 'DIFFERENT ANSWER'}"
        )
        if not agrees:
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
