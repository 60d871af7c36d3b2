"""Command line: run the benchmarks, print the table, write JSON and plots."""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

from benchmarks import (
    bigdata,
    concurrency,
    dashboard,
    folders,
    latency,
    many_small,
    models,
    plots,
    report,
    scaling,
    spmd,
)
from benchmarks.config import FULL, QUICK, Sizes
from benchmarks.harness import Runner
from benchmarks.results import BenchResult

# The order they run in: the shared cluster first, then scaling (which starts its own).
BENCHMARKS: dict[str, Callable[[Runner, Sizes], BenchResult]] = {
    latency.NAME: latency.run,
    many_small.NAME: many_small.run,
    concurrency.NAME: concurrency.run,
    bigdata.NAME: bigdata.run,
    folders.NAME: folders.run,
    models.NAME: models.run,
    spmd.NAME: spmd.run,
    dashboard.NAME: dashboard.run,  # last on the shared cluster: it stores many jobs
    scaling.NAME: scaling.run,
}
DEFAULT_OUT = Path(__file__).resolve().parent / "results"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Benchmark computethis against direct Dask on the same cluster.",
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument(
        "--only",
        type=_names,
        default=list(BENCHMARKS),
        metavar="NAME[,NAME]",
        help=f"run only these ({', '.join(BENCHMARKS)})",
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="where latest.json and the PNGs go"
    )
    return parser.parse_args(argv)


def _names(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in BENCHMARKS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown benchmark(s) {', '.join(unknown) or text!r}; choose from "
            + ", ".join(BENCHMARKS)
        )
    return [name for name in BENCHMARKS if name in names]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the chosen benchmarks; exit 1 only if one of them crashed."""
    args = parse_args(argv)
    sizes = QUICK if args.quick else FULL
    args.out.mkdir(parents=True, exist_ok=True)
    results: list[BenchResult] = []
    errors: dict[str, str] = {}
    runner = Runner(sizes.max_body)
    try:
        for name in args.only:
            print(f"[bench] {name} ...", file=sys.stderr, flush=True)
            start = time.perf_counter()
            try:
                result = BENCHMARKS[name](runner, sizes)
            except Exception as exc:
                traceback.print_exc()
                errors[name] = f"{type(exc).__name__}: {exc}"
                continue
            result.seconds = time.perf_counter() - start
            print(f"[bench] {name} done in {result.seconds:.1f} s", file=sys.stderr, flush=True)
            results.append(result)
    finally:
        runner.close()
    print(report.table(results, errors))
    json_path = args.out / "latest.json"
    report.write_json(json_path, results, errors, sizes, args.quick)
    print(f"\nJSON: {json_path}")
    for path in write_plots(results, args.out):
        print(f"plot: {path}")
    return 1 if errors else 0


def write_plots(results: list[BenchResult], out: Path) -> list[Path]:
    """The plots whose data was measured in this run."""
    scaled = next((result for result in results if result.name == scaling.NAME), None)
    if scaled is None:
        return []
    return [
        plots.throughput_plot(scaled.data, out / "throughput.png"),
        plots.timeline_plot(scaled.data, out / "timeline.png"),
    ]
