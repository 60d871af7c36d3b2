"""The distribute challenge snippet, run on a computethis cluster.

Run it: ``make up`` in one shell (it prints a token), then in another shell::

    COMPUTETHIS_TOKEN=<printed token> python demos/challenge.py

Set ``COMPUTETHIS_URL`` too if the gateway is not at http://127.0.0.1:5000.
"""

import time

from distribute_challenge import compute_this


@compute_this()
def func(x):
    time.sleep(x)
    return x * x


if __name__ == "__main__":
    out = func(2).run()
    assert out == 4
    print(f"func(2) = {out}")
