"""The ring of DistrComp: each rank sends a greeting to the next and hears from the one
before, on N workers at once (an SPMD job).

Run it: ``make up`` in one shell (it prints a token), then in another shell::

    COMPUTETHIS_TOKEN=<printed token> python demos/spmd_ring.py [--ranks N]

N (default 2) must not be more than the workers ``make up`` started. Set
``COMPUTETHIS_URL`` too if the gateway is not at http://127.0.0.1:5000.
"""

from __future__ import annotations

import argparse

from client_sdk import compute_this


def ring(comm, greeting: str) -> str:
    """Send ``greeting`` to the next rank; return what the previous one sent."""
    nxt, prev = (comm.rank + 1) % comm.size, (comm.rank - 1) % comm.size
    comm.send(f"{greeting}: next to {comm.rank} is {nxt}", dest=nxt)
    return comm.recv(source=prev)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, default=2, help="workers at once (default 2)")
    ranks = parser.parse_args().ranks
    if ranks < 1:
        parser.error("--ranks must be at least 1")
    heard = compute_this(ring, ranks=ranks).compute("hello")
    for rank, message in enumerate(heard):
        print(f"rank {rank} heard: {message}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
