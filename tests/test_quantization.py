"""Quantization on real models and real data: size, accuracy, repair, and refusals."""

from __future__ import annotations

import numpy as np
import pytest

from tests.parity import assert_parity

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime.quantization")

import onnxbridge as ob  # noqa: E402
from tests import models  # noqa: E402


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = (data.images / 16.0).astype(np.float32)[:, None]
    return train_test_split(x, data.target, test_size=0.25, random_state=0, stratify=data.target)


def _fit(model, x, y, epochs: int, lr: float = 3e-3) -> None:
    models.fit(model, x, y, epochs=epochs, lr=lr)


@pytest.fixture(scope="module")
def cnn(digits):
    x_train, _, y_train, _ = digits
    torch.manual_seed(0)
    model = models.DigitsCNN()
    _fit(model, x_train, y_train, epochs=6)
    model.eval()
    return model, ob.export(model, torch.from_numpy(x_train[:1]), dynamic_axes="batch")


def _accuracy(art: ob.Artifact, x: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(art.session().run(x)["output"].argmax(axis=1) == y))


def test_static_int8_keeps_held_out_accuracy_within_one_point(cnn, digits):
    _, art = cnn
    x_train, x_test, _, y_test = digits
    q = art.quantize("static", calibration=x_train[:256], allow_slower=True)
    assert q.parent is art
    assert not q.quantization.kept_float
    assert q.quantization.size_ratio < 0.5
    assert q.quantization.nodes_left_float == []
    assert abs(_accuracy(q, x_test, y_test) - _accuracy(art, x_test, y_test)) <= 0.01
    assert {"QuantizeLinear", "DequantizeLinear"} <= {n.op_type for n in q.model.graph.node}


def test_qat_fine_tunes_a_copy_and_keeps_accuracy(cnn, digits):
    model, art = cnn
    x_train, x_test, y_train, y_test = digits
    seen = []

    def train(qmodel):
        seen.append(type(qmodel.features[0]).__module__)
        _fit(qmodel, x_train, y_train, epochs=1, lr=1e-3)

    q = art.quantize("qat", train=train)
    assert seen == ["torch.ao.nn.intrinsic.qat.modules.conv_fused"]  # a fused, fake-quantized copy
    assert q.quantization.settings["fused before training"][0] == ["features.0", "features.1", "features.2"]
    assert "BatchNormalization" not in {n.op_type for n in q.model.graph.node}  # folded after training
    assert not model.training  # the user's model is untouched
    assert type(model.features[0]).__module__ == "torch.nn.modules.conv"
    assert q.quantization.size_ratio < 0.5  # int8 weights stored, not float + QuantizeLinear
    assert _accuracy(q, x_test, y_test) >= _accuracy(art, x_test, y_test) - 0.01
    assert_parity(q.validate())


def test_artifact_with_qdq_from_training_elsewhere_needs_no_train(cnn, digits, tmp_path):
    _, art = cnn
    x_train, _, y_train, _ = digits
    trained = art.quantize("qat", train=lambda m: _fit(m, x_train[:256], y_train[:256], epochs=1, lr=1e-4))
    loaded = ob.load(trained.save(tmp_path / "qat.onnx"))
    again = loaded.quantize("qat")
    assert again.quantization.settings == {"source": "QDQ already in the graph"}


def test_static_default_is_never_a_silent_slow_down_at_any_batch_measured(cnn, digits):
    _, art = cnn
    q = art.quantize("static", calibration=digits[0][:256], batch_sizes=[32])
    report = q.quantization
    assert {1, 8, 32} <= set(report.latency_ratios)  # batch 1, 8 and the asked (and the measuring sample's)
    assert report.latency_ratio == report.latency_ratios[1]
    assert "at batch 8" in str(report)
    slower = [batch for batch, ratio in report.latency_ratios.items() if ratio > 1.10]
    assert report.kept_float == (len(slower) == len(report.latency_ratios))
    if report.kept_float:  # int8 measured slower at every batch: the float graph comes back, and the report says so
        assert q.model.graph == art.model.graph
        assert q.model is not art.model  # the child's own copy: saving it must not touch the parent
        assert report.size_ratio == 1.0
        assert any("FLOAT model is returned" in w for w in report.warnings)
    else:  # int8 kept: it is the quantized graph; slower at some batch is said, not silent
        assert "QuantizeLinear" in {n.op_type for n in q.model.graph.node}
        assert not any("FLOAT model is returned" in w for w in report.warnings)
        assert bool(slower) == any("slower than the float one on this CPU at batch" in w for w in report.warnings)


