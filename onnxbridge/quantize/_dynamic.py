"""Dynamic int8: onnxruntime's ``quantize_dynamic`` after its pre-processing.

Weights are int8 (per-channel by default), activations are quantized at run time. Conv
stays float by default: dynamic conv kernels (ConvInteger) are slower than float ones.
Options onnxbridge adds: int8 embedding tables, and ``protect``: the MatMuls whose int8
error hurts the outputs most (found by :mod:`onnxbridge.quantize._sensitivity`) kept out of
int8, in float (as fast as float on CPUs where int8 GEMM does not pay) or as 8-bit
weight-only ``MatMulNBits`` (smaller, but slower than float on CPUs without VNNI).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from onnxbridge.quantize import _passes, _saturation
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
        protect: str | None = None,
        keep_float: Sequence[str] = (),
        saturation: bool | None = None,
    ) -> None:
        self.per_channel = per_channel
        self.op_types = list(op_types or DEFAULT_OPS)
        self.embeddings = embeddings
        # None: no automatic protection. "float" / "weight-only": the sensitive MatMuls that
        # onnxbridge keeps out of int8 are stored so. Nodes the user excluded (keep_float) stay float.
        self.protect = protect
        self.keep_float = set(keep_float)
        self.name = (
            f"dynamic int8 {'per-channel' if per_channel else 'per-tensor'}"
            + (" + int8 embeddings" if embeddings else "")
            + (
                {"float": " + sensitive MatMuls float", "weight-only": " + sensitive MatMuls 8-bit weight-only"}.get(
                    protect or "", ""
                )
            )
        )
        self.prepare = _passes.Prepared(gemm_to_matmul=True)
        # whether this CPU's U8S8 kernel can saturate (x86 without VNNI): None asks the CPU
        self.saturation = _saturation.cpu_saturates_u8s8() if saturation is None else saturation
        self.reduced: list[str] = []  # the MatMuls given 7-bit weights by the last call

    def settings(self, exclude: list[str]) -> dict[str, Any]:
        settings: dict[str, Any] = {"per_channel": self.per_channel, "weights": "int8", "op_types": self.op_types}
        settings["embeddings"] = "int8 per-row" if self.embeddings else "float"
        protected = [n for n in exclude if n not in self.keep_float] if self.protect else []
        if protected:
            settings[f"sensitive MatMuls kept {self.protect}"] = protected
        if [n for n in exclude if n not in protected]:
            settings["exclude"] = [n for n in exclude if n not in protected]
        if self.reduced:
            settings["7-bit weights (U8S8 saturation on this CPU, no VNNI)"] = list(self.reduced)
        return settings

    def _weight_only(self, exclude: list[str]) -> list[str]:
        return [n for n in exclude if n not in self.keep_float] if self.protect == "weight-only" else []

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
        excluded = _passes.matching_nodes(prepared, exclude)
        candidates = [n for n in self.candidates(model) if n not in set(excluded)]
        self.reduced = _saturation.saturating(prepared, candidates) if self.saturation else []
        options = {
            "op_types_to_quantize": self.op_types,
            "per_channel": self.per_channel,
            "weight_type": q.QuantType.QInt8,
            "use_external_data_format": _passes.is_large(prepared),
            # Shape inference cannot type tensors behind contrib operators (optimized graphs);
            # onnxruntime then needs the default type said outright.
            "extra_options": {"MatMulConstBOnly": True, "DefaultTensorType": onnx.TensorProto.FLOAT},
        }
        with _passes.on_disk(prepared) as (source, target):
            if self.reduced:  # those MatMuls first, with 7-bit weights; then the rest, with 8
                middle = str(Path(target).with_name("reduced.onnx"))
                q.quantize_dynamic(source, middle, nodes_to_quantize=self.reduced, reduce_range=True, **options)
                source = middle
            q.quantize_dynamic(source, target, nodes_to_exclude=[*excluded, *self.reduced], **options)
            quantized = onnx.load_model(target)
        weight_only = set(self._weight_only(excluded))
        if weight_only:
            quantized = matmul_nbits(quantized, bits=8, block_size=32, include=sorted(weight_only))
        if self.embeddings:
            _passes.quantize_embeddings(quantized)
        return quantized, _passes.float_nodes(quantized)
