"""``onnxbridge export`` of Keras files and SavedModel folders (TensorFlow tests live in their own modules)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

import onnxbridge as ob  # noqa: E402


def _cli(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "onnxbridge", "export", *map(str, args)], capture_output=True, text=True, check=False
    )


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(3)])


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_keras_file_exports_and_validates(model, tmp_path, suffix):
    model.save(tmp_path / f"model{suffix}")
    result = _cli(tmp_path / f"model{suffix}", "-o", tmp_path / "model.onnx", "--dynamic", "batch", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["source"] == "Keras"
    assert summary["validation"]["ok"]
    x = np.random.default_rng(0).normal(size=(5, 8)).astype(np.float32)
    got = next(iter(ob.load(tmp_path / "model.onnx").session(providers=["cpu"]).run(x).values()))
    np.testing.assert_allclose(got, model(x).numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_saved_model_folder_exports_its_signature_and_names_the_ones_it_has(model, tmp_path):
    model.export(tmp_path / "saved")
    wrong = _cli(tmp_path / "saved", "-o", tmp_path / "out.onnx", "--signature", "predict")
    assert wrong.returncode == 2
    assert "serving_default" in wrong.stderr
    assert not (tmp_path / "out.onnx").exists()
    result = _cli(tmp_path / "saved", "-o", tmp_path / "out.onnx", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["source"] == "SavedModel"
