"""Small graph transforms that quantization needs and no maintained tool does.

Each takes a model and changes it in place or returns a new one; none imports a framework.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from onnxbridge.graph._files import is_large, save_model
from onnxbridge.graph._passes import remove_unused

if TYPE_CHECKING:
    import onnx

COMPUTE_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul", "Attention", "LSTM", "GRU", "MatMulNBits")


def copy(model: onnx.ModelProto) -> onnx.ModelProto:
    """A deep copy of ``model``."""
    import onnx

    out = onnx.ModelProto()
    out.CopyFrom(model)
    return out


def preprocess(model: onnx.ModelProto, *, gemm_to_matmul: bool) -> onnx.ModelProto:
    """Onnxruntime's quantization pre-processing (shape inference, graph optimisation).

    Dynamo-exported graphs carry value_info shapes that the pre-processor's symbolic shape
    inference contradicts ("Inferred shape and existing shape differ"), so they are dropped
    first. The optimisation step folds BatchNormalization into the preceding Conv. With
    ``gemm_to_matmul``, Gemm nodes with constant weights then become MatMul + Add, since
    onnxruntime's dynamic quantizer handles MatMul but not Gemm; this runs after the
    pre-processor, whose MatMulAddFusion would turn them back into Gemm.
    """
    import onnx
    from onnxruntime.quantization import quant_pre_process

    work = copy(model)
    del work.graph.value_info[:]
    result = work
    chatty = logging.getLogger("onnxruntime.tools.symbolic_shape_infer")
    level = chatty.level
    chatty.setLevel(logging.ERROR)  # it warns about every broadcast it cannot reason about
    try:
        large = is_large(work)
        with on_disk(work) as (source, target), working_directory(str(Path(source).parent)):
            for skip_symbolic in (False, True):  # large transformers need the symbolic pass skipped
                try:
                    quant_pre_process(source, target, skip_symbolic_shape=skip_symbolic, save_as_external_data=large)
                    result = onnx.load_model(target)
                    break
                except Exception:  # noqa: BLE001 - try the lighter pass, then none
                    continue
    finally:
        chatty.setLevel(level)
    if gemm_to_matmul:
        _gemm_to_matmul(result)
    return result


class Prepared:
    """:func:`preprocess`, done once per parent model (recipes ask for it several times)."""

    def __init__(self, *, gemm_to_matmul: bool) -> None:
        self.gemm_to_matmul = gemm_to_matmul
        self._cached: tuple[onnx.ModelProto, onnx.ModelProto] | None = None  # (parent, prepared)

    def __call__(self, model: onnx.ModelProto) -> onnx.ModelProto:
        if self._cached is None or self._cached[0] is not model:
            self._cached = (model, preprocess(model, gemm_to_matmul=self.gemm_to_matmul))
        return self._cached[1]


def matching_nodes(model: onnx.ModelProto, names: list[str]) -> list[str]:
    """Names of the nodes named in ``names`` or whose operator type is in ``names``."""
    wanted = set(names)
    return [n.name for n in model.graph.node if n.name in wanted or n.op_type in wanted]


@contextlib.contextmanager
def on_disk(model: onnx.ModelProto) -> Iterator[tuple[str, str]]:
    """``model`` saved in a temporary folder: yields (its path, a path for the result).

    Past protobuf's 2 GiB the weights go to external data; tools writing the result must
    then be asked for external data too (``use_external_data_format=is_large(model)``).
    """
    with tempfile.TemporaryDirectory() as tmp:
        source, target = Path(tmp) / "in.onnx", Path(tmp) / "out.onnx"
        save_model(model, source, external_data=is_large(model))
        yield str(source), str(target)


def infer_shapes_on_disk(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with inferred value types, through a file (works past protobuf's 2 GiB)."""
    import onnx

    with on_disk(model) as (source, target):
        onnx.shape_inference.infer_shapes_path(source, target)
        return onnx.load_model(target)


_CWD_LOCK = threading.Lock()


@contextlib.contextmanager
def working_directory(path: str) -> Iterator[None]:
    """Run with ``path`` as the working directory.

    onnxruntime 1.31's symbolic shape inference, when it gives up, saves
    ``sym_shape_infer_temp.onnx`` and uuid-named ``.data`` files into the current directory
    (tools/symbolic_shape_infer.py, ``infer_shapes``); they land in the temporary folder instead.
    """
    with _CWD_LOCK:
        previous = os.getcwd()
        os.chdir(path)
        try:
            yield
        finally:
            os.chdir(previous)


def _gemm_to_matmul(model: onnx.ModelProto) -> None:
    from onnx import helper, numpy_helper

    initializers = {i.name: i for i in model.graph.initializer}
    rebuilt = []
    for node in model.graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        plain = attrs.get("alpha", 1.0) == 1.0 and attrs.get("beta", 1.0) == 1.0 and not attrs.get("transA", 0)
        if node.op_type != "Gemm" or not plain or node.input[1] not in initializers:
            rebuilt.append(node)
            continue
        weight = numpy_helper.to_array(initializers[node.input[1]])
        if attrs.get("transB", 0):
            weight = weight.T.copy()
        name = f"{node.input[1]}_matmul"
        model.graph.initializer.append(numpy_helper.from_array(weight, name))
        product = f"{node.output[0]}_matmul" if len(node.input) > 2 and node.input[2] else node.output[0]
        rebuilt.append(helper.make_node("MatMul", [node.input[0], name], [product], name=f"{node.name}_MatMul"))
        if product != node.output[0]:
            rebuilt.append(helper.make_node("Add", [product, node.input[2]], [node.output[0]], name=f"{node.name}_Add"))
    del model.graph.node[:]
    model.graph.node.extend(rebuilt)
    remove_unused(model)


