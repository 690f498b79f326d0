"""``onnxbridge export SOURCE`` through the real console script: model files made in the test, no download."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.parity import assert_parity

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")

import onnxbridge as ob  # noqa: E402
from tests.models import DigitsCNN, mlp  # noqa: E402


def _cli(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "onnxbridge", "export", *map(str, args)], capture_output=True, text=True, check=False
    )


def _exported(result: subprocess.CompletedProcess[str], path: Path) -> dict:
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["validation"]["ok"]
    assert_parity(ob.load(path).validate())
    return summary


def test_torch_export_program_exports_with_its_example_inputs(tmp_path):
    batch = {"x": {0: torch.export.Dim("batch")}}
    program = torch.export.export(DigitsCNN().eval(), (torch.randn(2, 1, 8, 8),), dynamic_shapes=batch)
    torch.export.save(program, tmp_path / "cnn.pt2")
    summary = _exported(_cli(tmp_path / "cnn.pt2", "-o", tmp_path / "cnn.onnx", "--dynamic", "batch", "--json"),
                        tmp_path / "cnn.onnx")  # fmt: skip
    assert summary["source"] == "torch.export program"
    assert summary["dynamic_axes"][summary["inputs"][0]] == {"0": "batch"}
    seconds = summary["seconds"]  # where the time went: the export's phases, then validation
    assert {"total", "other", "validate"} <= set(seconds)
    assert all(value >= 0 for value in seconds.values())


def test_a_program_exported_with_a_fixed_batch_cannot_be_made_dynamic(tmp_path):
    torch.export.save(torch.export.export(DigitsCNN().eval(), (torch.randn(2, 1, 8, 8),)), tmp_path / "fixed.pt2")
    result = _cli(tmp_path / "fixed.pt2", "-o", tmp_path / "out.onnx", "--dynamic", "batch")
    assert result.returncode == 2
    assert "came out fixed to 2" in result.stderr
    assert not (tmp_path / "out.onnx").exists()


@pytest.mark.slow
def test_torchscript_needs_input_shapes_and_exports_with_them(tmp_path):
    torch.jit.save(torch.jit.script(mlp().eval()), tmp_path / "mlp.pt")
    missing = _cli(tmp_path / "mlp.pt", "-o", tmp_path / "mlp.onnx")
    assert missing.returncode == 2
    assert "sample" in missing.stderr
    summary = _exported(_cli(tmp_path / "mlp.pt", "-o", tmp_path / "mlp.onnx", "--input", "x=3x8:float32", "--json"),
                        tmp_path / "mlp.onnx")  # fmt: skip
    assert summary["inputs"] == ["x"]


def test_a_state_dict_is_refused_because_the_architecture_is_needed(tmp_path):
    torch.save(mlp().state_dict(), tmp_path / "weights.pt")
    result = _cli(tmp_path / "weights.pt", "-o", tmp_path / "out.onnx")
    assert result.returncode == 2
    assert "state_dict" in result.stderr
    assert "architecture" in result.stderr
    assert not (tmp_path / "out.onnx").exists()


@pytest.mark.parametrize("suffix", [".json", ".ubj"])
def test_xgboost_model_file_exports_as_the_estimator_it_was(tmp_path, suffix):
    xgboost = pytest.importorskip("xgboost")
    from sklearn.datasets import load_iris

    x, y = load_iris(return_X_y=True)
    xgboost.XGBClassifier(n_estimators=5, max_depth=2).fit(x, y).save_model(tmp_path / f"model{suffix}")
    summary = _exported(_cli(tmp_path / f"model{suffix}", "-o", tmp_path / "xgb.onnx", "--input", "input=2x4:float32",
                             "--json"), tmp_path / "xgb.onnx")  # fmt: skip
    assert summary["outputs"] == ["label", "probabilities"]


def test_lightgbm_text_model_exports_without_an_input_spec(tmp_path):
    lightgbm = pytest.importorskip("lightgbm")
    from sklearn.datasets import load_iris

    x, y = load_iris(return_X_y=True)
    params = {"objective": "multiclass", "num_class": 3, "verbose": -1}
    lightgbm.train(params, lightgbm.Dataset(x, y), num_boost_round=5).save_model(tmp_path / "model.txt")
    summary = _exported(_cli(tmp_path / "model.txt", "-o", tmp_path / "lgb.onnx", "--json"), tmp_path / "lgb.onnx")
    assert summary["outputs"] == ["label", "probabilities"]
    (tmp_path / "notes.txt").write_text("not a model\n")
    refused = _cli(tmp_path / "notes.txt", "-o", tmp_path / "x.onnx")
    assert refused.returncode == 2
    assert "not a LightGBM text model" in refused.stderr


@pytest.mark.slow
def test_a_skops_file_loads_only_the_types_it_is_trusted_with(tmp_path):
    sio = pytest.importorskip("skops.io")
    from sklearn.datasets import load_iris
    from sklearn.ensemble import HistGradientBoostingClassifier

    x, y = load_iris(return_X_y=True)
    sio.dump(HistGradientBoostingClassifier(max_iter=5).fit(x, y), tmp_path / "model.skops")
    untrusted = sio.get_untrusted_types(file=tmp_path / "model.skops")
    assert untrusted  # the tree predictor is not among skops' defaults
    refused = _cli(tmp_path / "model.skops", "-o", tmp_path / "hgb.onnx", "--input", "input=2x4:float32")
    assert refused.returncode == 2
    assert f"pass --trust-type {untrusted[0]}" in refused.stderr
    assert not (tmp_path / "hgb.onnx").exists()
    trusted = [arg for name in untrusted for arg in ("--trust-type", name)]
    summary = _exported(_cli(tmp_path / "model.skops", "-o", tmp_path / "hgb.onnx", "--input", "input=2x4:float32",
                             *trusted, "--json"), tmp_path / "hgb.onnx")  # fmt: skip
    assert summary["source"] == "skops file"


def test_a_pickle_is_refused_without_trust_and_nothing_in_it_runs(tmp_path):
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    marker = tmp_path / "ran"
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps(_Touch(marker)))
    refused = _cli(tmp_path / "evil.pkl", "-o", tmp_path / "out.onnx")
    assert refused.returncode == 2
    assert "--trust-pickle" in refused.stderr
    assert not marker.exists()
    x, y = load_iris(return_X_y=True)
    import joblib

    joblib.dump(LogisticRegression(max_iter=500).fit(x, y), tmp_path / "model.joblib")
    _exported(_cli(tmp_path / "model.joblib", "-o", tmp_path / "lr.onnx", "--trust-pickle", "--input",
                   "input=2x4:float64", "--json"), tmp_path / "lr.onnx")  # fmt: skip


class _Touch:
    """Unpickling this creates a file: how a pickle runs code."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


