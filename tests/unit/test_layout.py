"""The code stays easy to follow: no module over 400 lines, no import cycle, and the
packages depend on one another one way only. Read from the source, nothing imported."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("gateway", "client_sdk", "worker", "scheduler", "wire")
MAX_LINES = 400
# What each package may import of the others. ``wire`` is what crosses process
# boundaries, so everyone may import it and it imports no one; ``scheduler.config``
# holds the Dask settings of every process computethis starts; the gateway sends
# ``worker.runner.run_job`` to Dask by reference and never imports the SDK.
MAY_IMPORT = {
    "wire": set(),
    "client_sdk": {"wire"},
    "worker": {"wire", "client_sdk", "scheduler"},
    "scheduler": {"wire"},
    "gateway": {"wire", "worker", "scheduler"},
}
# Single modules allowed more: the `computethis` command line (``gateway.cli``) also
# carries the SDK's client commands (``computethis run``, ``jobs``, ``logs``...).
MAY_ALSO_IMPORT = {"gateway.cli": {"client_sdk.commands"}}


def _modules() -> dict[str, Path]:
    """Every module of the packages, by dotted name (a package by its own name)."""
    found = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


MODULES = _modules()


def imports_of(path: Path) -> set[str]:
    """The project modules that the file imports anywhere (in functions and under
    ``TYPE_CHECKING`` too): a name imported from a package counts as its module when
    it is one, else as the package."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [
                full if (full := f"{node.module}.{alias.name}") in MODULES else node.module
                for alias in node.names
            ]
        else:
            continue
        for name in names:
            while name and name not in MODULES:  # `import a.b.c` of a package a.b
                name = name.rpartition(".")[0]
            if name:
                found.add(name)
    return found


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of ``graph`` as a path that ends where it starts, or None."""
    state: dict[str, str] = {}  # "open" while on the path, "done" once explored
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for target in sorted(graph.get(node, ())):
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


def _graph() -> dict[str, set[str]]:
    """Module -> the other modules it imports; a package's ``__init__`` is left out of
    its own modules' edges (importing ``a.b`` runs ``a`` first, which is not a cycle)."""
    return {name: imports_of(path) - {name} for name, path in MODULES.items()}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_is_over_400_lines(module: str) -> None:
    lines = len(MODULES[module].read_text().splitlines())
    assert lines <= MAX_LINES, f"{module} has {lines} lines"


def test_no_import_cycle() -> None:
    cycle = find_cycle(_graph())
    assert cycle is None, " -> ".join(cycle or [])


def test_packages_depend_on_one_another_one_way() -> None:
    wrong = sorted(
        f"{module} imports {other}"
        for module, others in _graph().items()
        for other in others
        if (mine := module.split(".")[0]) != (theirs := other.split(".")[0])
        and theirs not in MAY_IMPORT[mine]
        and other not in MAY_ALSO_IMPORT.get(module, set())
    )
    assert wrong == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_import_reader_sees_imports_in_functions(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from gateway.store import Job\n"
        "def f():\n    import wire.limits\n    from client_sdk import job\n"
    )
    assert imports_of(source) == {"gateway.store", "wire.limits", "client_sdk.job"}
