"""Weight-only block-wise quantization: onnxruntime's ``MatMulNBits`` (8 or 4 bits).

Activations stay float, so accuracy holds where int8 activations hurt (outliers in
transformers); the file shrinks. ``MatMulNBits`` is an onnxruntime contrib operator.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from onnxbridge.quantize import _passes
from onnxbridge.quantize._types import QuantizationMode

if TYPE_CHECKING:
    import onnx

_NBITS_LOG = "onnxruntime.quantization.matmul_nbits_quantizer"


def matmul_nbits(
    model: onnx.ModelProto,
    *,
    bits: int,
    block_size: int,
    include: list[str] | None = None,
    exclude: list[str] = (),  # type: ignore[assignment]
    accuracy_level: int | None = None,
) -> onnx.ModelProto:
    """MatMuls with constant weights (all, or those in ``include``) as ``MatMulNBits``.

    ``accuracy_level=None`` computes in float; 4 quantizes activations to int8 per block.
    Measured with onnxruntime 1.32 on AVX2 without VNNI (one thread, 512x32000 weights): for
    one row at a time (a decoder generating) level 4 is 2.4x faster than float weights at 4
    bits and 1.6x at 8 bits, while level None is 1.7x *slower* at 4 bits and 25x slower at 8;
    for 64 rows (an encoder) level None is the faster of the two.
    """
    root = logging.getLogger()
    handlers, root_level = list(root.handlers), root.level
    # its module calls logging.basicConfig(level=INFO) on import: the user's logging is restored
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    root.handlers[:] = handlers
    root.setLevel(root_level)
    exclude = [*exclude, *_too_small(model, block_size)]
    chatty = logging.getLogger(_NBITS_LOG)
    level = chatty.level
    chatty.setLevel(logging.WARNING)  # it logs every node it visits
    try:
        quantizer = MatMulNBitsQuantizer(
            _passes.copy(model),
            bits=bits,
            block_size=block_size,
            is_symmetric=True,
            accuracy_level=accuracy_level,
            nodes_to_exclude=list(exclude),
            nodes_to_include=include,
            op_types_to_quantize=("MatMul",),
        )
        quantizer.process()
    finally:
        chatty.setLevel(level)
    return quantizer.model.model


def _too_small(model: onnx.ModelProto, block_size: int) -> list[str]:
    """MatMuls whose weights have fewer input rows than one block: left in float.

    Their blocks would be mostly padding, and they are no weights to speak of: a rotary
    embedding's ``positions x inv_freq`` (one row), whose error grows with the position.
    """
    shapes = {t.name: list(t.dims) for t in model.graph.initializer}
    return [
        n.name
        for n in model.graph.node
        if n.op_type == "MatMul" and len(shapes.get(n.input[1], [])) == 2 and shapes[n.input[1]][0] < block_size
    ]


class WeightOnly:
    """MatMul weights in ``bits`` bits, blocks of ``block_size``; optional int8 embeddings."""

    mode = QuantizationMode.WEIGHT_ONLY

    def __init__(
        self,
        bits: int = 8,
        block_size: int = 32,
        embeddings: bool = True,
        mode: QuantizationMode = QuantizationMode.WEIGHT_ONLY,
        one_row: bool = False,
    ) -> None:
        self.bits, self.block_size, self.embeddings, self.mode = bits, block_size, embeddings, mode
        self.accuracy_level = 4 if one_row else None  # see matmul_nbits
        self.name = f"weight-only {bits}-bit MatMulNBits" + (" + int8 embeddings" if embeddings else "")

    def settings(self, exclude: list[str]) -> dict[str, Any]:
        return {
            "weights": f"int{self.bits} block-wise (block {self.block_size}, symmetric)",
            "activations": "float" if self.accuracy_level is None else "int8 inside MatMulNBits (accuracy_level 4)",
            "op_types": ["MatMul"],
            "embeddings": "int8 per-row" if self.embeddings else "float",
            **({"exclude": exclude} if exclude else {}),
        }

    def candidates(self, model: onnx.ModelProto) -> list[str]:
        initializers = {i.name for i in model.graph.initializer}
        return [n.name for n in model.graph.node if n.op_type == "MatMul" and n.name and n.input[1] in initializers]

    def __call__(self, model: onnx.ModelProto, exclude: list[str]) -> tuple[onnx.ModelProto, list[str]]:
        out = matmul_nbits(
            model, bits=self.bits, block_size=self.block_size, exclude=exclude, accuracy_level=self.accuracy_level
        )
        if self.embeddings:
            _passes.quantize_embeddings(out)
        return out, _passes.float_nodes(out)
