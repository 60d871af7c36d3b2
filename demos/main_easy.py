"""Add ``sum(range(10000))`` to every element of a list, with a plain loop, on the cluster.

Run it: ``make up`` in one shell (it prints a token), then in another shell::

    COMPUTETHIS_TOKEN=<printed token> python demos/main_easy.py

Set ``COMPUTETHIS_URL`` too if the gateway is not at http://127.0.0.1:5000.
Each element grows by 0 + 1 + ... + 9999 = 49995000.
"""

from __future__ import annotations

from client_sdk import compute_this


@compute_this
def add_range(values: list[int]) -> list[int]:
    """Add each ``i`` in ``range(10000)`` to every element of ``values``, one at a time."""
    out = list(values)
    for index in range(len(out)):
        for i in range(10000):
            out[index] += i
    return out


def main() -> int:
    """Run ``add_range([1, 2, 3])`` remotely and print the result."""
    values = [1, 2, 3]
    result = add_range(values).run()
    print(f"add_range({values}) = {result}")
    expected = [value + sum(range(10000)) for value in values]
    return 0 if result == expected else 1


if __name__ == "__main__":
    raise SystemExit(main())
