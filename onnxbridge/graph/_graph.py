"""Small edits to ONNX graphs that exporters leave to their users."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from onnxbridge.core._axes import DynamicAxes
from onnxbridge.graph import _dtypes

if TYPE_CHECKING:
    import onnx


def inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    """Graph inputs that the caller feeds (initializers listed as inputs excluded)."""
    initializers = {i.name for i in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in initializers]


def signature(model: onnx.ModelProto) -> Iterator[onnx.ValueInfoProto]:
    """Graph inputs (initializers excluded) and outputs."""
    yield from inputs(model)
    yield from model.graph.output


def input_dtypes(model: onnx.ModelProto) -> dict[str, np.dtype[Any] | None]:
    """Numpy dtype of each tensor input (``None`` for non-tensor or unmapped types)."""
    return {value.name: value_dtype(value) for value in inputs(model)}


def value_dtype(value: onnx.ValueInfoProto) -> np.dtype[Any] | None:
    """Numpy dtype of a graph value (``None`` for non-tensor values or types numpy lacks)."""
    return _dtypes.from_onnx(value.type.tensor_type.elem_type) if value.type.HasField("tensor_type") else None


def ranks(values: list[onnx.ValueInfoProto]) -> dict[str, int]:
    """Rank of each tensor value with a known shape (``-1`` when unknown)."""
    out = {}
    for value in values:
        tensor = value.type.tensor_type
        out[value.name] = len(tensor.shape.dim) if tensor.HasField("shape") else -1
    return out


def all_nodes(graph: onnx.GraphProto) -> Iterator[onnx.NodeProto]:
    """Every node of ``graph``, those of its subgraphs (If, Loop, Scan bodies) included."""
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.HasField("g"):
                yield from all_nodes(attr.g)
            for sub in attr.graphs:
                yield from all_nodes(sub)


def element_types(model: onnx.ModelProto) -> dict[str, str]:
    """``tensor(<type>)`` of every value whose element type onnx's shape inference finds, subgraphs included.

    Inferred on a copy whose weights are declared as inputs without their data, so a model past
    2 GiB costs no more than a small one.
    """
    import onnx

    light = onnx.ModelProto(ir_version=model.ir_version)
    light.opset_import.extend(model.opset_import)
    light.functions.extend(model.functions)
    for name in ("node", "input", "output", "value_info"):
        getattr(light.graph, name).extend(getattr(model.graph, name))
    declared = {v.name for v in model.graph.input}
    light.graph.input.extend(
        onnx.helper.make_tensor_value_info(w.name, w.data_type, list(w.dims))
        for w in model.graph.initializer
        if w.name not in declared
    )
    try:
        inferred = onnx.shape_inference.infer_shapes(light)
    except (onnx.shape_inference.InferenceError, ValueError):
        inferred = light  # the declared types only
    graphs = [inferred.graph]
    for node in all_nodes(inferred.graph):
        graphs += [a.g for a in node.attribute if a.HasField("g")] + [g for a in node.attribute for g in a.graphs]
    return {
        v.name: f"tensor({onnx.helper.tensor_dtype_to_string(v.type.tensor_type.elem_type)[12:].lower()})"
        for g in graphs
        for v in [*g.input, *g.value_info, *g.output]
        if v.type.HasField("tensor_type") and v.type.tensor_type.elem_type
    }


def rename_values(graph: onnx.GraphProto, mapping: Mapping[str, str]) -> None:
    """Rename values everywhere they appear in ``graph`` (subgraphs included)."""
    if not mapping:
        return
    for value in [*graph.input, *graph.output, *graph.value_info]:
        value.name = mapping.get(value.name, value.name)
    for init in graph.initializer:
        init.name = mapping.get(init.name, init.name)
    for node in graph.node:
        node.input[:] = [mapping.get(n, n) for n in node.input]
        node.output[:] = [mapping.get(n, n) for n in node.output]
        for attr in node.attribute:
            if attr.HasField("g"):
                rename_values(attr.g, mapping)
            for sub in attr.graphs:
                rename_values(sub, mapping)


def rename_dims(model: onnx.ModelProto, mapping: Mapping[str, str]) -> None:
    """Rename symbolic dimensions (``dim_param``) throughout the graph's value infos."""
    if not mapping:
        return
    graph = model.graph
    for value in [*graph.input, *graph.output, *graph.value_info]:
        if value.type.HasField("tensor_type"):
            for dim in value.type.tensor_type.shape.dim:
                if dim.HasField("dim_param") and dim.dim_param in mapping:
                    dim.dim_param = mapping[dim.dim_param]


def declare_axes(model: onnx.ModelProto, axes: DynamicAxes) -> list[str]:
    """Name each declared axis in the signature; return the axes found fixed instead.

    A symbolic or unknown dimension takes the declared name (an input's old symbol is
    renamed across the graph so inner shapes stay consistent). A fixed dimension is
    left alone and reported.
    """
    fixed: list[str] = []
    renames: dict[str, str] = {}
    values = {v.name: v for v in signature(model)}
    for name, dims in axes.items():
        shape = values[name].type.tensor_type.shape
        for axis, dim_name in dims.items():
            dim = shape.dim[axis]
            if dim.HasField("dim_value"):
                fixed.append(f"{name!r} axis {axis} ({dim_name!r}) came out fixed to {dim.dim_value}")
                continue
            if dim.dim_param and dim.dim_param != dim_name:
                renames.setdefault(dim.dim_param, dim_name)
    rename_dims(model, renames)
    for name, dims in axes.items():
        shape = values[name].type.tensor_type.shape
        for axis, dim_name in dims.items():
            if not shape.dim[axis].HasField("dim_value"):
                shape.dim[axis].dim_param = dim_name
    return fixed


def cache_inputs(model: onnx.ModelProto) -> set[str]:
    """The decoder's cache inputs (``past_key_values.*``); empty for a graph without a cache."""
    return {v.name for v in model.graph.input if v.name.startswith("past_key_values.")}


def shares_cache_buffers(model: onnx.ModelProto) -> bool:
    """Whether one buffer as long as the context may serve as a layer's past and present.

    Only ``GroupQueryAttention`` writes the present into the past's buffer; so every attention
    must be one, and nothing else may read the past (a graph that takes the past's length from
    its shape would see the buffer's). This is onnxruntime-genai's ``past_present_share_buffer``.
    """
    pasts = cache_inputs(model)
    nodes = list(all_nodes(model.graph))
    attention = sum(n.op_type == "GroupQueryAttention" for n in nodes)
    readers = [n for n in nodes if pasts.intersection(n.input)]
    return bool(pasts) and 2 * attention == len(pasts) and all(n.op_type == "GroupQueryAttention" for n in readers)
