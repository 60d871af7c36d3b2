"""The three layers of tests, marked by the folder they are in.

- ``tests/unit/``: no I/O, seconds in all (marker ``unit``);
- ``tests/integration/``: a real store on disk, the app in-process through its factory,
  local sockets (marker ``integration``);
- ``tests/system/``: real processes, a real Dask cluster, the real SDK over a real port
  (marker ``system``).

``make test`` runs all three; ``make test-fast`` runs ``-m "not system"``. A fourth,
``tests/torch/`` (system tests that need PyTorch, marker ``torch``), runs only with
``make test-torch``, which installs it: PyTorch from PyPI pulls gigabytes of CUDA
packages.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

LAYERS = ("unit", "integration", "system", "torch")
TORCH_VARIABLE = "COMPUTETHIS_TEST_TORCH"  # set by `make test-torch`
collect_ignore = [] if os.environ.get(TORCH_VARIABLE) else ["torch"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with the layer its folder names."""
    for item in items:
        layer = Path(str(item.fspath)).parent.name
        if layer not in LAYERS:
            raise pytest.UsageError(f"{item.nodeid}: tests live in tests/{{{','.join(LAYERS)}}}/")
        item.add_marker(layer)
