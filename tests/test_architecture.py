"""The package's shape, read from the source: no import cycles (imports inside functions count), kernels stay pure
JAX (no samplax.infer or samplax.models), models never import kernels, and no module grows past one idea's size."""

from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1] / "samplax"
MAX_LINES = 650  # about 600 lines of code per module (blank and comment lines not counted): one idea per module


def _modules() -> dict[str, pathlib.Path]:
    modules = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    return modules


MODULES = _modules()


def _imports(name: str, path: pathlib.Path) -> set[str]:
    """Every samplax module ``name`` imports, anywhere in its body (functions included), resolved to the deepest
    module that exists: ``from samplax.infer import report`` is samplax.infer.report when that is a module."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                candidate = f"{base}.{alias.name}" if base else alias.name
                found.add(candidate if candidate in MODULES else base)
    return {module for module in found if module in MODULES and module != name}


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _cycle() -> list[str] | None:
    """One import cycle, if any (depth-first search with colours)."""
    colour = dict.fromkeys(GRAPH, 0)
    stack: list[str] = []

    def visit(node):
        colour[node] = 1
        stack.append(node)
        for child in sorted(GRAPH[node]):
            if colour[child] == 1:
                return stack[stack.index(child) :] + [child]
            if colour[child] == 0 and (found := visit(child)):
                return found
        stack.pop()
        colour[node] = 2
        return None

    for node in sorted(GRAPH):
        if colour[node] == 0 and (found := visit(node)):
            return found
    return None


def test_the_graph_sees_known_edges():
    """Sanity of the parser: fit imports the bridge, and a function-local import is seen."""
    assert "samplax.models.bridge" in GRAPH["samplax.infer.fit"]
    assert len(MODULES) > 40


def test_no_import_cycles():
    cycle = _cycle()
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


@pytest.mark.parametrize(
    "layer, forbidden",
    [
        ("samplax.kernels", ("samplax.infer", "samplax.models", "samplax.cli")),
        ("samplax.models", ("samplax.kernels", "samplax.infer", "samplax.cli")),
    ],
)
def test_layers_point_one_way(layer, forbidden):
    wrong = sorted(
        f"{name} -> {target}"
        for name, targets in GRAPH.items()
        if name.startswith(layer)
        for target in targets
        if target.startswith(forbidden)
    )
    assert wrong == []


def _lines_of_code(path: pathlib.Path) -> int:
    """Lines that are neither blank nor comments (the formatter's one-argument-per-line layout is not size)."""
    return sum(1 for line in path.read_text().splitlines() if line.strip() and not line.lstrip().startswith("#"))


def test_no_module_holds_several_ideas():
    long = sorted(
        f"{path.relative_to(ROOT.parent)}: {lines}"
        for path in MODULES.values()
        if (lines := _lines_of_code(path)) > MAX_LINES
    )
    assert long == []
