"""CPU-heavy pure Python on the cluster in parallel, against the same calls run locally.

Run it: ``make up`` in one shell (it prints a token), then in another shell::

    COMPUTETHIS_TOKEN=<printed token> python demos/main_hard.py --n 300000 --calls 4

Set ``COMPUTETHIS_URL`` too if the gateway is not at http://127.0.0.1:5000.
Each call counts the primes below ``n + 1000 * k`` (k = call number) by trial division;
the calls are submitted at once, so with several workers they run in parallel.
The speed-up is bounded by the number of workers (``computethis up --workers``).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

from client_sdk import compute_this


@compute_this
def count_primes(n: int) -> int:
    """Count the primes below ``n`` by trial division (deliberately pure Python, CPU-bound)."""
    count = 0
    for candidate in range(2, n):
        divisor = 2
        while divisor * divisor <= candidate:
            if candidate % divisor == 0:
                break
            divisor += 1
        else:
            count += 1
    return count


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command line: ``--n`` (size of each call) and ``--calls`` (parallel calls)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300_000, help="count primes below n")
    parser.add_argument("--calls", type=int, default=4, help="parallel calls (default 4)")
    args = parser.parse_args(argv)
    if args.n < 2 or args.calls < 1:
        parser.error("--n must be at least 2 and --calls at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Time the calls on the cluster, then locally; print both and the speed-up."""
    args = parse_args(argv)
    sizes = [args.n + 1000 * k for k in range(args.calls)]

    start = time.perf_counter()
    jobs = [count_primes.submit(size) for size in sizes]
    remote = [job.result() for job in jobs]
    remote_seconds = time.perf_counter() - start
    print(f"cluster: {args.calls} calls in {remote_seconds:.2f} s")

    start = time.perf_counter()
    local = [count_primes.local(size) for size in sizes]
    local_seconds = time.perf_counter() - start
    print(f"local:   {args.calls} calls in {local_seconds:.2f} s")

    print(f"speed-up: {local_seconds / remote_seconds:.2f}x")
    agree = remote == local
    print(f"results agree: {agree} {remote}")
    return 0 if agree else 1


if __name__ == "__main__":
    raise SystemExit(main())
