"""fp16: onnxconverter-common's float16 conversion, float32 inputs and outputs kept."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from onnxbridge.core._deps import require
from onnxbridge.quantize import _passes
from onnxbridge.quantize._types import QuantizationMode

if TYPE_CHECKING:
    import onnx


class Fp16:
    """Every float tensor in float16, except nodes named in ``exclude``."""

    mode = QuantizationMode.FP16
    name = "fp16"

    def __init__(self, keep_io_types: bool = True) -> None:
        self.keep_io_types = keep_io_types

    def settings(self, exclude: list[str]) -> dict[str, Any]:
        return {"keep_io_types": self.keep_io_types, **({"exclude": exclude} if exclude else {})}

    def candidates(self, model: onnx.ModelProto) -> list[str]:
        return [n.name for n in model.graph.node if n.name]

    def __call__(self, model: onnx.ModelProto, exclude: list[str]) -> tuple[onnx.ModelProto, list[str]]:
        float16 = require("onnxconverter_common.float16", purpose="fp16 conversion", extra="quantization")
        block = _passes.matching_nodes(model, exclude)
        # Dynamo graphs store float32 value_info for inner tensors; onnxconverter-common 1.16 converts
        # the tensors but leaves some of those entries, and onnxruntime then refuses the type
        # mismatch ("Type (tensor(float16)) of output arg ... does not match expected type").
        work = _passes.copy(model)
        del work.graph.value_info[:]
        _split_read_outputs(work)
        # Past protobuf's 2 GiB, onnx.shape_inference.infer_shapes cannot serialize the model;
        # infer from a file instead and tell the converter its types are already there.
        large = _passes.is_large(work)
        if large:
            work = _passes.infer_shapes_on_disk(work)
        converted = float16.convert_float_to_float16(
            work, keep_io_types=self.keep_io_types, node_block_list=block, disable_shape_infer=large
        )
        return converted, block


def _split_read_outputs(model: onnx.ModelProto) -> None:
    """Give graph outputs that other nodes also read an inner twin those nodes read instead.

    With ``keep_io_types``, onnxconverter-common 1.16 casts such an output back to float32 but
    leaves its readers typed float16, and onnxruntime refuses the model (BERT's pooler reads
    ``last_hidden_state``). The output becomes ``Identity(inner)``.
    """
    from onnx import helper

    outputs = {o.name for o in model.graph.output}
    read = {name for node in model.graph.node for name in node.input} & outputs
    if not read:
        return
    inner = {name: f"{name}_inner" for name in read}
    for node in model.graph.node:
        node.input[:] = [inner.get(n, n) for n in node.input]
        node.output[:] = [inner.get(n, n) for n in node.output]
    model.graph.node.extend(helper.make_node("Identity", [inner[n]], [n], name=f"{n}_output") for n in sorted(read))
