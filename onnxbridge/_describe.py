"""What an ONNX model is, read from the graph and onnxbridge's metadata: one description for all.

:func:`describe_onnx` gives the facts an :class:`~onnxbridge.Artifact` is built from (used by
``load()`` and the ONNX adapter); :func:`tensor_info` describes one graph input or output
for the command line's ``inspect`` and the browser page.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from onnxbridge import _dtypes, _graph, _serialization
from onnxbridge._adapter import Exported, Feeds
from onnxbridge._axes import DynamicAxes
from onnxbridge._generation import GenerationSpec

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
    meta = _serialization.get_metadata(model)
    if "dynamic_axes" in meta:
        axes = {n: {int(a): d for a, d in dims.items()} for n, dims in json.loads(meta["dynamic_axes"]).items()}
    else:
        axes = symbolic_axes(model)
    reference_sample, reference_outputs = None, None
    if "reference" in meta and sample is None:
        reference_sample, reference_outputs = _serialization.decode_reference(meta["reference"])
    return Exported(
        model=model,
        framework=meta.get("framework", "onnx"),
        framework_version=meta.get("framework_version", "unknown"),
        exporter=meta.get("exporter", model.producer_name or "unknown"),
        dynamic_axes=axes,
        sample=sample if sample is not None else reference_sample,
        reference_outputs=reference_outputs,
        notes=json.loads(meta.get("export_notes", "[]")),
        properties=json.loads(meta.get("properties", "{}")),
        generation=GenerationSpec.from_json(json.loads(meta["generation"])) if "generation" in meta else None,
        labels=json.loads(meta["labels"]) if "labels" in meta else None,
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
    meta = _serialization.get_metadata(model)
    decoded = {}
    for key in ("validation", "quantization", "dynamic_axes", "properties", "export_notes"):
        if key in meta:
            decoded[key] = json.loads(meta[key])
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
            "version": meta.get("version"),
            "framework": meta.get("framework"),
            "framework_version": meta.get("framework_version"),
            "exporter": meta.get("exporter"),
            "has_reference_outputs": "reference" in meta,
            **decoded,
        }
        if meta
        else None,
    }
