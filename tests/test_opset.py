"""Converting an artifact to another opset: validated against its source, refused with the opset it needs."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import onnxbridge as ob
from onnxbridge.graph import _metadata
from tests.onnx_models import unary
from tests.parity import assert_parity

torch = pytest.importorskip("torch")

from tests.models import DigitsCNN, transformer_encoder  # noqa: E402


@pytest.fixture(scope="module")
def cnn():
    model = DigitsCNN().eval()
    return ob.export(model, torch.randn(4, 1, 8, 8), dynamic_axes="batch")


@pytest.fixture(scope="module")
def encoder():
    return ob.export(transformer_encoder().eval(), torch.randn(2, 7, 32), dynamic_axes={"input": {0: "b", 1: "s"}})


def _opset(art):
    return next(o.version for o in art.model.opset_import if o.domain in ("", "ai.onnx"))


def test_cnn_goes_down_to_opset_13_and_back_within_tolerance(cnn):
    old = cnn.with_opset(13)
    assert _opset(old) == 13
    assert_parity(old.validation)
    assert old.model.ir_version < cnn.model.ir_version
    assert any("IR version" in note for note in old.export_notes)
    x = np.random.default_rng(0).normal(size=(5, 1, 8, 8)).astype(np.float32)
    want = cnn.session(providers=["cpu"]).run(x)["output"]
    np.testing.assert_allclose(old.session(providers=["cpu"]).run(x)["output"], want, rtol=1e-4, atol=1e-5)
    back = old.with_opset(_opset(cnn))
    assert_parity(back.validation)
    assert _opset(cnn) == int(back.properties["opset"])


def test_an_operator_newer_than_the_target_is_named_with_the_lowest_opset(encoder):
    with pytest.raises(ob.InputError, match=r"LayerNormalization \(opset 17\).*lowest opset it converts to is 17"):
        encoder.with_opset(13)
    at17 = encoder.with_opset(17, samples=[torch.randn(3, 11, 32)])
    assert _opset(at17) == 17
    assert_parity(at17.validation)


@settings(max_examples=15, deadline=None)
@given(target=st.one_of(st.integers(-3, 40), st.booleans(), st.floats(12.0, 14.0), st.text(max_size=3)))
def test_any_target_converts_and_validates_or_raises_input_error(target):
    art = ob.load(_relu_file())
    if isinstance(target, int) and not isinstance(target, bool) and 7 <= target <= onnx.defs.onnx_opset_version():
        converted = art.with_opset(target)
        assert _opset(converted) == target
        assert_parity(converted.validation)
    else:
        with pytest.raises(ob.InputError, match="opset"):
            art.with_opset(target)


_FILES: dict[str, str] = {}


def _relu_file() -> str:
    if "relu" not in _FILES:
        import tempfile

        path = tempfile.mkdtemp() + "/relu.onnx"
        sample = np.linspace(-2, 2, 12, dtype=np.float32).reshape(3, 4)
        model = unary("Relu", opset=17)
        # the file records a sample and its outputs (as a saved export does), so conversions are held to them
        _metadata.write(model, _metadata.FileFacts(reference=({"x": sample}, {"y": np.maximum(sample, 0)})))
        onnx.save(model, path)
        _FILES["relu"] = path
    return _FILES["relu"]


def test_cli_converts_with_json_and_refuses_with_exit_2(cnn, encoder, tmp_path):
    cnn.save(tmp_path / "cnn.onnx")
    out = subprocess.run(
        [sys.executable, "-m", "onnxbridge", "convert", str(tmp_path / "cnn.onnx"), "--opset", "13", "-o",
         str(tmp_path / "cnn13.onnx"), "--json"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["opset"] == 13
    assert summary["validation"]["ok"]
    assert "recorded sample" in summary["validation"]["cases"]
    assert _opset(ob.load(tmp_path / "cnn13.onnx")) == 13
    encoder.save(tmp_path / "encoder.onnx")
    refused = subprocess.run(
        [sys.executable, "-m", "onnxbridge", "convert", str(tmp_path / "encoder.onnx"), "--opset", "13", "-o",
         str(tmp_path / "encoder13.onnx")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert refused.returncode == 2
    assert "LayerNormalization" in refused.stderr
    assert not (tmp_path / "encoder13.onnx").exists()


def test_a_quantized_file_is_held_to_itself_when_converted(cnn, tmp_path):
    # A loaded int8 file records its float source's outputs; the conversion must not be judged
    # against those (int8 differs from them by design) but against the int8 model it converts.
    cnn.quantize("dynamic", allow_slower=True).save(tmp_path / "int8.onnx")
    loaded = ob.load(tmp_path / "int8.onnx")
    assert not loaded.validate(raise_on_failure=False, rtol=1e-3, atol=1e-5).ok  # vs the float source: differs
    converted = loaded.with_opset(17)
    assert_parity(converted.validation)
    assert converted.validation.summary()["max_abs_error"] < 1e-4


def test_reduce_mean_18_goes_down_to_17_without_the_attribute_17_lacks():
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["batch", 3])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["batch", 1])
    axes = onnx.numpy_helper.from_array(np.array([1], np.int64), "axes")
    node = onnx.helper.make_node("ReduceMean", ["x", "axes"], ["y"], keepdims=1, noop_with_empty_axes=0)
    graph = onnx.helper.make_graph([node], "rms", [x], [y], [axes])
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 18)])
    sample = np.arange(6, dtype=np.float32).reshape(2, 3)
    old = ob.export(model, sample).with_opset(17)  # onnx's adapter keeps noop_with_empty_axes, which 17 lacks
    assert [a.name for a in old.model.graph.node[0].attribute] == ["keepdims", "axes"]
    assert next(c for c in old.validation.checks if c.name == "onnx.checker").passed is True
    np.testing.assert_allclose(old.session().run(sample)["y"], sample.mean(axis=1, keepdims=True))
