"""The contract every quantization recipe keeps."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import onnx

    from onnxbridge.quantize._types import QuantizationMode


class Recipe(Protocol):
    """One way to quantize a model: a small object with settings, candidates and a call.

    Attributes:
        name: A short human name, e.g. ``"dynamic int8 per-channel"``.
        mode: The :class:`QuantizationMode` it belongs to.
    """

    name: str
    mode: QuantizationMode

    def settings(self, exclude: list[str]) -> dict[str, Any]:
        """What the recipe does, for the report."""
        ...

    def candidates(self, model: onnx.ModelProto) -> list[str]:
        """Node names the tolerance repair may leave out of quantization."""
        ...

    def __call__(self, model: onnx.ModelProto, exclude: list[str]) -> tuple[onnx.ModelProto, list[str]]:
        """The quantized model, and the compute nodes it left in float."""
        ...
