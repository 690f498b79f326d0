"""Hand-built ONNX models shared by the tests (onnx.helper only: no framework needed)."""

from __future__ import annotations

from collections.abc import Sequence

import onnx
from onnx import TensorProto, helper


def unary(
    op: str = "Relu",
    shape: Sequence[int | str | None] = ("n", 4),
    *,
    elem: int = TensorProto.FLOAT,
    names: tuple[str, str] = ("x", "y"),
    opset: int = 17,
) -> onnx.ModelProto:
    """``y = op(x)`` over one tensor of ``shape`` (strings are symbolic dimensions)."""
    x = helper.make_tensor_value_info(names[0], elem, list(shape))
    y = helper.make_tensor_value_info(names[1], elem, list(shape))
    graph = helper.make_graph([helper.make_node(op, [names[0]], [names[1]])], op.lower(), [x], [y])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)
