"""ONNX passthrough: an ``onnx.ModelProto`` or a path to an ``.onnx`` file."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from onnxbridge.core._axes import normalize_dynamic_axes
from onnxbridge.core._errors import ExportError, InputError
from onnxbridge.exporting._adapter import Exported, ExportRequest
from onnxbridge.exporting._describe import describe_onnx
from onnxbridge.graph import _checker, _graph
from onnxbridge.graph._files import load_model
from onnxbridge.running import _capabilities
from onnxbridge.running._feeds import as_feeds


class OnnxAdapter:
    """Accepts ONNX models as they are; renames, re-stamps axes or converts opsets on request."""

    framework = "onnx"
    module_roots = ("onnx", "builtins", "pathlib")

    def accepts(self, model: object) -> bool:
        """An ``onnx.ModelProto``, or a path ending in ``.onnx``."""
        import onnx

        if isinstance(model, onnx.ModelProto):
            return True
        return isinstance(model, (str, os.PathLike)) and Path(model).suffix.lower() == ".onnx"

    def export(self, model: Any, request: ExportRequest) -> Exported:
        """Wrap the model, applying the requested names, axes and opset to a copy."""
        import onnx

        if request.options:
            raise InputError(f"ONNX models take no adapter options; got {sorted(request.options)}.")
        if isinstance(model, onnx.ModelProto):
            proto = onnx.ModelProto()
            proto.CopyFrom(model)  # never edit the caller's model
        else:
            proto = load_model(model)
        if request.opset is not None:
            proto = _convert_opset(proto, request.opset)
        _rename(proto, request.input_names, request.output_names)
        inputs, outputs = _graph.inputs(proto), list(proto.graph.output)
        axes = normalize_dynamic_axes(request.dynamic_axes, _graph.ranks(inputs), _graph.ranks(outputs))
        fixed = _graph.declare_axes(proto, axes)
        if fixed:
            raise InputError(
                "dynamic_axes marks dimensions that this ONNX model fixes: " + "; ".join(fixed) + ". "
                "A fixed dimension cannot be made symbolic without re-exporting from the source framework."
            )
        sample = None if request.sample is None else as_feeds(request.sample, [v.name for v in inputs])
        described = describe_onnx(proto, sample=sample)
        if axes:
            described.dynamic_axes = {**described.dynamic_axes, **axes}
        return described


def _convert_opset(proto: Any, opset: int) -> Any:
    from onnx import version_converter

    current = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    if current == opset:
        return proto
    _capabilities.choose_opset(opset, preferred=opset, converter="onnx's version converter")
    try:
        converted = version_converter.convert_version(proto, opset)
        _checker.check_model(converted)
    except Exception as err:
        raise ExportError(
            f"onnx's version converter could not move this model from opset {current} to {opset}: {err}. "
            "Re-export from the source framework at that opset instead."
        ) from err
    return converted


def _rename(proto: Any, input_names: Sequence[str] | None, output_names: Sequence[str] | None) -> None:
    graph_inputs = [v.name for v in _graph.inputs(proto)]
    mapping: dict[str, str] = {}
    for label, new, old in (
        ("input_names", input_names, graph_inputs),
        ("output_names", output_names, [o.name for o in proto.graph.output]),
    ):
        if new is None:
            continue
        if len(new) != len(old):
            raise InputError(f"{label} has {len(new)} names but the model has {len(old)}: {old}.")
        mapping.update({o: n for o, n in zip(old, new, strict=True) if o != n})
    _graph.rename_values(proto.graph, mapping)
