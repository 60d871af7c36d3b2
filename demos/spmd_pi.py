"""π by integration on N workers at once: each rank integrates 4 / (1 + x²) over its
share of [0, 1], and ``allreduce`` adds the shares (an SPMD job).

Run it: ``make up`` in one shell (it prints a token), then in another shell::

    COMPUTETHIS_TOKEN=<printed token> python demos/spmd_pi.py [--ranks N] [--steps S]

N (default 2) must not be more than the workers ``make up`` started. Set
``COMPUTETHIS_URL`` too if the gateway is not at http://127.0.0.1:5000.
"""

from __future__ import annotations

import argparse
import math

from client_sdk import compute_this


def pi_share(comm, steps: int) -> float:
    """This rank's midpoint sum of 4 / (1 + x²), then everyone's, added up."""
    width = 1.0 / steps
    total = 0.0
    for i in range(comm.rank, steps, comm.size):
        x = (i + 0.5) * width
        total += 4.0 / (1.0 + x * x)
    return comm.allreduce(total * width)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, default=2, help="workers at once (default 2)")
    parser.add_argument("--steps", type=int, default=1_000_000, help="intervals (default 1e6)")
    args = parser.parse_args()
    if args.ranks < 1 or args.steps < 1:
        parser.error("--ranks and --steps must be at least 1")
    estimates = compute_this(pi_share, ranks=args.ranks).compute(args.steps)
    pi = estimates[0]
    print(f"{args.ranks} ranks agree: {len(set(estimates)) == 1}")
    print(f"pi ~ {pi:.12f} (error {abs(pi - math.pi):.1e})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
