"""``onnx.checker`` on models that hold operators it has no schema for.

onnxruntime's fusions write contrib operators: most in ``com.microsoft``, which the checker
passes over, and a few (``SimplifiedLayerNormalization``) in the standard domain, where the
checker refuses them ("No Op registered for SimplifiedLayerNormalization"), although
onnxruntime loads the model. Here those nodes are moved to a private domain for the check
only, every other node and tensor is checked as usual, and the result says which operators
went unchecked (onnxruntime checks them when it loads the model).
"""

from __future__ import annotations

import collections
import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from onnxbridge.graph import _graph, _partials

if TYPE_CHECKING:
    import onnx

STANDARD_DOMAINS = ("", "ai.onnx", "ai.onnx.ml")
_UNCHECKED = "onnxbridge.unchecked"  # where schema-less standard-domain nodes sit during the check


def unchecked_operators(model: onnx.ModelProto) -> collections.Counter[tuple[str, str]]:
    """(domain, operator) -> count of nodes ``onnx.checker`` has no schema for."""
    import onnx

    return collections.Counter(
        (node.domain or "ai.onnx", node.op_type)
        for node in _graph.all_nodes(model.graph)
        if not onnx.defs.has(node.op_type, node.domain)
    )


def describe(unchecked: collections.Counter[tuple[str, str]]) -> str:
    """One sentence naming what the checker skipped (empty when nothing was)."""
    if not unchecked:
        return ""
    parts = ", ".join(f"{op} ×{n} ({domain})" for (domain, op), n in sorted(unchecked.items()))
    return (
        f"onnx.checker has no schema for {parts}: those nodes were not checked by it (onnxruntime checks them when "
        "it loads the model); every other node and tensor was"
    )


@contextlib.contextmanager
def _moved_aside(model: onnx.ModelProto) -> Iterator[None]:
    """Standard-domain nodes without a schema in a private domain for the duration (restored after)."""
    import onnx

    moved = [
        node
        for node in _graph.all_nodes(model.graph)
        if node.domain in STANDARD_DOMAINS and not onnx.defs.has(node.op_type, node.domain)
    ]
    if not moved:
        yield
        return
    original = [node.domain for node in moved]
    for node in moved:
        node.domain = _UNCHECKED
    model.opset_import.add(domain=_UNCHECKED, version=1)
    try:
        yield
    finally:
        for node, domain in zip(moved, original, strict=True):
            node.domain = domain
        del model.opset_import[len(model.opset_import) - 1]


def check_model(model: onnx.ModelProto, path: str | os.PathLike[str] | None = None, *, full_check: bool = False) -> str:
    """Run ``onnx.checker`` on ``model`` (or on ``path``, the file holding it); what it skipped, in words.

    ``path`` is checked instead of the serialized model when given (external data, past 2 GiB).
    Raises whatever the checker raises for a real fault.
    """
    import onnx

    unchecked = unchecked_operators(model)
    if path is None:
        with _moved_aside(model):
            onnx.checker.check_model(model, full_check=full_check)
        return describe(unchecked)
    source = Path(path)
    if not any(domain in STANDARD_DOMAINS for domain, _ in unchecked):
        onnx.checker.check_model(str(source), full_check=full_check)
        return describe(unchecked)
    # The graph (weights left in their external file) with those nodes moved, checked from beside the file
    # so that the external data resolves; the checker reads files, not a >2 GiB serialized model.
    header = onnx.load_model(str(source), load_external_data=False)
    with _moved_aside(header):
        # a partial, locked while it is checked: a killed check's file is removed by the next save or load here
        fd, staged = _partials.partial_file(source.parent)
        with os.fdopen(fd, "wb") as handle:
            try:
                handle.write(header.SerializeToString())
                handle.flush()
                onnx.checker.check_model(str(staged), full_check=full_check)
            finally:
                staged.unlink(missing_ok=True)
    return describe(unchecked)