def test_batch_sizes_must_be_positive_integers(cnn):
    _, art = cnn
    for wrong in ([0], [2.5], ["8"]):
        with pytest.raises(ob.InputError, match="batch_sizes"):
            art.quantize("dynamic", batch_sizes=wrong)


def test_static_preprocessing_folds_batchnorm_into_conv():
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.normal(size=(4, 1, 3, 3)).astype(np.float32), "w"),
        *(numpy_helper.from_array(rng.uniform(0.5, 1.5, 4).astype(np.float32), n) for n in ("scale", "var")),
        *(numpy_helper.from_array(rng.normal(size=4).astype(np.float32), n) for n in ("bias", "mean")),
    ]
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
            helper.make_node("BatchNormalization", ["c", "scale", "bias", "mean", "var"], ["y"], name="bn"),
        ],
        "conv_bn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4, 8, 8])],
        inits,
    )
    art = ob.export(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    q = art.quantize("static", calibration=rng.random((32, 1, 8, 8), dtype=np.float32), allow_slower=True)
    ops = [n.op_type for n in q.model.graph.node]
    assert "BatchNormalization" not in ops
    assert "Conv" in ops
    assert q.quantization.min_cosine > 0.99


def test_dynamic_leaves_convolutions_in_float_by_default(cnn):
    _, art = cnn
    q = art.quantize("dynamic", allow_slower=True)
    left = q.quantization.nodes_left_float
    assert left
    assert all("(Conv)" in name for name in left)
    assert "ConvInteger" not in {n.op_type for n in q.model.graph.node}


def test_fp16_runs_on_cpu_and_validates_with_fp16_tolerances(cnn):
    _, art = cnn
    q = art.quantize("fp16")
    assert q.session().inputs[0].dtype == np.float32  # float32 inputs kept
    report = q.validate()
    assert report.ok
    assert (report.rtol, report.atol) == (1e-2, 1e-3)
    assert report.facts["tolerances"] == "fp16 defaults"


def test_quantized_artifact_saves_its_lineage(cnn, tmp_path):
    import json

    import onnx

    _, art = cnn
    path = art.quantize("fp16").save(tmp_path / "fp16.onnx")
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    lineage = json.loads(meta["onnxbridge.quantization"])
    assert lineage["mode"] == "fp16"
    assert lineage["size_after"] < lineage["size_before"]


VOCAB = 1100  # 1100 x 64 token embeddings: large enough to count as an embedding table


@pytest.fixture(scope="module")
def bert():
    """A random BERT exported with dynamic batch AND sequence axes, and calibration of mixed lengths."""
    pytest.importorskip("transformers")
    rng = np.random.default_rng(0)
    sample = {k: torch.from_numpy(v) for k, v in models.bert_inputs(rng, 2, 12, VOCAB).items()}
    art = ob.export(models.bert(vocab=VOCAB), sample, {name: {0: "batch", 1: "seq"} for name in sample})
    calibration = [models.bert_inputs(rng, 1 + i % 3, 5 + 7 * i, VOCAB) for i in range(6)]
    return art, calibration


@pytest.mark.parametrize("mode", ["dynamic", "static", "fp16", "weight-only"])
def test_transformer_with_dynamic_batch_and_sequence_quantizes_in_every_mode(bert, mode):
    art, calibration = bert
    assert {d for axes in art.dynamic_axes.values() for d in axes.values()} >= {"batch", "seq"}
    q = art.quantize(mode, calibration=calibration, allow_slower=True)
    report = q.quantization
    assert len(report.accuracy) == len(art.output_names)
    assert report.min_cosine is not None
    assert report.min_cosine > 0.9
    for length in (3, 17, 30):  # the quantized graph still takes any sequence length
        feeds = models.bert_inputs(np.random.default_rng(length), 2, length, VOCAB)
        assert q.session().run(feeds)["last_hidden_state"].shape == (2, length, 64)


def test_dynamic_measures_the_export_sample_variants_of_different_lengths(bert):
    art, _ = bert  # no calibration: the sample and its batch/seq variants (different shapes) are compared
    q = art.quantize("dynamic", allow_slower=True)
    assert all(a.min_cosine is not None and a.min_cosine <= a.cosine for a in q.quantization.accuracy)


def test_dynamic_default_for_transformers_stores_int8_embeddings_and_protects_sensitive_matmuls(bert):
    from onnxbridge.quantize._dynamic import DynamicInt8

    art, calibration = bert
    q = art.quantize("dynamic", calibration=calibration, allow_slower=True)
    report = q.quantization
    assert report.settings["embeddings"] == "int8 per-row"
    protected = report.settings.get("sensitive MatMuls kept float", [])  # none needed for random weights
    assert len(protected) <= len(DynamicInt8().candidates(art.model)) // 3 + 1
    assert all(f"{name} (MatMul)" in report.nodes_left_float for name in protected)
    tables = {i.name: i for i in q.model.graph.initializer}
    assert any(name.endswith("_int8") and len(t.dims) == 2 and t.dims[0] == VOCAB for name, t in tables.items())
    assert report.size_ratio <= 0.35
    assert report.min_cosine >= 0.99


def test_nodes_the_user_excludes_stay_float_under_the_transformer_default(bert):
    from onnxbridge.quantize._dynamic import DynamicInt8

    art, calibration = bert
    name = DynamicInt8().candidates(art.model)[0]
    q = art.quantize("dynamic", calibration=calibration, exclude=[name], allow_slower=True)
    assert q.quantization.settings["exclude"] == [name]
    assert f"{name} (MatMul)" in q.quantization.nodes_left_float
    assert name not in q.quantization.settings.get("sensitive MatMuls kept float", [])


def test_tolerance_missed_by_plain_result_is_repaired_by_leaving_nodes_out(bert):
    art, calibration = bert
    plain = art.quantize("dynamic", calibration=calibration, per_channel=False, allow_slower=True).quantization
    worst = plain.min_cosine
    assert worst < 1.0
    target = worst + (1.0 - worst) / 2  # stricter than what the plain result reaches
    repaired = art.quantize(
        "dynamic", calibration=calibration, per_channel=False, tolerance={"cosine": target}, allow_slower=True
    ).quantization
    assert repaired.passed is True
    assert repaired.attempts  # it had to leave nodes out
    assert repaired.min_cosine >= target


def test_optimize_fuses_transformer_attention_and_stays_within_1e_4(bert):
    pytest.importorskip("onnxscript")
    art, calibration = bert
    opt = art.optimize(samples=calibration)
    report = opt.optimization
    assert opt.parent is art
    assert report.fused.get("Attention", 0) + report.fused.get("MultiHeadAttention", 0) == 2  # one per layer
    assert report.fused.get("SkipLayerNormalization", 0) >= 2
    assert report.onnxruntime_only is True
    assert report.max_abs_error <= 1e-4
    assert report.ops_after < report.ops_before
    assert opt.session(providers=["cpu"]).providers == ("CPUExecutionProvider",)
    assert_parity(opt.validate(atol=1e-4))


def test_basic_optimization_keeps_standard_operators(cnn):
    opt = cnn[1].optimize("basic")
    assert opt.optimization.onnxruntime_only is False
    assert {n.domain for n in opt.model.graph.node} <= {"", "ai.onnx"}
    assert opt.optimization.max_abs_error <= 1e-5


def test_unknown_optimization_level_is_refused(cnn):
    with pytest.raises(ob.InputError, match=r"'basic'.*'extended'"):
        cnn[1].optimize("O3")


def test_auto_returns_a_candidate_that_meets_the_tolerance_with_the_table(bert):
    art, calibration = bert
    q = art.quantize("auto", calibration=calibration, tolerance={"cosine": 0.99}, objective="size")
    report = q.quantization
    assert report.passed is True
    assert report.chosen in {c.name for c in report.candidates}
    chosen = next(c for c in report.candidates if c.name == report.chosen)
    assert chosen.meets
    assert chosen.min_cosine >= 0.99
    sizes = [c.size_ratio for c in report.candidates if c.meets]
    assert chosen.size_ratio == min(sizes)
    assert len(report.candidates) >= 6
    assert report.chosen in str(report)


def test_auto_refuses_an_impossible_tolerance_with_the_candidate_table(bert):
    art, calibration = bert
    with pytest.raises(ob.QuantizationError, match="no recipe that meets") as info:
        art.quantize("auto", calibration=calibration[:2], tolerance={"cosine": 1.0})
    table = info.value.report.candidates
    assert len(table) >= 6
    assert not any(c.meets for c in table)
    assert "dynamic int8 per-channel" in str(info.value)


def test_impossible_tolerance_raises_quantization_error_with_what_was_tried(cnn, digits):
    _, art = cnn
    with pytest.raises(ob.QuantizationError) as info:
        art.quantize("static", calibration=digits[0][:32], tolerance={"max_abs": 0.0}, allow_slower=True)
    assert "could not meet tolerance" in str(info.value)
    assert info.value.report.attempts


# -- bad input --------------------------------------------------------------------------------
def test_unknown_mode_is_refused(cnn):
    with pytest.raises(ob.InputError, match=r"Unknown quantization mode 'int3'"):
        cnn[1].quantize("int3")


def test_mode_takes_the_public_enum(cnn):
    q = cnn[1].quantize(ob.QuantizationMode.FP16)
    assert q.quantization.mode is ob.QuantizationMode.FP16


def test_reference_is_public_and_read_only(cnn):
    ref = cnn[1].reference
    assert isinstance(ref, ob.Reference)
    assert ref.run is not None
    with pytest.raises(ValueError, match="read-only"):
        ref.sample["input"][...] = 0
    with pytest.raises(TypeError):
        ref.sample["input"] = np.zeros(1)


def test_unknown_tolerance_key_is_refused(cnn):
    with pytest.raises(ob.InputError, match="tolerance keys"):
        cnn[1].quantize("dynamic", tolerance={"accuracy": 0.9})


def test_calibration_samples_of_the_wrong_structure_are_refused(cnn):
    with pytest.raises(ob.InputError, match="calibration"):
        cnn[1].quantize("static", calibration=[{"pixels": np.zeros((1, 1, 8, 8), np.float32)}])
    with pytest.raises(ob.InputError, match="needs calibration"):
        cnn[1].quantize("static")


def test_calibration_of_the_wrong_rank_names_the_input_and_the_expected_shape(cnn):
    with pytest.raises(ob.InputError, match=r"calibration\[0\]\['input'\] has rank 2.*rank 4 \(\[batch, 1, 8, 8\]\)"):
        cnn[1].quantize("static", calibration=[np.zeros((1, 64), np.float32)])


def test_calibration_with_a_wrong_fixed_size_or_dtype_is_refused(cnn, bert):
    with pytest.raises(ob.InputError, match=r"size 7 on axis 2.*fixed to 8"):
        cnn[1].quantize("static", calibration=np.zeros((4, 1, 7, 8), np.float32))
    art, _ = bert
    ids = {"input_ids": np.zeros((1, 5), np.float32), "attention_mask": np.ones((1, 5), np.int64)}
    with pytest.raises(ob.InputError, match=r"'input_ids'.*dtype float32.*takes int64"):
        art.quantize("dynamic", calibration=[ids])
    with pytest.raises(ob.InputError, match="iterable of samples"):
        art.quantize("dynamic", calibration={"input_ids": np.zeros((1, 5), np.int64)})


def test_qat_without_train_on_a_float_model_is_refused(cnn):
    with pytest.raises(ob.InputError, match="needs train=callable"):
        cnn[1].quantize("qat")


def test_qat_on_a_tensorflow_artifact_suggests_static():
    pytest.importorskip("tensorflow")
    keras = pytest.importorskip("keras")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    art = ob.export(model, np.ones((2, 4), np.float32))
    with pytest.raises(ob.InputError, match=r"trains PyTorch models.*static"):
        art.quantize("qat", train=lambda m: None)


def test_accuracy_is_measured_where_the_attention_mask_holds_tokens():
    from onnxbridge.quantize import _measure

    mask = np.array([[1, 1, 0], [1, 0, 0]])
    hidden = np.arange(24, dtype=np.float32).reshape(2, 3, 4) + 1
    masked = _measure.masked({"last_hidden_state": hidden, "pooled": hidden[:, 0]}, {"attention_mask": mask})
    assert (masked["last_hidden_state"][mask == 0] == 0).all()
    assert (masked["last_hidden_state"][mask == 1] == hidden[mask == 1]).all()
    assert (masked["pooled"] == hidden[:, 0]).all()  # not [batch, sequence, ...]: left as it is
    noisy = hidden.copy()
    noisy[0, 2] += 100.0  # int8 error at a padded position: not the user's
    ref, got = (_measure.masked({"h": h}, {"attention_mask": mask}) for h in (hidden, noisy))
    assert _measure.compare([ref], [got])[0].max_abs_error == 0.0
