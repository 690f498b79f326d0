"""The onnxbridge command line, through Typer's runner and the real entry point."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

import onnxbridge as ob
from onnxbridge.cli._app import app
from tests.numpy_models import NumpyAdapter, NumpyMLP

pytestmark = pytest.mark.core

runner = CliRunner()


@pytest.fixture(scope="module")
def files(numpy_framework_module, tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    sample = np.random.default_rng(1).normal(size=(2, 8)).astype(np.float32)
    art = ob.export(NumpyMLP(), sample, dynamic_axes="batch", framework=NumpyAdapter.framework)
    art.validate()
    art.save(folder / "mlp.onnx")  # the command line reads the file; the numpy adapter is not needed
    rng = np.random.default_rng(0)
    np.save(folder / "x.npy", rng.random((3, 8), dtype=np.float32))
    np.savez(folder / "calib.npz", input=rng.random((64, 8), dtype=np.float32))
    np.savez(folder / "wrong.npz", pixels=rng.random((64, 8), dtype=np.float32), other=np.zeros(3))
    (folder / "notes.onnx").write_text("not a model\n")
    return folder


def _run(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def test_inspect_json_lists_inputs_outputs_opsets_and_metadata(files):
    result = _run("inspect", files / "mlp.onnx", "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["inputs"] == [{"name": "input", "dtype": "float32", "shape": ["batch", 8]}]
    assert info["outputs"][0]["shape"] == ["batch", 3]
    assert info["opsets"]["ai.onnx"] >= 17
    assert info["operators"] == {"MatMul": 2, "Add": 2, "Relu": 1}
    assert info["onnxbridge"]["framework"] == "numpy_mlp"
    assert info["onnxbridge"]["validation"]["ok"] is True
    assert info["initializer_bytes"] > 0


def test_inspect_prints_a_readable_summary(files):
    result = _run("inspect", files / "mlp.onnx")
    assert result.exit_code == 0
    assert "[batch, 8]" in result.output
    assert "MatMul x2" in result.output


def test_validate_passes_with_exit_status_zero(files):
    result = _run("validate", files / "mlp.onnx")
    assert result.exit_code == 0
    assert "Validation PASSED" in result.output
    assert "recorded sample" in result.output


def test_validate_failure_exits_one(files, tmp_path):
    import onnx

    model = onnx.load(str(files / "mlp.onnx"))
    for init in model.graph.initializer:  # corrupt the weights: recorded outputs no longer match
        if init.name.startswith("w"):
            values = np.frombuffer(init.raw_data, dtype=np.float32) + 1.0
            init.raw_data = values.astype(np.float32).tobytes()
    onnx.save(model, str(tmp_path / "drifted.onnx"))
    result = _run("validate", tmp_path / "drifted.onnx")
    assert result.exit_code == 1
    assert "Validation FAILED" in result.output


def test_quantize_writes_a_model_and_prints_the_report(files, tmp_path):
    out = tmp_path / "q.onnx"
    result = _run(
        "quantize",
        files / "mlp.onnx",
        "-o",
        out,
        "--mode",
        "static",
        "--calibration",
        files / "calib.npz",
        "--tolerance",
        "cosine=0.99",
    )
    assert result.exit_code == 0, result.output
    assert "Quantization static" in result.output
    assert "tolerance {'cosine': 0.99}: met" in result.output
    assert ob.load(out).quantization is None  # a loaded file has its lineage in metadata
    info = json.loads(_run("inspect", out, "--json").output)
    assert info["onnxbridge"]["quantization"]["mode"] == "static"


def test_quantize_auto_prints_every_candidate_and_the_choice(files, tmp_path):
    out = tmp_path / "auto.onnx"
    result = _run(
        "quantize",
        files / "mlp.onnx",
        "-o",
        out,
        "--mode",
        "auto",
        "--calibration",
        files / "calib.npz",
        "--tolerance",
        "cosine=0.9",
        "--objective",
        "size",
    )
    assert result.exit_code == 0, result.output
    assert "Quantization auto -> " in result.output
    assert "dynamic int8 per-tensor" in result.output
    assert "fp16" in result.output
    info = json.loads(_run("inspect", out, "--json").output)
    assert info["onnxbridge"]["quantization"]["chosen"]


def test_bench_json_reports_percentiles_and_compares(files, tmp_path):
    other = tmp_path / "int8.onnx"
    made = _run("quantize", files / "mlp.onnx", "-o", other, "--mode", "dynamic", "--allow-slower")
    assert made.exit_code == 0, made.output
    result = _run("bench", files / "mlp.onnx", "--batch", "4", "--runs", "20", "--json", "--compare", other)
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["batch"] == 4
    assert data["providers"] == ["CPUExecutionProvider"]
    stats = data["results"][str(files / "mlp.onnx")]
    assert stats["p50_ms"] <= stats["p90_ms"] <= stats["p99_ms"]
    assert set(data["results"]["ratio"]) == {"p50_ms", "p90_ms", "p99_ms", "throughput_per_s"}


def test_run_writes_outputs_as_npz(files, tmp_path):
    out = tmp_path / "out.npz"
    result = _run("run", files / "mlp.onnx", "--input", f"input={files / 'x.npy'}", "-o", out)
    assert result.exit_code == 0, result.output
    with np.load(out) as data:
        assert data["output"].shape == (3, 3)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("inspect", "missing.onnx"), "No such model file"),
        (("inspect", "{folder}/notes.onnx"), "ModelFileError"),
        (("quantize", "{folder}/mlp.onnx", "-o", "{folder}/q.onnx", "--mode", "int3"), "--mode 'int3'"),
        (("bench", "{folder}/mlp.onnx", "--shape", "input=4by8"), "expected name=DIMxDIMx"),
        (
            (
                "quantize",
                "{folder}/mlp.onnx",
                "-o",
                "{folder}/q.onnx",
                "--mode",
                "static",
                "--calibration",
                "{folder}/wrong.npz",
            ),
            "calibration file has arrays",
        ),
        (("run", "{folder}/mlp.onnx", "--input", "x.npy"), "expected name=path.npy"),
    ],
)
def test_bad_input_is_one_line_and_exit_status_two(files, args, message):
    result = _run(*(a.format(folder=files) for a in args))
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1
    assert lines[0].startswith("error: ")
    assert message in lines[0]
    assert "Traceback" not in result.output


def test_debug_flag_shows_the_traceback(files):
    result = _run("--debug", "inspect", "missing.onnx")
    assert result.exit_code != 0
    assert isinstance(result.exception, ob.ModelFileError)


def test_every_command_has_help_with_an_example():
    for command in ("inspect", "validate", "convert", "quantize", "bench", "run", "demo"):
        result = _run(command, "--help")
        assert result.exit_code == 0
        assert "Example: onnxbridge" in result.output


def test_python_dash_m_entry_point(files):
    out = subprocess.run(
        [sys.executable, "-m", "onnxbridge", "inspect", str(files / "mlp.onnx"), "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(out.stdout)["outputs"][0]["name"] == "output"
