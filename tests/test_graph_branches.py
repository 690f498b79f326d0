"""Two graphs joined by an ``If`` on the past's length: the prompt's graph on an empty past, the step's after."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from onnxbridge.graph._branches import first_step_branch

ort = pytest.importorskip("onnxruntime")

pytestmark = pytest.mark.core

WEIGHT = np.arange(12, dtype=np.float32).reshape(3, 4)


def _graph(nodes: list, inputs: list[str], constant: float) -> onnx.ModelProto:
    """y = x @ W + c (+ the past's sum for the step graph); W is the weight both graphs hold."""
    values = {
        "x": helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3]),
        "past": helper.make_tensor_value_info("past", TensorProto.FLOAT, ["batch", "past_length"]),
    }
    graph = helper.make_graph(
        nodes,
        "g",
        [values[name] for name in inputs],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        initializer=[
            numpy_helper.from_array(WEIGHT, "weight"),
            numpy_helper.from_array(np.array(constant, dtype=np.float32), "val_0"),  # same name, other bytes
        ],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)


def _joined() -> onnx.ModelProto:
    step = _graph(
        [
            helper.make_node("MatMul", ["x", "weight"], ["h"]),
            helper.make_node("ReduceSum", ["past"], ["s"], keepdims=1),
            helper.make_node("Add", ["h", "s"], ["h2"]),
            helper.make_node("Add", ["h2", "val_0"], ["y"]),
        ],
        ["x", "past"],
        1.0,
    )
    first = _graph(
        [helper.make_node("MatMul", ["x", "weight"], ["h"]), helper.make_node("Add", ["h", "val_0"], ["y"])],
        ["x"],
        100.0,
    )
    return first_step_branch(step, first, "past", 1)


def test_the_joined_model_checks_and_keeps_shared_weights_once():
    model = _joined()
    onnx.checker.check_model(model, full_check=True)
    weights = [t for t in model.graph.initializer if t.name == "weight"]
    assert len(weights) == 1  # in the outer graph, read by both branches
    branch = next(node for node in model.graph.node if node.op_type == "If")
    for attribute in branch.attribute:
        assert "weight" not in {t.name for t in attribute.g.initializer}
        assert [t.name.split(".")[-1] for t in attribute.g.initializer] == ["val_0"]  # its own constant, renamed


@settings(max_examples=25, deadline=None)
@given(batch=st.integers(1, 4), past=st.integers(0, 5), seed=st.integers(0, 2**16))
def test_the_prompt_graph_runs_on_an_empty_past_and_the_step_graph_after(batch, past, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, 3)).astype(np.float32)
    cache = rng.standard_normal((batch, past)).astype(np.float32)
    session = ort.InferenceSession(_joined().SerializeToString(), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"x": x, "past": cache})
    want = x @ WEIGHT + (100.0 if past == 0 else 1.0 + cache.sum())  # ReduceSum without axes: every element
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)
