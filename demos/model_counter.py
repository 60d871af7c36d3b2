"""A class deployed once, its methods called many times: state kept between calls.

Run it: ``make up`` in one shell (it prints a token), then in another shell::

    COMPUTETHIS_TOKEN=<printed token> python demos/model_counter.py

Set ``COMPUTETHIS_URL`` too if the gateway is not at http://127.0.0.1:5000.
``--load-seconds`` is how long the constructor takes (an expensive load, paid once per
replica).
"""

import argparse
import time

from client_sdk import Deployment, compute_this


@compute_this
class Counter:
    def __init__(self, start, load_seconds=2.0):
        time.sleep(load_seconds)  # an expensive load, paid once per replica
        self.n = start

    def add(self, k):
        self.n += k
        return self.n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--load-seconds", type=float, default=2.0)
    args = parser.parse_args()
    started = time.perf_counter()
    c = Counter.deploy(10, load_seconds=args.load_seconds, replicas=1)
    print(f"deployed {c.id} in {time.perf_counter() - started:.1f} s")
    print("c.add.compute(1) =", c.add.compute(1))
    print("c.add.compute(1) =", c.add.compute(1))
    print("c.add.submit(5).result() =", c.add.submit(5).result())
    print("c.add.map([1, 2, 3]) =", c.add.map([1, 2, 3]))
    again = Deployment.from_id(c.id)  # what another process would do
    started = time.perf_counter()
    for _ in range(20):
        again.add.compute(0)
    print(f"20 more calls in {time.perf_counter() - started:.2f} s (no load again)")
    c.close()
    try:
        c.add.compute(1)
    except Exception as exc:  # noqa: BLE001 - show what a closed deployment answers
        print(f"after close: {exc}")


if __name__ == "__main__":
    main()
