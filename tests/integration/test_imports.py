"""Each SDK module imports first in a fresh interpreter: users import ``client_sdk``
pieces on their own, and a cycle would find a module half-initialized. (Cycles and
module sizes of every package are read from the source in ``tests/unit/test_layout.py``.)"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.stack import REPO

PACKAGE = "client_sdk"
MODULES = sorted(path.stem for path in (REPO / PACKAGE).glob("*.py") if path.stem != "__init__")

# The package without its __init__ (which imports everything), so that the module
# under test is really imported first.
IMPORT_FIRST = """
import importlib, sys, types
package = types.ModuleType({package!r})
package.__path__ = [{path!r}]
sys.modules[{package!r}] = package
importlib.import_module({package!r} + "." + {module!r})
"""


@pytest.mark.parametrize("module", MODULES)
def test_each_sdk_module_imports_first_in_a_fresh_interpreter(module: str):
    code = IMPORT_FIRST.format(package=PACKAGE, path=str(REPO / PACKAGE), module=module)
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=60)
