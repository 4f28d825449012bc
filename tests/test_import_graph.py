"""The library's modules import each other without a cycle (function-local imports included): a cycle makes
import order matter and hides which module owns a concept."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "workflow_scripts" / "lossatlas"


def module_name(path: Path, root: Path = PACKAGE) -> str:
    parts = ["lossatlas", *path.relative_to(root).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, modules: set[str], root: Path = PACKAGE) -> set[str]:
    """The package's modules that ``path`` imports anywhere in its body."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from . import x, from .a import b
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            # "from pkg import name" imports pkg.name when that is a module, else pkg itself
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # "import lossatlas.a.b" also runs lossatlas.a
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    paths = sorted(root.rglob("*.py"))
    modules = {module_name(p, root) for p in paths}
    return {module_name(p, root): imported_modules(p, modules, root) for p in paths}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None."""
    state: dict[str, str] = {}  # "active" while on the DFS stack, "done" after

    def visit(node: str, stack: list[str]) -> list[str] | None:
        state[node] = "active"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "active":
                return [*stack[stack.index(nxt):], node, nxt] if nxt in stack else [node, nxt]
            if nxt not in state and (cycle := visit(nxt, [*stack, node])):
                return cycle
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start, [])):
            return cycle
    return None


def test_the_checker_finds_a_cycle_through_a_function_local_import(tmp_path):
    pkg = tmp_path / "lossatlas"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from lossatlas.b import f\n")
    (pkg / "b.py").write_text("def f():\n    from lossatlas import a\n")
    (pkg / "c.py").write_text("from . import a\n")
    graph = import_graph(pkg)
    assert graph["lossatlas.c"] == {"lossatlas.a"}
    assert find_cycle(graph) == ["lossatlas.a", "lossatlas.b", "lossatlas.a"]


def test_the_library_has_no_import_cycle():
    graph = import_graph()
    assert "lossatlas.training" in graph and graph["lossatlas.training"], "the graph must see the imports"
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])
