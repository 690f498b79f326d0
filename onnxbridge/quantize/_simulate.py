"""Simulated dynamic int8, switchable per MatMul at run time: sensitivity in one session.

The float graph gets, for every chosen MatMul, its int8 error as a gated addition::

    x' = x + g * (DequantizeLinear(DynamicQuantizeLinear(x)) - x)    # uint8 per tensor, as onnxruntime
    W' = W + g * (fake_int8(W) - W)                                  # int8 per output channel

with ``g`` one element of a ``gates`` input. One session then answers "how far are the
outputs with exactly these MatMuls in int8?" for any subset, in one run per sample. This is
what onnxruntime's dynamic kernels compute, up to rounding, so it ranks nodes by their
effect on the model's outputs (which the local error of each product does not: errors
propagate through later layers), without quantizing the model once per node.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from onnxbridge.core._types import Feeds
from onnxbridge.quantize import _measure, _passes
from onnxbridge.quantize._types import OutputAccuracy

if TYPE_CHECKING:
    import onnx

GATES = "onnxbridge_int8_gates"


class Int8Simulator:
    """Runs ``model`` with any subset of ``nodes`` (MatMuls with constant 2-D weights) in simulated int8."""

    def __init__(self, model: onnx.ModelProto, samples: Sequence[Feeds], nodes: Sequence[str]) -> None:
        self.samples = list(samples)
        self.nodes, graph = _gated(model, nodes)
        self._session = _measure.session(graph)
        self.reference = self.outputs(())

    def outputs(self, quantized: Sequence[str]) -> list[dict[str, np.ndarray]]:
        """The model's outputs on every sample with the nodes in ``quantized`` in int8."""
        chosen = set(quantized)
        gates = np.array([1.0 if n in chosen else 0.0 for n in self.nodes], np.float32)
        runs = []
        for feeds in self.samples:
            inputs = {k: v for k, v in feeds.items() if k in self._session.input_names}
            runs.append(_measure.masked(self._session.run({**inputs, GATES: gates}), feeds))
        return runs

    def accuracy(self, quantized: Sequence[str]) -> list[OutputAccuracy]:
        """Accuracy against the float model with the nodes in ``quantized`` in int8."""
        return _measure.compare(self.reference, self.outputs(quantized))

    def ranked(self) -> list[tuple[float, str]]:
        """Every node with the worst cosine shortfall (else max error) it causes alone, worst first."""
        return sorted(((_measure.score(self.accuracy([n])), n) for n in self.nodes), reverse=True)


def _gated(model: onnx.ModelProto, nodes: Sequence[str]) -> tuple[list[str], onnx.ModelProto]:
    from onnx import TensorProto, helper, numpy_helper

    work = _passes.copy(model)
    initializers = {i.name: i for i in work.graph.initializer}
    wanted = set(nodes)
    targets = [
        n
        for n in work.graph.node
        if n.name in wanted
        and n.op_type == "MatMul"
        and n.input[1] in initializers
        and len(initializers[n.input[1]].dims) == 2
        and initializers[n.input[1]].data_type == TensorProto.FLOAT
    ]
    names = [n.name for n in targets]
    work.graph.input.append(helper.make_tensor_value_info(GATES, TensorProto.FLOAT, [len(names)]))
    before: dict[str, list[onnx.NodeProto]] = {}
    for index, node in enumerate(targets):
        p = f"onnxbridge_sim_{index}"
        weight = numpy_helper.to_array(initializers[node.input[1]]).astype(np.float32)
        scale = np.maximum(np.abs(weight).max(axis=0, keepdims=True), 1e-12) / 127.0  # as quantize_dynamic
        delta = (np.clip(np.rint(weight / scale), -127, 127) * scale - weight).astype(np.float32)
        work.graph.initializer.extend(
            [numpy_helper.from_array(delta, f"{p}_dw"), numpy_helper.from_array(np.array(index, np.int64), f"{p}_i")]
        )
        x, w = node.input[0], node.input[1]
        before[node.name] = [
            helper.make_node("Gather", [GATES, f"{p}_i"], [f"{p}_g"]),
            helper.make_node("DynamicQuantizeLinear", [x], [f"{p}_xq", f"{p}_xs", f"{p}_xz"]),
            helper.make_node("DequantizeLinear", [f"{p}_xq", f"{p}_xs", f"{p}_xz"], [f"{p}_xd"]),
            helper.make_node("Sub", [f"{p}_xd", x], [f"{p}_dx"]),
            helper.make_node("Mul", [f"{p}_dx", f"{p}_g"], [f"{p}_gdx"]),
            helper.make_node("Add", [x, f"{p}_gdx"], [f"{p}_x"]),
            helper.make_node("Mul", [f"{p}_dw", f"{p}_g"], [f"{p}_gdw"]),
            helper.make_node("Add", [w, f"{p}_gdw"], [f"{p}_w"]),
        ]
        node.input[0], node.input[1] = f"{p}_x", f"{p}_w"
    # The gating nodes read only the gates, initializers and the MatMul's own input, so right
    # before the MatMul is a valid place for them.
    rebuilt: list[onnx.NodeProto] = []
    for node in work.graph.node:
        rebuilt += before.get(node.name, []) if node.op_type == "MatMul" else []
        rebuilt.append(node)
    del work.graph.node[:]
    work.graph.node.extend(rebuilt)
    return names, work
