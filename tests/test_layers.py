"""The house rules (CONTRIBUTING.md), read from the code itself with no exemptions: which
package may import which, no import cycles between modules, and no module over 400 lines."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.unit

# Each package and the packages it may import (itself included). The kernel sits at the
# bottom; the entry layer (clipdex) is the only one that wires subsystems together.
ALLOWED: dict[str, set[str]] = {
    "core": {"core"},
    "ingest": {"core", "ingest"},
    "search": {"core", "search"},
    "migrations": {"core", "migrations"},
    "workers": {"core", "ingest", "workers"},
    "clipdex": {"core", "ingest", "search", "migrations", "workers", "clipdex"},
}
MAX_LINES = 400


def _modules() -> Iterator[tuple[str, Path]]:
    for package in ALLOWED:
        for path in sorted((REPO / package).rglob("*.py")):
            yield package, path


def _module_name(path: Path) -> str:
    if not path.is_relative_to(REPO):
        return path.stem
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imported(path: Path, module_scope_only: bool) -> set[str]:
    """Absolute names of the modules ``path`` imports. With ``module_scope_only``, imports
    inside functions and ``if TYPE_CHECKING:`` blocks are left out (they cannot form a cycle
    at import time); otherwise every import anywhere in the file counts."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = _module_name(path).rsplit(".", 1)[0] if path.name != "__init__.py" else None
    own = _module_name(path)
    names: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if module_scope_only and isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            if (
                module_scope_only
                and isinstance(child, ast.If)
                and "TYPE_CHECKING" in ast.unparse(child.test)
            ):
                continue
            if isinstance(child, ast.Import):
                names.update(alias.name for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = (package or own).split(".")
                    base = base[: len(base) - (child.level - 1)]
                    stem = ".".join([*base, child.module] if child.module else base)
                else:
                    stem = child.module or ""
                names.add(stem)
                names.update(f"{stem}.{alias.name}" for alias in child.names)
            visit(child)

    visit(tree)
    return names


def test_every_import_points_down() -> None:
    offenders = {
        str(path.relative_to(REPO)): sorted(
            {name.split(".")[0] for name in _imported(path, module_scope_only=False)}
            & (set(ALLOWED) - ALLOWED[package])
        )
        for package, path in _modules()
    }
    assert {path: names for path, names in offenders.items() if names} == {}


def test_no_import_cycles_between_modules() -> None:
    modules = {_module_name(path): path for _, path in _modules()}
    graph = {
        name: {n for n in _imported(path, module_scope_only=True) if n in modules and n != name}
        for name, path in modules.items()
    }
    # A module also imports its packages' __init__ first; that is Python's order, not a cycle.
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def walk(node: str, trail: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                cycles.append([*trail[trail.index(target) :], target])
            elif target not in state:
                walk(target, [*trail, target])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            walk(name, [name])
    assert cycles == []


def test_no_module_over_the_size_limit() -> None:
    sources = [path for _, path in _modules()] + sorted((REPO / "bench").rglob("*.py"))
    too_long = {
        str(path.relative_to(REPO)): count
        for path in sources
        if (count := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert too_long == {}


def test_the_rules_see_every_package() -> None:
    """A new top-level package must be placed in a layer before it can be imported."""
    packages = {
        path.parent.name
        for path in REPO.glob("*/__init__.py")
        if path.parent.name not in {"tests", "bench"}
    }
    assert packages == set(ALLOWED)


def test_the_checker_catches_an_upward_import(tmp_path: Path) -> None:
    """The rule above is only as good as its parser: an upward import in any form is seen."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from search.engine import Hit\n"
        "def later():\n    import workers.app\n"
    )
    names = {name.split(".")[0] for name in _imported(sample, module_scope_only=False)}
    assert {"search", "workers"} <= names
    assert not {"search", "workers"} & {
        name.split(".")[0] for name in _imported(sample, module_scope_only=True)
    }
