"""Quantization pieces that need only onnx and onnxruntime: calibration checks and graph transforms."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnxruntime.quantization")
hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import onnxbridge as ob  # noqa: E402
from onnxbridge.quantize import _data, _passes  # noqa: E402


def _embedding_model(rows: int = 300, dim: int = 256, tied: bool = False):
    """ids [batch, seq] -> Gather(table) -> Add(1); ``tied`` also reads the table in a MatMul (an LM head)."""
    table = np.random.default_rng(0).normal(size=(rows, dim)).astype(np.float32)
    nodes = [
        helper.make_node("Gather", ["table", "ids"], ["emb"], name="embed"),
        helper.make_node("Add", ["emb", "one"], ["y"], name="add"),
    ]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "seq", dim])]
    if tied:
        nodes.append(helper.make_node("MatMul", ["y", "table_t"], ["logits"], name="head"))
        nodes.append(helper.make_node("Transpose", ["table"], ["table_t"], name="t"))
        outputs.append(helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", "seq", rows]))
    graph = helper.make_graph(
        nodes,
        "embedding",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "seq"])],
        outputs,
        [numpy_helper.from_array(table, "table"), numpy_helper.from_array(np.float32([1.0]), "one")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), table


def test_int8_embeddings_are_a_quarter_of_the_size_within_half_a_step_per_row():
    model, table = _embedding_model()
    art = ob.export(model)
    quantized = _passes.copy(art.model)
    assert _passes.quantize_embeddings(quantized) == ["table"]
    assert quantized.ByteSize() < 0.3 * art.model.ByteSize()
    assert {n.domain for n in quantized.graph.node} <= {""}  # standard operators only
    ids = np.array([[0, 5, 299], [7, 7, 1]], np.int64)
    got = ob.export(quantized).session().run({"ids": ids})["y"]
    want = table[ids] + 1.0
    step = np.abs(table).max(axis=1) / 127.0
    assert np.all(np.abs(got - want) <= step[ids][..., None] / 2 + 1e-6)
    assert np.abs(got - want).max() > 0  # it really is quantized


def test_tied_embedding_tables_are_left_in_float():
    model, _ = _embedding_model(tied=True)
    assert _passes.quantize_embeddings(model) == []


def test_small_tables_are_left_in_float():
    model, _ = _embedding_model(rows=10, dim=8)
    assert _passes.quantize_embeddings(model) == []


@pytest.fixture(scope="module")
def ids_model():
    return _embedding_model()[0]


_dtypes = st.sampled_from([np.int64, np.int32, np.uint8, np.float32, np.float64, np.bool_, np.complex64])


@settings(max_examples=150, deadline=None)
@given(
    shape=st.lists(st.integers(0, 4), min_size=0, max_size=4),
    dtype=_dtypes,
    name=st.sampled_from(["ids", "IDS", "x"]),
)
def test_calibration_input_is_accepted_cast_or_refused_with_input_error(ids_model, shape, dtype, name):
    value = np.zeros(shape, dtype=dtype)
    refused = None
    try:
        feeds = _data.check_feeds(ids_model, {name: value}, "calibration[0]")
    except ob.InputError as err:  # any other exception fails the test
        refused = str(err)
    if refused is not None:
        assert "calibration[0]" in refused
        return
    assert name == "ids"
    assert len(shape) == 2
    assert feeds["ids"].dtype == np.int64
    assert np.dtype(dtype).kind in "iub"


def test_calibration_that_is_not_an_iterable_of_samples_is_refused(ids_model):
    reference = ob.export(ids_model).reference
    for bad in (3, "ids", {"ids": np.zeros((1, 2), np.int64)}):
        with pytest.raises(ob.InputError, match="calibration must be an iterable"):
            _data.samples(ids_model, reference, bad)
    with pytest.raises(ob.InputError, match="calibration is empty"):
        _data.samples(ids_model, reference, [])
    with pytest.raises(ob.InputError, match="0 rows"):
        _data.samples(ids_model, reference, np.zeros((0, 3), np.int64))


def _trained_like(rng, shape):
    """Small weights with one large one per output column, as trained weights look.

    Weights that fill the whole int8 range (e.g. plain N(0, 1)) make onnxruntime's U8S8 kernel
    saturate on CPUs without VNNI (pairs of products overflow int16), which no simulation models.
    """
    weights = rng.normal(scale=0.1, size=shape)
    weights[rng.integers(0, shape[0], shape[1]), np.arange(shape[1])] = 1.0
    return weights.astype(np.float32)


def _matmul_model():
    rng = np.random.default_rng(1)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w1"], ["h"], name="first"),
            helper.make_node("Relu", ["h"], ["r"], name="relu"),
            helper.make_node("MatMul", ["r", "w2"], ["y"], name="second"),
        ],
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 16])],
        [
            numpy_helper.from_array(_trained_like(rng, (32, 64)), "w1"),
            numpy_helper.from_array(_trained_like(rng, (64, 16)), "w2"),
        ],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_int8_simulator_is_exact_with_gates_off_and_tracks_onnxruntime_with_gates_on(tmp_path):
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from onnxbridge.quantize import _measure
    from onnxbridge.quantize._simulate import Int8Simulator

    model = _matmul_model()
    samples = [{"x": np.random.default_rng(i).normal(size=(4, 32)).astype(np.float32)} for i in range(3)]
    sim = Int8Simulator(model, samples, ["first", "second"])
    assert sim.nodes == ["first", "second"]
    floats = _measure.run_all(model, samples)
    for got, want in zip(sim.reference, floats, strict=True):
        np.testing.assert_array_equal(got["y"], want["y"])
    onnx.save(model, str(tmp_path / "f.onnx"))
    quantize_dynamic(str(tmp_path / "f.onnx"), str(tmp_path / "q.onnx"), per_channel=True, weight_type=QuantType.QInt8)
    real = _measure.run_all(onnx.load(str(tmp_path / "q.onnx")), samples)
    simulated = sim.outputs(["first", "second"])
    rms = lambda a, b: float(np.sqrt(np.mean(np.square(a - b))))  # noqa: E731
    for s, r, f in zip(simulated, real, floats, strict=True):
        real_error, simulated_error = rms(r["y"], f["y"]), rms(s["y"], f["y"])
        assert real_error > 0  # int8 changes the outputs ...
        assert 0.5 < simulated_error / real_error < 2.0  # ... and the simulation changes them as much
    only_first = _measure.compare(sim.reference, sim.outputs(["first"]))[0].max_abs_error
    assert 0 < only_first < _measure.compare(sim.reference, simulated)[0].max_abs_error * 2
    assert sim.ranked()[0][0] > 0


def _custom_op_model():
    """A MatMul followed by an operator of a domain onnxruntime does not know."""
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
            helper.make_node("Mystery", ["h"], ["y"], name="custom", domain="example.custom"),
        ],
        "custom",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        [numpy_helper.from_array(np.eye(4, dtype=np.float32), "w")],
    )
    return helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("example.custom", 1)]
    )


def test_a_tool_failing_inside_quantize_is_an_onnxbridge_error():
    art = ob.export(_custom_op_model())
    with pytest.raises(ob.OnnxBridgeError) as info:
        art.quantize("dynamic", calibration=np.ones((2, 4), np.float32))
    assert "Mystery" in str(info.value) or "example.custom" in str(info.value)


def test_protection_keeps_the_matmul_whose_input_has_an_outlier_channel_in_float():
    from onnxbridge.quantize import _run
    from onnxbridge.quantize._simulate import Int8Simulator

    model = _matmul_model()
    w1 = next(i for i in model.graph.initializer if i.name == "w1")
    weights = numpy_helper.to_array(w1).copy()
    weights[0] = 0.0  # the outlier channel does not reach the second MatMul
    w1.CopyFrom(numpy_helper.from_array(weights, "w1"))
    rng = np.random.default_rng(0)
    samples = []
    for _ in range(3):
        x = rng.normal(size=(4, 32)).astype(np.float32)
        x[:, 0] = 500.0  # per-tensor int8 of this input rounds every other channel to zero
        samples.append({"x": x})
    sim = Int8Simulator(model, samples, ["first", "second"])
    assert [name for _, name in sim.ranked()] == ["first", "second"]
    assert _run._protect(sim) == ["first"]
    art = ob.export(model)
    q = art.quantize("dynamic", calibration=samples, allow_slower=True)
    assert q.quantization.settings["op_types"] == ["MatMul", "Attention", "LSTM"]
    assert "first (MatMul)" not in q.quantization.nodes_left_float  # not a transformer: no automatic protection


def test_optimizing_a_model_onnxruntime_cannot_load_is_an_inference_error():
    with pytest.raises(ob.InferenceError, match="could not load the model to optimize it"):
        ob.export(_custom_op_model()).optimize("basic")


def test_weight_only_quantization_leaves_the_user_s_logging_as_it_was():
    import subprocess
    import sys

    # onnxruntime's MatMulNBits module calls logging.basicConfig(level=INFO) when imported
    code = (
        "import logging, numpy as np\n"
        "from onnx import helper, TensorProto, numpy_helper\n"
        "from onnxbridge.quantize._weight_only import matmul_nbits\n"
        "x = helper.make_tensor_value_info('x', TensorProto.FLOAT, ['n', 64])\n"
        "z = helper.make_tensor_value_info('z', TensorProto.FLOAT, ['n', 64])\n"
        "w = numpy_helper.from_array(np.ones((64, 64), np.float32), 'w')\n"
        "g = helper.make_graph([helper.make_node('MatMul', ['x', 'w'], ['z'], name='p')], 'g', [x], [z], [w])\n"
        "matmul_nbits(helper.make_model(g, opset_imports=[helper.make_opsetid('', 17)]), bits=4, block_size=32)\n"
        "root = logging.getLogger()\n"
        "print(len(root.handlers), root.level)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["0", str(30)]  # no handler added, WARNING as Python starts it
