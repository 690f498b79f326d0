"""The package's shape: the layers of docs/architecture.md, no import cycle, no module reading another's private names.

Read with ``ast`` from the source, so nothing is imported. For the layers every import counts,
those under ``if TYPE_CHECKING:`` and inside functions included; for the cycle, imports under
``if TYPE_CHECKING:`` do not run and do not count.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.core

PACKAGE = Path(__file__).resolve().parent.parent / "onnxbridge"
ARCHITECTURE = PACKAGE.parent / "docs" / "architecture.md"


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


def _imports(name: str, *, type_checking: bool = False, source: str | None = None) -> dict[str, str]:
    """Package modules imported by ``name`` (at run time, or also for type checking), by local name."""
    path = MODULES.get(name, PACKAGE / "planted.py")
    tree = ast.parse(source if source is not None else path.read_text())
    bound: dict[str, str] = {}
    for node in list(ast.walk(tree)) if type_checking else _runtime_nodes(tree):
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


def _layers() -> dict[str, int]:
    """``{module or package: layer}`` from the table in docs/architecture.md."""
    found: dict[str, int] = {}
    for line in ARCHITECTURE.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and cells[0].isdigit():
            for module in re.findall(r"`([\w.]+)`", cells[1]):
                found[module] = int(cells[0])
    return found


LAYERS = _layers()


def _layer_of(module: str) -> int:
    """The layer of the longest entry of the table that is ``module`` or a package holding it."""
    best = max((entry for entry in LAYERS if module == entry or module.startswith(entry + ".")), key=len, default=None)
    if best is None:
        raise AssertionError(f"{module} is in no layer of docs/architecture.md; add it to the table")
    return LAYERS[best]


def _upward(name: str, source: str | None = None) -> list[str]:
    """The imports of ``name`` (type-checking ones included) that reach a higher layer."""
    own = _layer_of(name)
    offences = []
    for target in sorted(set(_imports(name, type_checking=True, source=source).values())):
        module = _owner(target)
        if module and module != name and _layer_of(module) > own:
            offences.append(f"{name} (layer {own}) imports {module} (layer {_layer_of(module)})")
    return offences


def test_the_architecture_table_names_real_modules_in_order():
    assert LAYERS, "docs/architecture.md should hold the table of layers"
    assert sorted(set(LAYERS.values())) == list(range(max(LAYERS.values()) + 1))
    assert all(module in MODULES for module in LAYERS), [m for m in LAYERS if m not in MODULES]


def test_every_module_sits_in_a_layer():
    for name in MODULES:
        _layer_of(name)


def test_no_module_imports_a_higher_layer_not_even_for_type_checking():
    offences = [offence for name in MODULES for offence in _upward(name)]
    assert offences == []


def test_the_layer_check_catches_a_planted_upward_import():
    planted = "from __future__ import annotations\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
    planted += "    from onnxbridge._artifact import Artifact\n"
    assert _upward("onnxbridge.graph._files", source=planted) == [
        "onnxbridge.graph._files (layer 1) imports onnxbridge._artifact (layer 9)"
    ]
    inside_a_function = "def f():\n    from onnxbridge.quantize import _quantize\n"
    assert _upward("onnxbridge.checks._compat", source=inside_a_function) == [
        "onnxbridge.checks._compat (layer 3) imports onnxbridge.quantize._quantize (layer 7)"
    ]


def test_only_the_facade_and_entry_points_import_the_artifact():
    facade = LAYERS["onnxbridge._artifact"]
    importers = [
        name
        for name in MODULES
        if "onnxbridge._artifact" in {_owner(t) for t in _imports(name, type_checking=True).values()}
    ]
    assert importers
    assert [name for name in importers if _layer_of(name) < facade] == []
