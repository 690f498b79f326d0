"""Static int8: onnxruntime's ``quantize_static`` in QDQ format, calibrated on the user's data.

uint8 activations and per-channel int8 weights, which is what onnxruntime's integer CPU
kernels run; pre-processing folds BatchNormalization into Conv first so that the QDQ pairs
sit around the convolution itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from onnxbridge.core._errors import InputError
from onnxbridge.core._types import Feeds
from onnxbridge.quantize import _passes
from onnxbridge.quantize._types import QuantizationMode

if TYPE_CHECKING:
    import onnx

METHODS = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}


class StaticQdq:
    """``quantize_static`` (QDQ) with calibration samples."""

    mode = QuantizationMode.STATIC

    def __init__(
        self,
        calibration: list[Feeds],
        *,
        per_channel: bool = True,
        op_types: list[str] | None = None,
        method: str = "minmax",
    ) -> None:
        if method not in METHODS:
            raise InputError(f"method={method!r}: expected one of {', '.join(METHODS)}.")
        self.calibration, self.per_channel, self.op_types, self.method = calibration, per_channel, op_types, method
        self.name = f"static int8 QDQ ({method})"
        self.prepare = _passes.Prepared(gemm_to_matmul=False)

    def settings(self, exclude: list[str]) -> dict[str, Any]:
        settings: dict[str, Any] = {"per_channel": self.per_channel, "weights": "int8"}
        settings["op_types"] = self.op_types or "all supported"
        settings |= {"format": "QDQ", "activations": "uint8", "calibration": METHODS[self.method]}
        if exclude:
            settings["exclude"] = exclude
        return settings

    def candidates(self, model: onnx.ModelProto) -> list[str]:
        types = set(_passes.COMPUTE_OPS) | {"Gather"}
        if self.op_types:
            types &= set(self.op_types)
        return [n.name for n in self.prepare(model).graph.node if n.name and n.op_type in types]

    def __call__(self, model: onnx.ModelProto, exclude: list[str]) -> tuple[onnx.ModelProto, list[str]]:
        import onnx
        from onnxruntime import quantization as q

        prepared = self.prepare(model)
        excluded = _passes.matching_nodes(prepared, exclude)
        with _passes.on_disk(prepared) as (source, target):
            q.quantize_static(
                source,
                target,
                _Reader(self.calibration),
                quant_format=q.QuantFormat.QDQ,
                op_types_to_quantize=self.op_types,
                per_channel=self.per_channel,
                activation_type=q.QuantType.QUInt8,
                weight_type=q.QuantType.QInt8,
                nodes_to_exclude=excluded,
                use_external_data_format=_passes.is_large(prepared),
                calibrate_method=getattr(q.CalibrationMethod, METHODS[self.method]),
            )
            quantized = onnx.load_model(target)
        return quantized, _passes.float_nodes(quantized)


class _Reader:
    """onnxruntime's CalibrationDataReader over a list of feeds."""

    def __init__(self, samples: list[Feeds]) -> None:
        self.samples = iter(samples)

    def get_next(self) -> Feeds | None:
        return next(self.samples, None)
