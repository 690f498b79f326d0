"""A tiny framework made of numpy, and its adapter: framework-free tests of everything after export.

It is what a third party registers with :func:`onnxbridge.register_adapter`: models are plain
Python objects computing in float64 numpy; the adapter writes the same computation as an
ONNX graph with ``onnx.helper``. Validation, sessions, files and the command line can then be
tested with onnx and onnxruntime alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from onnx import TensorProto, helper, numpy_helper

import onnxbridge as ob
from onnxbridge.core._axes import normalize_dynamic_axes
from onnxbridge.exporting._adapter import check_options
from onnxbridge.graph._graph import rename_values


@dataclass
class NumpyMLP:
    """``relu(x @ w1 + b1) @ w2 + b2``; ``bake_batch`` writes the sample's batch size into the graph
    as a constant factor, as a tracing exporter that reads ``x.shape[0]`` as a number would."""

    inputs: int = 8
    hidden: int = 16
    outputs: int = 3
    seed: int = 0
    bake_batch: bool = False
    weights: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        rng = np.random.default_rng(self.seed)
        self.weights = {
            "w1": rng.normal(size=(self.inputs, self.hidden)) / np.sqrt(self.inputs),
            "b1": rng.normal(size=self.hidden) * 0.1,
            "w2": rng.normal(size=(self.hidden, self.outputs)) / np.sqrt(self.hidden),
            "b2": rng.normal(size=self.outputs) * 0.1,
        }

    def __call__(self, x: np.ndarray) -> np.ndarray:
        w = self.weights
        y = np.maximum(np.asarray(x, np.float64) @ w["w1"] + w["b1"], 0) @ w["w2"] + w["b2"]
        return y * len(x) if self.bake_batch else y


class NumpyAdapter:
    """The adapter for :class:`NumpyMLP`: one input ``input``, one output ``output``."""

    framework = "numpy_mlp"
    module_roots = ("tests",)

    def accepts(self, model: object) -> bool:
        return isinstance(model, NumpyMLP)

    def export(self, model: NumpyMLP, request: ob.ExportRequest) -> ob.Exported:
        check_options(request.options, (), self.framework)
        sample = np.asarray(request.sample, np.float32)
        axes = normalize_dynamic_axes(request.dynamic_axes, {"input": 2}, {"output": 2})
        batch = axes.get("input", {}).get(0, len(sample))
        inits = [numpy_helper.from_array(v.astype(np.float32), k) for k, v in model.weights.items()]
        nodes = [
            helper.make_node("MatMul", ["input", "w1"], ["h0"]),
            helper.make_node("Add", ["h0", "b1"], ["h1"]),
            helper.make_node("Relu", ["h1"], ["h2"]),
            helper.make_node("MatMul", ["h2", "w2"], ["h3"]),
            helper.make_node("Add", ["h3", "b2"], ["output" if not model.bake_batch else "h4"]),
        ]
        if model.bake_batch:
            inits.append(numpy_helper.from_array(np.array(len(sample), np.float32), "baked"))
            nodes.append(helper.make_node("Mul", ["h4", "baked"], ["output"]))
        graph = helper.make_graph(
            nodes,
            "numpy_mlp",
            [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, model.inputs])],
            [helper.make_tensor_value_info("output", TensorProto.FLOAT, [batch, model.outputs])],
            inits,
        )
        proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
        names = {"input": (request.input_names or ["input"])[0], "output": (request.output_names or ["output"])[0]}
        rename_values(proto.graph, names)
        axes = {names[k]: v for k, v in axes.items() if k in names}
        return ob.Exported(
            model=proto,
            framework=self.framework,
            framework_version=np.__version__,
            exporter="onnx.helper",
            dynamic_axes=axes,
            sample={names["input"]: sample},
            reference=lambda feeds: {names["output"]: model(feeds[names["input"]])},
        )
