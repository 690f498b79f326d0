"""The exceptions onnxbridge raises.

Every error derives from :class:`OnnxBridgeError`, so one ``except`` clause catches
them all. Where a built-in exception type fits the cause, the error derives from it
too (an :class:`InputError` is a ``ValueError``), so code written against plain
Python conventions keeps working. Messages say what was wrong, what was expected,
and what to do about it.
"""

from __future__ import annotations

import re
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "ExportError",
    "InferenceError",
    "InputError",
    "MissingDependencyError",
    "ModelFileError",
    "OnnxBridgeError",
    "ProviderError",
    "QuantizationError",
    "RegistrationError",
    "Report",
    "UnsupportedModelError",
    "ValidationError",
    "WebExportError",
]


@runtime_checkable
class Report(Protocol):
    """A report carried by an error (a :class:`~onnxbridge.ValidationReport`, a :class:`~onnxbridge.QuantizationReport`).

    The errors name no report class: reports live in higher layers, and this one only needs to
    know that a report can say what it found as plain data.
    """

    def summary(self) -> dict[str, Any]:
        """The report as JSON-friendly data."""
        ...


class OnnxBridgeError(Exception):
    """Base class of every error onnxbridge raises."""


class UnsupportedModelError(OnnxBridgeError, TypeError):
    """No registered adapter converts this kind of model."""


class RegistrationError(OnnxBridgeError, ValueError):
    """An adapter could not be registered (malformed, or its framework is taken)."""


class MissingDependencyError(OnnxBridgeError, ImportError):
    """An optional dependency that this operation needs is not installed."""


class InputError(OnnxBridgeError, ValueError):
    """An argument does not fit the model: sample, names, axes, or session inputs."""


class ExportError(OnnxBridgeError):
    """The framework's exporter could not turn the model into ONNX."""


class ModelConfigError(ExportError):
    """The fault is the model's own: its configuration contradicts itself (an EOS id outside its vocabulary, ...)."""


def config_fault(err: BaseException, model: object) -> ModelConfigError | None:
    """A :class:`ModelConfigError` when ``err`` is the model's code reading an attribute its config lacks."""
    found = (
        re.search(r"'(\w*Config)' object has no attribute '(\w+)'", str(err))
        if isinstance(err, AttributeError)
        else None
    )
    if found is None:
        return None
    config, attribute = found.groups()
    return ModelConfigError(
        f"{type(model).__qualname__}'s own code reads {attribute!r} from its {config}, which has no such attribute. "
        f"This is the model's configuration, not the export: set it on the config (model.config.{attribute} = "
        f"<the value its checkpoints use>, on the sub-config named {config} when it is nested), then export again."
    )


class UnsupportedSettingError(InputError):
    """The model's generation settings ask for what :meth:`~onnxbridge.Artifact.generate` does not do (beam search, ...)."""


class ValidationError(OnnxBridgeError):
    """The exported model failed validation; ``.report`` holds every finding."""

    def __init__(self, message: str, report: Report) -> None:
        super().__init__(message)
        self.report = report


class ProviderError(OnnxBridgeError):
    """An execution provider is unknown, or unavailable while ``strict=True``."""


class QuantizationError(OnnxBridgeError):
    """Quantization could not run, or could not meet the requested tolerance; ``.report`` says why."""

    def __init__(self, message: str, report: Report | None = None) -> None:
        super().__init__(message)
        self.report = report


class WebExportError(OnnxBridgeError):
    """The model cannot run in a browser page: too large for WebAssembly, or unsupported operators."""


class InferenceError(OnnxBridgeError, RuntimeError):
    """onnxruntime failed while running the model."""


class ModelFileError(OnnxBridgeError, ValueError):
    """A model file is missing, empty, truncated, not ONNX, or unsafe to load."""


def first_line(error: BaseException | str, *, limit: int = 400) -> str:
    """The first line of an exception's message (or of a text), cut at ``limit`` characters.

    Tools' messages run to pages (stack dumps, graph listings); errors that teach quote the
    line that says what went wrong. Empty when there is no message.
    """
    text = str(error).strip()
    return text.splitlines()[0][:limit] if text else ""
