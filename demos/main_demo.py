"""Compute the square of 25 on the cluster.

Run it: ``make up`` in one shell (it prints a token), then in another shell::

    COMPUTETHIS_TOKEN=<printed token> python demos/main_demo.py

Set ``COMPUTETHIS_URL`` too if the gateway is not at http://127.0.0.1:5000.
"""

from __future__ import annotations

from client_sdk import compute_this


@compute_this
def square(x: int) -> int:
    """Return ``x * x``, computed on a worker."""
    return x * x


def main() -> int:
    """Square 25 remotely and print the result."""
    result = square(25).run()
    print(f"square(25) = {result}")
    return 0 if result == 625 else 1


if __name__ == "__main__":
    raise SystemExit(main())
