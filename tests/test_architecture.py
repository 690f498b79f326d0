"""The package's shape: no runtime import cycle, no module reading another's private names.

Read with ``ast`` from the source, so nothing is imported. Imports under
``if TYPE_CHECKING:`` do not run and do not count; imports inside functions do.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "onnxbridge"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node except those under ``if TYPE_CHECKING:``."""
    found: list[ast.AST] = []
    pending = [tree]
    while pending:
        node = pending.pop()
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                pending.extend(child.orelse)
                continue
            found.append(child)
            pending.append(child)
    return found


def _owner(dotted: str) -> str | None:
    """The package module that ``dotted`` names or lives in."""
    while dotted and dotted not in MODULES:
        dotted = dotted.rpartition(".")[0]
    return dotted or None


def _imports(name: str) -> dict[str, str]:
    """Package modules imported by ``name`` at run time, by the local name they are bound to."""
    path = MODULES[name]
    bound: dict[str, str] = {}
    for node in _runtime_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _owner(alias.name):
                    bound[alias.asname or alias.name] = alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            for alias in node.names:
                full = f"{base}.{alias.name}"
                if full in MODULES or _owner(base):
                    bound[alias.asname or alias.name] = full
    return bound


def _edges() -> dict[str, set[str]]:
    graph = {}
    for name in MODULES:
        targets = {_owner(t) for t in _imports(name).values()}
        graph[name] = {t for t in targets if t and t != name and t != "onnxbridge"}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = 2
        path.pop()
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_the_package_has_no_runtime_import_cycle():
    graph = _edges()
    assert graph["onnxbridge._artifact"], "the import graph should not be empty"
    assert _cycle(graph) is None


def test_no_module_reads_another_modules_private_names():
    offences = []
    for name, path in MODULES.items():
        bound = _imports(name)
        for target in bound.values():
            leaf = target.rpartition(".")[2]
            if target not in MODULES and leaf.startswith("_") and not leaf.startswith("__"):
                offences.append(f"{name}: from {target.rpartition('.')[0]} import {leaf}")
        for node in _runtime_nodes(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in bound:
                module, attr = bound[node.value.id], node.attr
                private = attr.startswith("_") and not attr.startswith("__")
                if module in MODULES and private and f"{module}.{attr}" not in MODULES:
                    offences.append(f"{name}: {node.value.id}.{attr}")
    assert offences == []


def test_no_module_is_much_over_500_lines():
    long = {name: n for name, p in MODULES.items() if (n := len(p.read_text().splitlines())) > 550}
    assert long == {}