def quantize_embeddings(model: onnx.ModelProto, *, min_elements: int = 2**16) -> list[str]:
    """Store large embedding tables as int8 with one scale per row; return the tables changed.

    ``Gather(table, ids)`` becomes ``Cast(Gather(table_int8, ids)) * Gather(scales, ids)``:
    standard operators only (so the model still runs anywhere), a quarter of the bytes, and
    an error of at most half a step of each row's own scale. A table that any other node
    reads (tied LM heads) is left alone. None of the maintained quantizers does this for
    8 bits: onnxruntime's ``GatherBlockQuantized`` path handles 4-bit tables.
    """
    from onnx import TensorProto, helper, numpy_helper

    initializers = {i.name: i for i in model.graph.initializer}
    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    outputs = {o.name for o in model.graph.output}
    changed: list[str] = []
    rebuilt: list[onnx.NodeProto] = []
    for node in model.graph.node:
        table = initializers.get(node.input[0]) if node.op_type == "Gather" and node.input else None
        axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
        eligible = (
            table is not None
            and axis == 0
            and table.data_type == TensorProto.FLOAT
            and len(table.dims) == 2
            and int(np.prod(table.dims)) >= min_elements
            and all(r.op_type == "Gather" for r in readers[table.name])
            and table.name not in outputs
        )
        if not eligible:
            rebuilt.append(node)
            continue
        assert table is not None
        q_name, s_name = f"{table.name}_int8", f"{table.name}_row_scale"
        if table.name not in changed:
            weights = numpy_helper.to_array(table).astype(np.float32)
            scales = np.abs(weights).max(axis=1, keepdims=True) / 127.0
            scales[scales == 0] = 1.0
            values = np.clip(np.rint(weights / scales), -127, 127).astype(np.int8)
            model.graph.initializer.extend(
                [numpy_helper.from_array(values, q_name), numpy_helper.from_array(scales.astype(np.float32), s_name)]
            )
            changed.append(table.name)
        out = node.output[0]
        base = node.name or out
        rebuilt += [
            helper.make_node("Gather", [q_name, node.input[1]], [f"{out}_int8"], name=f"{base}_int8"),
            helper.make_node("Cast", [f"{out}_int8"], [f"{out}_float"], name=f"{base}_cast", to=TensorProto.FLOAT),
            helper.make_node("Gather", [s_name, node.input[1]], [f"{out}_scale"], name=f"{base}_scale"),
            helper.make_node("Mul", [f"{out}_float", f"{out}_scale"], [out], name=f"{base}_dequantize"),
        ]
    if changed:
        del model.graph.node[:]
        model.graph.node.extend(rebuilt)
        remove_unused(model)
    return changed


def fold_weight_quantization(model: onnx.ModelProto) -> int:
    """Store weights that go through QuantizeLinear as integer initializers.

    Quantization-aware training exports float weights followed by QuantizeLinear and
    DequantizeLinear; folding the QuantizeLinear of constant weights keeps the same
    computation and stores int8 weights, a quarter of the float size. Returns how many
    weights were folded.
    """
    from onnx import numpy_helper

    initializers = {i.name: i for i in model.graph.initializer}
    consumers: dict[str, int] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers[name] = consumers.get(name, 0) + 1
    folded, kept_nodes = 0, []
    for node in model.graph.node:
        inputs = list(node.input)
        constant = node.op_type == "QuantizeLinear" and all(n in initializers for n in inputs if n)
        if not constant or consumers.get(inputs[0], 0) != 1:
            kept_nodes.append(node)
            continue
        weight = numpy_helper.to_array(initializers[inputs[0]]).astype(np.float64)
        scale = numpy_helper.to_array(initializers[inputs[1]]).astype(np.float64)
        zero = numpy_helper.to_array(initializers[inputs[2]]) if len(inputs) > 2 and inputs[2] else np.uint8(0)
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        if scale.ndim == 1 and weight.ndim > 1:  # per-channel along `axis`
            shape = [1] * weight.ndim
            shape[axis] = -1
            scale, zero_b = scale.reshape(shape), np.asarray(zero).reshape(shape)
        else:
            zero_b = np.asarray(zero)
        info = np.iinfo(np.asarray(zero).dtype)
        values = np.clip(np.rint(weight / scale) + zero_b.astype(np.float64), info.min, info.max)
        model.graph.initializer.append(numpy_helper.from_array(values.astype(np.asarray(zero).dtype), node.output[0]))
        folded += 1
    if folded:
        del model.graph.node[:]
        model.graph.node.extend(kept_nodes)
        remove_unused(model)
    return folded


def float_nodes(model: onnx.ModelProto) -> list[str]:
    """Weighted compute nodes that still run in float: constant weights, and no input dequantized.

    Products of two activations (attention scores) have no weights to quantize and are not listed.
    """
    dequantized = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    constants = {i.name for i in model.graph.initializer}
    return [
        f"{n.name} ({n.op_type})"
        for n in model.graph.node
        if n.op_type in COMPUTE_OPS
        and n.op_type != "MatMulNBits"
        and (n.op_type not in ("MatMul", "Gemm", "Conv", "ConvTranspose") or n.input[1] in constants)
        and not any(i in dequantized for i in n.input)
    ]


def has_qdq(model: onnx.ModelProto) -> bool:
    """Whether the graph already holds QuantizeLinear/DequantizeLinear nodes."""
    return any(node.op_type in ("QuantizeLinear", "DequantizeLinear") for node in model.graph.node)
