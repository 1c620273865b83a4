"""The layout rules of the code base, checked on the source: layers, cycles, module size.

* Nothing under ``src/ampkit`` outside ``cli/`` imports ``ampkit.cli`` (lower layers never
  import the command line).
* The module-level imports between ampkit's modules form no cycle (imports inside functions and
  under ``TYPE_CHECKING`` are not module-level).
* Every module stays near the house size (50-250 lines, one concept each; :data:`MAX_LINES`
  leaves a little slack for "roughly").
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PKG = SRC / "ampkit"
MAX_LINES = 260
"""Longest module allowed; the house rule is roughly 50-250 lines."""


def _name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _module_level(body: list[ast.stmt]) -> list[ast.Import | ast.ImportFrom]:
    """Import statements run when the module is imported (not in functions, not for type checkers)."""
    found: list[ast.Import | ast.ImportFrom] = []
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        elif isinstance(node, ast.If) and not _is_type_checking(node):
            found += _module_level(node.body) + _module_level(node.orelse)
        elif isinstance(node, ast.Try):
            found += _module_level(node.body) + _module_level(node.orelse) + _module_level(node.finalbody)
            for handler in node.handlers:
                found += _module_level(handler.body)
    return found


def _targets(path: Path, node: ast.Import | ast.ImportFrom, modules: set[str]) -> set[str]:
    """The ampkit modules an import statement loads (``from pkg import mod`` counts ``pkg.mod``)."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        base = node.module or ""
        if node.level:
            package = _name(path).split(".")
            if path.name != "__init__.py":
                package = package[:-1]
            package = package[: len(package) - node.level + 1]
            base = ".".join(package + ([base] if base else []))
        names = [base] + [f"{base}.{a.name}" for a in node.names]
    me = _name(path)
    out = set()
    for name in names:
        while name and name not in modules:  # a name inside a module: the module itself
            name = name.rpartition(".")[0]
        # a module's own packages are imported before it (``from . import x`` loads ``x``)
        if name.startswith("ampkit") and not me.startswith(name + "."):
            out.add(name)
    return out


def _graph() -> dict[str, set[str]]:
    files = sorted(PKG.rglob("*.py"))
    modules = {_name(f) for f in files}
    graph: dict[str, set[str]] = {}
    for f in files:
        tree = ast.parse(f.read_text(), str(f))
        me = _name(f)
        deps: set[str] = set()
        for node in _module_level(tree.body):
            deps |= _targets(f, node, modules)
        graph[me] = deps - {me}
    return graph


def test_only_cli_imports_cli() -> None:
    offenders = []
    for f in sorted(PKG.rglob("*.py")):
        if f.is_relative_to(PKG / "cli") or f == PKG / "__main__.py":  # the entry point runs the CLI
            continue
        for node in ast.walk(ast.parse(f.read_text(), str(f))):  # anywhere, functions included
            if isinstance(node, ast.Import | ast.ImportFrom) and any(
                t == "ampkit.cli" or t.startswith("ampkit.cli.")
                for t in _targets(f, node, {_name(g) for g in PKG.rglob("*.py")})
            ):
                offenders.append(f"{f.relative_to(SRC)}:{node.lineno}")
    assert not offenders, f"lower layers import ampkit.cli: {offenders}"


def test_module_level_imports_form_no_cycle() -> None:
    graph = _graph()
    # a package's __init__ importing its own submodules is how packages re-export; a cycle through
    # it is still a cycle if a submodule imports the package back at module level
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                cycles.append([*stack[stack.index(dep) :], dep])
            elif dep not in state:
                visit(dep)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles[:5])


@pytest.mark.parametrize("path", sorted(PKG.rglob("*.py")), ids=lambda p: str(p.relative_to(PKG)))
def test_modules_stay_near_the_house_size(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, (
        f"{path.relative_to(SRC)} has {lines} lines (house rule ~250): split it by concept"
    )


def test_the_checks_see_the_code_base() -> None:
    """The graph is built from real imports (the checks above could not pass on an empty graph)."""
    graph = _graph()
    assert len(graph) > 100
    assert (
        "ampkit.data.checksum" in graph["ampkit.data.batchread"]
        or "ampkit.data.samples" in graph["ampkit.data.batchread"]
    )
    assert "ampkit.errors" in graph["ampkit.data.batchread"]
