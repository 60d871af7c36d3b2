"""The SDK's modules import one another one way: no cycles, not even through imports
inside functions or under ``TYPE_CHECKING``; and none is over 400 lines."""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest

from tests.stack import REPO

PACKAGE = "client_sdk"
MODULES = sorted(path.stem for path in (REPO / PACKAGE).glob("*.py") if path.stem != "__init__")


def sdk_imports(module: str) -> set[str]:
    """The package's modules that ``module`` imports anywhere in its source."""
    tree = ast.parse((REPO / PACKAGE / f"{module}.py").read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == PACKAGE and len(parts) > 1 and parts[1] in MODULES:
                found.add(parts[1])
    found.discard(module)
    return found


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of ``graph`` as a path that ends where it starts, or None."""
    state: dict[str, str] = {}  # "open" while on the path, "done" once explored
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                return path[path.index(target) :] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_sdk_modules_have_no_import_cycle():
    graph = {module: sdk_imports(module) for module in MODULES}
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


# The package without its __init__ (which imports everything), so that the module
# under test is really imported first: a cycle would find a module half-initialized.
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


@pytest.mark.parametrize("module", MODULES)
def test_sdk_modules_are_under_400_lines(module: str):
    assert len((REPO / PACKAGE / f"{module}.py").read_text().splitlines()) <= 400
