"""onnxbridge: train in any framework, deploy anywhere with ONNX, in one call.

    import onnxbridge as ob
    art = ob.export(model, sample, dynamic_axes="batch")
    art.validate()
    outputs = art.session().run({"input": x})

Importing this package imports no framework and no onnxruntime; each is imported
when first needed.
"""

from __future__ import annotations

# Adapters and the registry
from onnxbridge._adapter import Adapter, Exported, ExportRequest

# Entry points
from onnxbridge._artifact import Artifact, load

# Errors
from onnxbridge._errors import (
    ExportError,
    InferenceError,
    InputError,
    MissingDependencyError,
    ModelFileError,
    OnnxBridgeError,
    ProviderError,
    QuantizationError,
    RegistrationError,
    UnsupportedModelError,
    ValidationError,
    WebExportError,
)
from onnxbridge._export import export
from onnxbridge._registry import register_adapter, supported_frameworks

# Results
from onnxbridge._session import InputSpec, ProviderFallbackWarning, Session
from onnxbridge._validation import Check, OutputComparison, ValidationReport
from onnxbridge._version import __version__
from onnxbridge.quantize import (
    Candidate,
    OptimizationReport,
    OutputAccuracy,
    QuantizationMode,
    QuantizationReport,
    Reference,
)

__all__ = [
    "Adapter",
    "Artifact",
    "Candidate",
    "Check",
    "ExportError",
    "ExportRequest",
    "Exported",
    "InferenceError",
    "InputError",
    "InputSpec",
    "MissingDependencyError",
    "ModelFileError",
    "OnnxBridgeError",
    "OptimizationReport",
    "OutputAccuracy",
    "OutputComparison",
    "ProviderError",
    "ProviderFallbackWarning",
    "QuantizationError",
    "QuantizationMode",
    "QuantizationReport",
    "Reference",
    "RegistrationError",
    "Session",
    "UnsupportedModelError",
    "ValidationError",
    "ValidationReport",
    "WebExportError",
    "__version__",
    "export",
    "load",
    "register_adapter",
    "supported_frameworks",
]
