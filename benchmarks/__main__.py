"""``python -m benchmarks [--quick] [--only NAME[,NAME]] [--out DIR]``."""

import sys

if __name__ == "__main__":  # worker processes re-import this module when spawned
    from benchmarks.cli import main

    sys.exit(main())
