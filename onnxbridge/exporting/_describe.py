"""What an ONNX model is, read from the graph and onnxbridge's metadata: one description for all.

:func:`describe_onnx` gives the facts an :class:`~onnxbridge.Artifact` is built from (used by
``load()`` and the ONNX adapter); :func:`tensor_info` describes one graph input or output
for the command line's ``inspect`` and the browser page.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from onnxbridge.core._axes import DynamicAxes
from onnxbridge.core._types import Feeds, SourceFiles
from onnxbridge.exporting._adapter import Exported
from onnxbridge.generation._spec import GenerationSpec
from onnxbridge.graph import _dtypes, _graph, _metadata

if TYPE_CHECKING:
    import onnx


def tensor_info(value: onnx.ValueInfoProto) -> dict[str, Any]:
    """``{"name", "dtype", "shape"}`` of a graph value; unknown dimensions are ``"?"``.

    The dtype is numpy's name (``"string"`` for text); a non-tensor value has dtype
    ``"non-tensor"`` and no shape.
    """
    if not value.type.HasField("tensor_type"):
        return {"name": value.name, "dtype": "non-tensor", "shape": []}
    tensor = value.type.tensor_type
    shape = [d.dim_param or (d.dim_value if d.HasField("dim_value") else "?") for d in tensor.shape.dim]
    return {"name": value.name, "dtype": _dtypes.display_name(_graph.value_dtype(value)), "shape": shape}


def describe_onnx(model: onnx.ModelProto, *, sample: Feeds | None = None) -> Exported:
    """The facts of an ONNX model, from onnxbridge's metadata where the file has it."""
    facts = _metadata.read(model)
    reference_sample, reference_outputs = (
        facts.reference if facts.reference is not None and sample is None else (None, None)
    )
    return Exported(
        model=model,
        framework=facts.framework or "onnx",
        framework_version=facts.framework_version or "unknown",
        exporter=facts.exporter or model.producer_name or "unknown",
        dynamic_axes=facts.dynamic_axes if facts.dynamic_axes is not None else symbolic_axes(model),
        sample=sample if sample is not None else reference_sample,
        reference_outputs=reference_outputs,
        notes=list(facts.export_notes),
        properties=dict(facts.properties),
        generation=GenerationSpec.from_json(dict(facts.generation)) if facts.generation is not None else None,
        labels=dict(facts.labels) if facts.labels is not None else None,
        source_files=SourceFiles.from_json(facts.source_files) if facts.source_files is not None else None,
    )


def symbolic_axes(model: onnx.ModelProto) -> DynamicAxes:
    """The symbolic (or unknown) dimensions of a graph's inputs and outputs."""
    axes: DynamicAxes = {}
    for value in [*model.graph.input, *model.graph.output]:
        if not value.type.HasField("tensor_type") or not value.type.tensor_type.HasField("shape"):
            continue
        dims = {
            axis: dim.dim_param or f"{value.name}_dim{axis}"
            for axis, dim in enumerate(value.type.tensor_type.shape.dim)
            if not dim.HasField("dim_value")
        }
        if dims:
            axes[value.name] = dims
    initializers = {i.name for i in model.graph.initializer}
    return {k: v for k, v in axes.items() if k not in initializers}


def file_summary(model: onnx.ModelProto, path: Path) -> dict[str, Any]:
    """Everything ``onnxbridge inspect`` shows about a model file, as plain data."""
    initializer_bytes = sum(len(i.raw_data) or i.ByteSize() for i in model.graph.initializer)
    facts = _metadata.read(model)
    decoded: dict[str, Any] = dict(facts.summaries)
    if facts.dynamic_axes is not None:
        decoded["dynamic_axes"] = {n: {str(a): d for a, d in dims.items()} for n, dims in facts.dynamic_axes.items()}
    if facts.properties:
        decoded["properties"] = dict(facts.properties)
    if facts.export_notes:
        decoded["export_notes"] = list(facts.export_notes)
    return {
        "path": str(path),
        "size_bytes": path.stat().st_size,
        "ir_version": model.ir_version,
        "opsets": {(o.domain or "ai.onnx"): o.version for o in model.opset_import},
        "producer": f"{model.producer_name} {model.producer_version}".strip(),
        "inputs": [tensor_info(v) for v in _graph.inputs(model)],
        "outputs": [tensor_info(v) for v in model.graph.output],
        "operators": dict(Counter(n.op_type for n in model.graph.node).most_common()),
        "initializers": len(model.graph.initializer),
        "initializer_bytes": initializer_bytes,
        "onnxbridge": {
            "version": facts.version,
            "framework": facts.framework,
            "framework_version": facts.framework_version,
            "exporter": facts.exporter,
            "has_reference_outputs": facts.reference is not None,
            **decoded,
        }
        if facts.recorded
        else None,
    }
