"""Dynamic int8: onnxruntime's ``quantize_dynamic`` after its pre-processing.

Weights are int8 (per-channel by default), activations are quantized at run time. Conv
stays float by default: dynamic conv kernels (ConvInteger) are slower than float ones.
Options onnxbridge adds: int8 embedding tables, and nodes kept out of int8 (by the
sensitivity search or ``exclude``) stored as 8-bit weight-only instead of float, so that
protecting accuracy does not give the size back.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from onnxbridge.quantize import _passes
from onnxbridge.quantize._types import QuantizationMode
from onnxbridge.quantize._weight_only import matmul_nbits

if TYPE_CHECKING:
    import onnx

DEFAULT_OPS = ("MatMul", "Attention", "LSTM")


class DynamicInt8:
    """``quantize_dynamic`` with onnxbridge's defaults and options."""

    mode = QuantizationMode.DYNAMIC

    def __init__(
        self,
        *,
        per_channel: bool = True,
        op_types: list[str] | None = None,
        embeddings: bool = False,
        protect: str = "float",
    ) -> None:
        self.per_channel = per_channel
        self.op_types = list(op_types or DEFAULT_OPS)
        self.embeddings = embeddings
        self.protect = protect  # how excluded MatMuls are kept: "float" or "weight-only" (8-bit)
        self.name = (
            f"dynamic int8 {'per-channel' if per_channel else 'per-tensor'}"
            + (" + int8 embeddings" if embeddings else "")
            + (" + 8-bit weight-only for sensitive MatMuls" if protect == "weight-only" else "")
        )
        self._prepared: dict[int, onnx.ModelProto] = {}

    def settings(self, exclude: list[str]) -> dict[str, Any]:
        settings: dict[str, Any] = {"per_channel": self.per_channel, "weights": "int8", "op_types": self.op_types}
        settings["embeddings"] = "int8 per-row" if self.embeddings else "float"
        if exclude:
            key = "kept 8-bit weight-only" if self.protect == "weight-only" else "exclude"
            settings[key] = exclude
        return settings

    def prepare(self, model: onnx.ModelProto) -> onnx.ModelProto:
        """The pre-processed model (cached per parent model)."""
        key = id(model)
        if key not in self._prepared:
            self._prepared[key] = _passes.preprocess(model, gemm_to_matmul=True)
        return self._prepared[key]

    def candidates(self, model: onnx.ModelProto) -> list[str]:
        types = set(_passes.COMPUTE_OPS) & set(self.op_types)
        initializers = {i.name for i in model.graph.initializer}
        prepared = self.prepare(model)
        initializers |= {i.name for i in prepared.graph.initializer}
        return [
            n.name
            for n in prepared.graph.node
            if n.name and n.op_type in types and (n.op_type != "MatMul" or n.input[1] in initializers)
        ]

    def __call__(self, model: onnx.ModelProto, exclude: list[str]) -> tuple[onnx.ModelProto, list[str]]:
        import onnx
        from onnxruntime import quantization as q

        prepared = self.prepare(model)
        names = set(exclude)
        excluded = [n.name for n in prepared.graph.node if n.name in names or n.op_type in names]
        with tempfile.TemporaryDirectory() as tmp:
            source, target = Path(tmp) / "float.onnx", Path(tmp) / "quantized.onnx"
            onnx.save_model(prepared, str(source))
            q.quantize_dynamic(
                str(source),
                str(target),
                op_types_to_quantize=self.op_types,
                per_channel=self.per_channel,
                weight_type=q.QuantType.QInt8,
                nodes_to_exclude=excluded,
                extra_options={"MatMulConstBOnly": True},
            )
            quantized = onnx.load_model(str(target))
        if self.protect == "weight-only" and excluded:
            quantized = matmul_nbits(quantized, bits=8, block_size=32, include=excluded)
        if self.embeddings:
            _passes.quantize_embeddings(quantized)
        return quantized, _passes.float_nodes(quantized)
