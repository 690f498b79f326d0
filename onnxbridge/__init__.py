"""onnxbridge: train in any framework, deploy anywhere with ONNX, in one call.

    import onnxbridge as ob
    art = ob.export(model, sample, dynamic_axes="batch")
    art.validate()
    outputs = art.session().run({"input": x})

Importing this package imports no framework and no onnxruntime; each is imported
when first needed.
"""

from __future__ import annotations

from onnxbridge._artifact import Artifact  # the exported model
from onnxbridge._compose import compose  # one graph from two artifacts
from onnxbridge._export import export  # the entry point
from onnxbridge._loading import load  # loading a saved model
from onnxbridge._pair import EncoderDecoderArtifact  # two graphs that generate together
from onnxbridge._version import __version__
from onnxbridge.checks._compat_report import CompatFinding, CompatReport  # what compat() finds
from onnxbridge.checks._validation import Check, OutputComparison, ValidationReport  # validation results
from onnxbridge.core._axes import DynamicAxesSpec  # what export(dynamic_axes=...) takes
from onnxbridge.core._errors import (  # every failure is an OnnxBridgeError
    ExportError,
    InferenceError,
    InputError,
    MissingDependencyError,
    ModelConfigError,
    ModelFileError,
    OnnxBridgeError,
    ProviderError,
    QuantizationError,
    RegistrationError,
    UnsupportedModelError,
    UnsupportedSettingError,
    ValidationError,
    WebExportError,
)
from onnxbridge.deploy._web_server import WebServer, serve_web  # the browser page, cross-origin isolated
from onnxbridge.exporting._adapter import Adapter, Exported, ExportRequest  # writing adapters
from onnxbridge.exporting._registry import register_adapter, supported_frameworks  # the adapter registry
from onnxbridge.generation._spec import GenerationOptions  # what generate() takes
from onnxbridge.quantize import (  # quantization and optimization results
    Candidate,
    GenerationQuality,
    OptimizationReport,
    OutputAccuracy,
    QuantizationMode,
    QuantizationReport,
    Reference,
)
from onnxbridge.running._providers import ProviderSpec  # what session(providers=...) takes
from onnxbridge.running._session import InputSpec, ProviderFallbackWarning, Session  # running

__all__ = [
    # Entry points
    "export",
    "load",
    "compose",
    "serve_web",
    "Artifact",
    "EncoderDecoderArtifact",
    "Session",
    "WebServer",
    "__version__",
    # Arguments
    "DynamicAxesSpec",
    "ProviderSpec",
    "QuantizationMode",
    # Results and reports
    "Candidate",
    "Check",
    "CompatFinding",
    "CompatReport",
    "GenerationOptions",
    "GenerationQuality",
    "InputSpec",
    "OptimizationReport",
    "OutputAccuracy",
    "OutputComparison",
    "QuantizationReport",
    "Reference",
    "ValidationReport",
    # Adapters and the registry
    "Adapter",
    "ExportRequest",
    "Exported",
    "register_adapter",
    "supported_frameworks",
    # Errors and warnings
    "ExportError",
    "InferenceError",
    "InputError",
    "MissingDependencyError",
    "ModelConfigError",
    "ModelFileError",
    "OnnxBridgeError",
    "ProviderError",
    "ProviderFallbackWarning",
    "QuantizationError",
    "RegistrationError",
    "UnsupportedModelError",
    "UnsupportedSettingError",
    "ValidationError",
    "WebExportError",
]
