"""Quantization on real models and real data: size, accuracy, repair, and refusals."""

from __future__ import annotations

import numpy as np
import pytest

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
    q = art.quantize("static", calibration=x_train[:256])
    assert q.parent is art
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
    assert seen == ["torch.ao.nn.qat.modules.conv"]  # fake-quantized copy handed to the caller
    assert not model.training  # the user's model is untouched
    assert type(model.features[0]).__module__ == "torch.nn.modules.conv"
    assert q.quantization.size_ratio < 0.5  # int8 weights stored, not float + QuantizeLinear
    assert _accuracy(q, x_test, y_test) >= _accuracy(art, x_test, y_test) - 0.01
    assert q.validate().ok


def test_artifact_with_qdq_from_training_elsewhere_needs_no_train(cnn, digits, tmp_path):
    _, art = cnn
    x_train, _, y_train, _ = digits
    trained = art.quantize("qat", train=lambda m: _fit(m, x_train[:256], y_train[:256], epochs=1, lr=1e-4))
    loaded = ob.load(trained.save(tmp_path / "qat.onnx"))
    again = loaded.quantize("qat")
    assert again.quantization.settings == {"source": "QDQ already in the graph"}


def test_dynamic_leaves_convolutions_in_float_by_default(cnn):
    _, art = cnn
    q = art.quantize("dynamic")
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


@pytest.fixture(scope="module")
def bert():
    pytest.importorskip("transformers")
    rng = np.random.default_rng(0)
    sample = {k: torch.from_numpy(v) for k, v in models.bert_inputs(rng, 2, 12).items()}
    art = ob.export(models.bert(), sample, {name: {0: "batch", 1: "seq"} for name in sample})
    return art, [models.bert_inputs(rng, 4, 16) for _ in range(6)]


def test_dynamic_int8_transformer_keeps_cosine_and_shrinks(bert, tmp_path, monkeypatch):
    art, calibration = bert
    monkeypatch.chdir(tmp_path)
    q = art.quantize("dynamic", calibration=calibration)
    # onnxruntime's shape inference drops debug files into the working directory when it gives up
    assert list(tmp_path.iterdir()) == []
    report = q.quantization
    assert report.size_ratio <= 0.35
    assert all(a.cosine >= 0.99 for a in report.accuracy)
    assert report.settings["per_channel"] is True


def test_tolerance_missed_by_plain_result_is_repaired_by_leaving_nodes_in_float(bert):
    art, calibration = bert
    plain = art.quantize("dynamic", calibration=calibration).quantization
    worst = min(a.cosine for a in plain.accuracy)
    assert worst < 1.0
    target = worst + (1.0 - worst) / 2  # stricter than what the plain result reaches
    repaired = art.quantize("dynamic", calibration=calibration, tolerance={"cosine": target}).quantization
    assert repaired.passed is True
    assert repaired.attempts  # it had to leave nodes in float
    assert len(repaired.nodes_left_float) > len(plain.nodes_left_float)
    assert all(a.cosine >= target for a in repaired.accuracy)


def test_impossible_tolerance_raises_quantization_error_with_what_was_tried(cnn, digits):
    _, art = cnn
    with pytest.raises(ob.QuantizationError) as info:
        art.quantize("static", calibration=digits[0][:32], tolerance={"max_abs": 0.0})
    assert "could not meet tolerance" in str(info.value)
    assert info.value.report.attempts


# -- bad input --------------------------------------------------------------------------------
def test_unknown_mode_is_refused(cnn):
    with pytest.raises(ob.InputError, match=r"Unknown quantization mode 'int4'"):
        cnn[1].quantize("int4")


def test_unknown_tolerance_key_is_refused(cnn):
    with pytest.raises(ob.InputError, match="tolerance keys"):
        cnn[1].quantize("dynamic", tolerance={"accuracy": 0.9})


def test_calibration_samples_of_the_wrong_structure_are_refused(cnn):
    with pytest.raises(ob.InputError, match="calibration"):
        cnn[1].quantize("static", calibration=[{"pixels": np.zeros((1, 1, 8, 8), np.float32)}])
    with pytest.raises(ob.InputError, match="needs calibration"):
        cnn[1].quantize("static")


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
