"""``export()``: one call from any registered framework to an :class:`Artifact`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from onnxbridge._artifact import Artifact
from onnxbridge._pair import EncoderDecoderArtifact
from onnxbridge.core._axes import DynamicAxesSpec
from onnxbridge.exporting._dispatch import export_model

__all__ = ["export"]


def export(
    model: Any,
    sample: Any = None,
    dynamic_axes: DynamicAxesSpec = None,
    *,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    opset: int | None = None,
    framework: str | None = None,
    **adapter_options: Any,
) -> Artifact | EncoderDecoderArtifact:
    """Export a model from any supported framework to ONNX.

    Args:
        model: A framework model (e.g. a ``torch.nn.Module``), an ``onnx.ModelProto``,
            or a path to an ``.onnx`` file.
        sample: Example inputs in the form the model takes them: one tensor, a tuple
            of tensors, or a dict of keyword tensors.
        dynamic_axes: Axes that vary at run time: ``{"input": {0: "batch"}}``,
            ``{"input": [0]}``, or ``"batch"`` for axis 0 of every input and output.
        input_names: Names for the graph inputs, in sample order.
        output_names: Names for the graph outputs, in the order the model returns them.
        opset: ONNX opset; ``None`` picks one that the exporter and the installed
            onnxruntime both support.
        framework: Force an adapter by framework name instead of detecting it.
        **adapter_options: Framework-specific options, e.g. ``exporter="torchscript"``
            for PyTorch.

    Returns:
        The :class:`Artifact`; for an encoder-decoder ``transformers`` model exported for
        generation, an :class:`EncoderDecoderArtifact` (a pair holding both graphs as artifacts).

    Raises:
        UnsupportedModelError: No adapter converts this model.
        MissingDependencyError: The framework's extra is not installed.
        InputError: The sample, names or axes do not fit the model.
        ExportError: The exporter failed (the message names the operator and opset).
    """
    exported = export_model(
        model,
        sample,
        dynamic_axes,
        input_names=input_names,
        output_names=output_names,
        opset=opset,
        framework=framework,
        **adapter_options,
    )
    return EncoderDecoderArtifact.from_exported(exported) if exported.components else Artifact(exported)
