"""Units without a framework: the column plan of Ray/Spark scoring, and QDQ weight folding."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxbridge as ob
from onnxbridge.quantize._passes import fold_weight_quantization
from onnxbridge.running import _batch

pytestmark = pytest.mark.core


def _two_input_artifact() -> ob.Artifact:
    """features [batch, 3] float32 and ids [batch] int64 -> score [batch, 1], ids_out [batch]."""
    graph = helper.make_graph(
        [
            helper.make_node("ReduceSum", ["features"], ["score"], keepdims=1, axes=[1]),
            helper.make_node("Identity", ["ids"], ["ids_out"]),
        ],
        "g",
        [
            helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", 3]),
            helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch"]),
        ],
        [
            helper.make_tensor_value_info("score", TensorProto.FLOAT, ["batch", 1]),
            helper.make_tensor_value_info("ids_out", TensorProto.INT64, ["batch"]),
        ],
    )
    return ob.export(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 12)], ir_version=8))


def test_scalar_columns_stack_into_a_tabular_input_and_outputs_become_columns():
    art = _two_input_artifact()
    plan = _batch.plan(art.model, ["a", "b", "c", "ids"], {"features": ["a", "b", "c"]}, {"score": "prediction"})
    assert plan.columns == ["a", "b", "c", "ids"]
    batch = {"a": np.arange(4.0), "b": np.ones(4), "c": np.zeros(4, np.int32), "ids": np.arange(4)}
    feeds = _batch.feeds(plan, batch)
    assert feeds["features"].dtype == np.float32
    assert feeds["features"].shape == (4, 3)
    out = _batch.columns(plan, art.session().run(feeds))
    np.testing.assert_array_equal(out["prediction"], np.arange(4.0) + 1)  # [batch, 1] becomes one value per row
    np.testing.assert_array_equal(out["ids_out"], np.arange(4))


@pytest.mark.parametrize(
    ("available", "inputs", "outputs", "message"),
    [
        (["a", "ids"], {"features": ["a", "x", "y"]}, None, r"\['x', 'y'\] for model input 'features'"),
        (["a", "b", "ids"], {"features": ["a", "b"]}, None, r"2 columns were given for input 'features'"),
        (["a", "b", "c", "ids"], {"nope": "a"}, None, r"not model inputs"),
        (["a", "b", "c", "ids", "score"], {"features": ["a", "b", "c"]}, None, r"\['score'\] already exist"),
        (["a", "b", "c", "ids"], ["a", "b", "c"], None, r"single-input models"),
    ],
)
def test_a_plan_that_cannot_work_says_why(available, inputs, outputs, message):
    with pytest.raises(ob.InputError, match=message):
        _batch.plan(_two_input_artifact().model, available, inputs, outputs)


def test_a_text_column_for_a_numeric_input_is_refused():
    plan = _batch.plan(_two_input_artifact().model, ["f", "ids"], {"features": "f"}, None)
    with pytest.raises(ob.InputError, match="has dtype"):
        _batch.feeds(plan, {"f": np.array(["x", "y"]), "ids": np.arange(2)})


@pytest.mark.parametrize("per_channel", [False, True])
def test_qdq_weight_folding_stores_int8_weights_and_computes_the_same(per_channel):
    rng = np.random.default_rng(0)
    weight = rng.normal(size=(4, 5)).astype(np.float32)
    scale = (np.abs(weight).max(axis=0) / 127 if per_channel else np.float32(np.abs(weight).max() / 127)).astype(
        np.float32
    )
    zero = np.zeros_like(scale, dtype=np.int8)
    graph = helper.make_graph(
        [
            helper.make_node("QuantizeLinear", ["w", "s", "z"], ["wq"], axis=1),
            helper.make_node("DequantizeLinear", ["wq", "s", "z"], ["wd"], axis=1),
            helper.make_node("MatMul", ["x", "wd"], ["y"]),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 5])],
        [numpy_helper.from_array(a, n) for a, n in ((weight, "w"), (scale, "s"), (zero, "z"))],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    x = rng.normal(size=(3, 4)).astype(np.float32)
    before = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]

    assert fold_weight_quantization(model) == 1
    assert [n.op_type for n in model.graph.node] == ["DequantizeLinear", "MatMul"]
    stored = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    assert "w" not in stored
    assert any(a.dtype == np.int8 and a.shape == (4, 5) for a in stored.values())
    after = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    np.testing.assert_array_equal(after, before)
