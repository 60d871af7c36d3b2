"""The three layers of tests, marked by the folder they are in.

- ``tests/unit/``: no I/O, seconds in all (marker ``unit``);
- ``tests/integration/``: a real store on disk, the app in-process through its factory,
  local sockets (marker ``integration``);
- ``tests/system/``: real processes, a real Dask cluster, the real SDK over a real port
  (marker ``system``).

``make test`` runs all three; ``make test-fast`` runs ``-m "not system"``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

LAYERS = ("unit", "integration", "system")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with the layer its folder names."""
    for item in items:
        layer = Path(str(item.fspath)).parent.name
        if layer not in LAYERS:
            raise pytest.UsageError(f"{item.nodeid}: tests live in tests/{{{','.join(LAYERS)}}}/")
        item.add_marker(layer)
