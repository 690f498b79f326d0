"""Quantization and graph optimization, measured against the parent model.

One module per recipe (``_dynamic``, ``_static``, ``_weight_only``, ``_fp16``, ``_qat``),
all behind :class:`~onnxbridge.quantize._recipe.Recipe`; orchestration (measure, protect,
repair, search) lives in ``_quantize``, ``_sensitivity`` and ``_auto``; graph
optimization in ``_optimize``. :meth:`onnxbridge.Artifact.quantize` and
:meth:`onnxbridge.Artifact.optimize` are the entry points.
"""

from __future__ import annotations

from onnxbridge.core._types import Reference
from onnxbridge.quantize._types import (
    Candidate,
    GenerationQuality,
    OptimizationReport,
    OutputAccuracy,
    QuantizationMode,
    QuantizationReport,
)

__all__ = [
    "Candidate",
    "GenerationQuality",
    "OptimizationReport",
    "OutputAccuracy",
    "QuantizationMode",
    "QuantizationReport",
    "Reference",
]
