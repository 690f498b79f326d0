"""What tf2onnx 1.17 needs to convert today's TensorFlow and Keras models, in one place.

Each function names the failure it works around and the versions it was seen with, so it
can be dropped when tf2onnx handles the case itself.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from onnxbridge.graph import _graph

if TYPE_CHECKING:
    import onnx


def erfc(ctx: Any, node: Any, name: str, args: list[Any]) -> None:
    """tf2onnx handler for ``Erfc`` as ``1 - Erf(x)`` (Keras's exact GELU; tf2onnx 1.17 has none).

    ``1 - Erf(x)`` loses precision where ``erfc`` is tiny (x > ~4), which GELU multiplies
    away; validation compares the result with TensorFlow's.
    """
    from tf2onnx import utils

    dtype = utils.map_onnx_to_numpy_type(ctx.get_dtype(node.input[0]))
    node.type = "Erf"
    one = ctx.make_const(utils.make_name(f"{name}_one"), np.array(1, dtype=dtype))
    minus = ctx.insert_new_node_on_output("Sub", node.output[0], name=utils.make_name(f"{name}_one_minus"))
    ctx.replace_inputs(minus, [one.output[0], node.output[0]])
    ctx.copy_shape(node.output[0], minus.output[0])
    ctx.set_dtype(minus.output[0], ctx.get_dtype(node.output[0]))


# TensorFlow operations tf2onnx does not convert, handled here (a caller's own handlers win).
MISSING_HANDLERS: dict[str, tuple[Any, list[Any]]] = {"Erfc": (erfc, [])}


def let_xla_calls_inline(concrete: Any) -> None:
    """Let grappler inline calls to XLA-compiled functions, so tf2onnx sees their operations.

    Keras 3 on TensorFlow runs grouped convolutions (ConvNeXt's depthwise 7x7) inside a
    ``tf.function(jit_compile=True)`` because TensorFlow's CPU kernel lacks them
    (keras/src/backend/tensorflow/nn.py, ``conv``). Calls marked ``_XlaMustCompile`` are
    never inlined, and tf2onnx 1.17 cannot convert a ``StatefulPartitionedCall``. The mark
    only matters for running under TensorFlow; ONNX has grouped convolutions, which
    tf2onnx produces from the inlined ``Conv2D``. Only the trace made for the export is
    changed, never the user's model.
    """
    from tensorflow.core.framework import attr_value_pb2

    for op in concrete.graph.get_operations():
        if op.type not in ("StatefulPartitionedCall", "PartitionedCall"):
            continue
        try:
            marked = op.get_attr("_XlaMustCompile")
        except ValueError:
            continue
        if marked:
            op._set_attr("_XlaMustCompile", attr_value_pb2.AttrValue(b=False))  # TF has no public setter


def captured_constants_to_initializers(tf: Any, proto: onnx.ModelProto, concrete: Any) -> None:
    """Turn the constants the traced function captured back into initializers.

    tf2onnx's ``from_function`` (1.17) lists every non-resource input of the concrete
    function as a graph input, captured constants included: a Keras 3 ``Normalization``
    layer's mean and variance (EfficientNet) became inputs that callers would have to feed,
    although tf2onnx had folded them into constants and no node reads them. ``from_keras``
    leaves captures out. Unread ones are dropped here; any still read become initializers
    with the values read from the function.
    """
    from onnx import numpy_helper

    captured = concrete.captured_inputs
    placeholders = concrete.inputs[len(concrete.inputs) - len(captured) :]
    values = {
        p.name: np.asarray(v.numpy())
        for p, v in zip(placeholders, captured, strict=True)
        if v.dtype != tf.resource and hasattr(v, "numpy")
    }
    read = {name for node in _graph.all_nodes(proto.graph) for name in node.input}
    kept = []
    for value in proto.graph.input:
        if value.name not in values:
            kept.append(value)
        elif value.name in read:
            proto.graph.initializer.append(numpy_helper.from_array(values[value.name], value.name))
    if len(kept) != len(proto.graph.input):
        del proto.graph.input[:]
        proto.graph.input.extend(kept)


@contextlib.contextmanager
def tf2onnx_compat(messages: list[str]) -> Iterator[None]:
    """What tf2onnx 1.17 needs to run today, in one place.

    * Its large-model path calls ``np.product``, removed in NumPy 2.0; provide the alias
      for the duration of the call only.
    * It logs every step at INFO/WARNING; keep that out of the user's console, but keep
      its error lines (unsupported operations) for our own message.
    """
    added = not hasattr(np, "product")
    if added:
        np.product = np.prod  # type: ignore[attr-defined]
    logger = logging.getLogger("tf2onnx")
    level, propagate = logger.level, logger.propagate

    class _Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno >= logging.ERROR:
                messages.append(record.getMessage())

    handler = _Keep()
    logger.addHandler(handler)
    logger.setLevel(logging.ERROR)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate
        if added:
            del np.product  # type: ignore[attr-defined]


def inline_external(onnx: Any, proto: Any, storage: Any) -> Any:
    """Load tf2onnx's external tensor storage into the model, so the Artifact holds it whole."""
    if storage is None or not storage.name_to_tensor_data:
        return proto
    with tempfile.TemporaryDirectory() as tmp:
        for location, data in storage.name_to_tensor_data.items():
            (Path(tmp) / location).write_bytes(data)
        onnx.load_external_data_for_model(proto, tmp)
    return proto


def unconverted_ops(proto: Any) -> list[str]:
    """Operators in standard domains that ONNX does not define (tf2onnx passes them through)."""
    import onnx

    standard = ("", "ai.onnx", "ai.onnx.ml")
    unknown = [n.op_type for n in proto.graph.node if n.domain in standard and not onnx.defs.has(n.op_type, n.domain)]
    return list(dict.fromkeys(unknown))