@pytest.mark.slow
def test_transformers_folder_exports_without_a_sample(tmp_path):
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64
    )
    transformers.BertModel(config).save_pretrained(tmp_path / "bert")
    summary = _exported(_cli(tmp_path / "bert", "-o", tmp_path / "bert.onnx", "--json"), tmp_path / "bert.onnx")
    assert "input_ids" in summary["inputs"]
    assert summary["dynamic_axes"]["input_ids"] == {"0": "batch_size", "1": "sequence_length"}


def test_onnx_file_passes_through_with_an_opset_and_a_quantization(tmp_path):
    ob.export(mlp().eval(), torch.randn(4, 8), dynamic_axes="batch").save(tmp_path / "mlp.onnx")
    summary = _exported(_cli(tmp_path / "mlp.onnx", "-o", tmp_path / "mlp13.onnx", "--opset", "13", "--json"),
                        tmp_path / "mlp13.onnx")  # fmt: skip
    assert summary["source"] == "ONNX"
    result = _cli(tmp_path / "mlp.onnx", "-o", tmp_path / "mlp.int8.onnx", "--quantize", "dynamic", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["quantization"] == "dynamic"
    assert ob.load(tmp_path / "mlp.int8.onnx").quantization is not None or (tmp_path / "mlp.int8.onnx").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["model.bin"], "the file kind '.bin' is not one onnxbridge opens"),
        (["missing.pt2"], "does not exist"),
        (["mlp.onnx", "--input", "x=3by8"], "expected name=SHAPE"),
        (["mlp.onnx", "--dynamic", "x=zero"], "expected 'batch' or name=0:batch"),
    ],
)
def test_bad_sources_and_arguments_exit_2_with_one_line(tmp_path, args, message):
    (tmp_path / "model.bin").write_bytes(b"\0" * 16)
    ob.export(mlp().eval(), torch.randn(4, 8)).save(tmp_path / "mlp.onnx")
    result = _cli(tmp_path / args[0], *args[1:], "-o", tmp_path / "out.onnx")
    assert result.returncode == 2
    assert message in result.stderr
    assert result.stderr.count("\n") <= 8  # one error line (the kinds list, for an unknown file)
    assert not (tmp_path / "out.onnx").exists()


def test_input_specs_give_arrays_of_the_shape_and_dtype_asked():
    from onnxbridge.cli._sources import parse_inputs

    arrays = parse_inputs(["ids=2x16:int64", "pixels=1x3x4x4"])
    assert arrays["ids"].shape == (2, 16)
    assert arrays["ids"].dtype == np.int64
    assert arrays["pixels"].dtype == np.float32
