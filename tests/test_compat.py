"""``Artifact.compat(target)``: what would fail on a deployment target, found before deploying.

The onnxruntime releases' limits and kernels come from the record that scripts/ort_releases.py
took from each release (the script's ``--verify`` compares it with the releases running models).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

import onnxbridge as ob
from onnxbridge.checks import _ort_releases
from tests.onnx_models import unary
from tests.parity import assert_parity

torch = pytest.importorskip("torch")

from tests.models import DigitsCNN, transformer_encoder  # noqa: E402

ORT_WEB = Path(os.environ.get("ONNXBRIDGE_ORT_WEB_DIST", "node_modules/onnxruntime-web/dist"))


@pytest.fixture(scope="module")
def cnn21():
    """A CNN exported at opset 21 (IR 10), which onnxruntime 1.17 cannot load."""
    return ob.export(DigitsCNN().eval(), torch.randn(4, 1, 8, 8), opset=21, dynamic_axes="batch")


def _load(model: onnx.ModelProto, tmp_path: Path) -> ob.Artifact:
    onnx.save(model, str(tmp_path / "model.onnx"))
    return ob.load(tmp_path / "model.onnx")


def test_an_opset_21_model_is_refused_for_onnxruntime_1_17_with_the_conversion_that_fixes_it(cnn21):
    report = cnn21.compat("onnxruntime==1.17")
    assert not report.ok
    assert report.target == "onnxruntime 1.17.3"
    problems = " | ".join(f.problem for f in report.findings)
    assert "IR version 10; onnxruntime 1.17.3 loads IR 9 at most" in problems
    assert "opset 21; onnxruntime 1.17.3 loads opset 20 at most" in problems
    assert {f.fix.split(" ")[0] for f in report.findings} == {"art.with_opset(20)"}

    fixed = cnn21.with_opset(20)
    assert_parity(fixed.validation)
    assert fixed.model.ir_version <= 9
    assert fixed.compat("onnxruntime==1.17").ok


def test_the_same_model_is_compatible_with_onnxruntime_1_18_and_the_installed_one(cnn21):
    assert cnn21.compat("onnxruntime==1.18.0").ok  # any patch of a minor release: its newest recorded patch
    installed = cnn21.compat("onnxruntime")
    assert installed.ok, str(installed)
    assert "(installed)" in installed.target


def test_a_too_new_ir_version_at_a_loadable_opset_is_fixed_by_lowering_the_ir_version(tmp_path):
    model = unary("Relu", opset=20)
    model.ir_version = 10
    art = _load(model, tmp_path)
    report = art.compat("onnxruntime==1.17")
    assert [f.problem for f in report.findings] == ["IR version 10; onnxruntime 1.17.3 loads IR 9 at most"]
    assert report.findings[0].fix.startswith("art.with_opset(20)")
    same = art.with_opset(20)
    assert same.model.ir_version <= 9
    assert same.compat("onnxruntime==1.17").ok


def test_an_operator_without_a_kernel_is_named_with_the_release_that_first_runs_it(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 5, 5])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 3, 3])
    weights = [
        helper.make_tensor("w", TensorProto.FLOAT, [1, 1, 3, 3], np.ones(9, np.float32)),
        helper.make_tensor("offset", TensorProto.FLOAT, [1, 18, 3, 3], np.zeros(162, np.float32)),
    ]
    node = helper.make_node("DeformConv", ["x", "w", "offset"], ["y"], name="deform")
    graph = helper.make_graph([node], "g", [x], [y], weights)
    art = _load(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)], ir_version=9), tmp_path)

    report = art.compat("onnxruntime==1.24")
    [finding] = report.findings
    assert (finding.op_type, finding.nodes) == ("DeformConv", ("deform",))
    assert finding.problem == "onnxruntime 1.24.4 has no CPU kernel for DeformConv"
    assert finding.fix == "deploy onnxruntime 1.25.1 or newer (the first recorded release that runs it)"
    assert art.compat("onnxruntime==1.25").ok


def test_a_contrib_operator_newer_than_the_release_is_a_finding(tmp_path):
    def value(name: str, elem: int, shape: list[int | str]) -> onnx.ValueInfoProto:
        return helper.make_tensor_value_info(name, elem, shape)

    names = ["query", "key", "value", "past_key", "past_value"]
    inputs = [value(n, TensorProto.FLOAT, ["b", "s", 8]) for n in names]
    inputs += [value("seqlens_k", TensorProto.INT32, ["b"]), value("total_sequence_length", TensorProto.INT32, [])]
    outputs = [value(n, TensorProto.FLOAT, ["b", "s", 8]) for n in ("out", "present_key", "present_value")]
    node = helper.make_node(
        "GroupQueryAttention",
        [i.name for i in inputs],
        [o.name for o in outputs],
        name="gqa",
        domain="com.microsoft",
        num_heads=2,
        kv_num_heads=2,
    )
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    graph = helper.make_graph([node], "g", inputs, outputs)
    art = _load(helper.make_model(graph, opset_imports=opsets, ir_version=8), tmp_path)

    [finding] = art.compat("onnxruntime==1.17").findings
    assert (finding.op_type, finding.domain) == ("GroupQueryAttention", "com.microsoft")
    assert "deploy onnxruntime 1.18.1 or newer" in finding.fix
    newer = art.compat("onnxruntime==1.18")
    assert newer.ok
    assert any("checked by name, version and how many inputs" in note for note in newer.notes)


def test_float16_runs_through_casts_on_cpu_and_the_report_says_so(tmp_path):
    art = _load(unary("Relu", elem=TensorProto.FLOAT16, opset=17), tmp_path)
    report = art.compat("onnxruntime==1.17")
    assert report.ok
    assert report.notes == [
        "Relu-14 has no float16 CPU kernel in onnxruntime 1.17.3; onnxruntime runs it through casts to float32"
    ]


def test_a_model_no_opset_conversion_can_fix_names_the_release_that_runs_it():
    # Categorical HistGradientBoosting: ai.onnx.ml opset 5 (IR 10) and a TreeEnsemble. Looking for
    # an opset that fixes it walks onnx's converter down to opset 7, which used to crash the process.
    from sklearn.datasets import load_iris
    from sklearn.ensemble import HistGradientBoostingClassifier

    x, y = load_iris(return_X_y=True)
    x[:, 0] = np.round(x[:, 0] * 2) % 5
    art = ob.export(HistGradientBoostingClassifier(max_iter=5, categorical_features=[0]).fit(x, y), x[:2])
    report = art.compat("onnxruntime==1.16")
    fixes = {f.problem: f.fix for f in report.findings}
    assert fixes["ai.onnx.ml opset 5; onnxruntime 1.16.3 loads 3 at most"] == "deploy onnxruntime 1.18.1 or newer"
    assert fixes["onnxruntime 1.16.3 has no CPU kernel for TreeEnsemble"].startswith("deploy onnxruntime 1.21.1")
    assert fixes["IR version 10; onnxruntime 1.16.3 loads IR 9 at most"].startswith("no opset from 7 to 19")
    assert art.compat("onnxruntime==1.21").ok


def test_an_opset_target_names_operators_that_did_not_exist_yet():
    encoder = ob.export(transformer_encoder().eval(), torch.randn(2, 7, 32), dynamic_axes={"input": {0: "b", 1: "s"}})
    report = encoder.compat("opset=13")
    assert not report.ok
    [finding] = report.findings
    assert finding.op_type == "LayerNormalization"
    assert finding.problem == "LayerNormalization first exists at opset 17"
    assert encoder.compat("opset=17").ok


def test_the_record_of_the_installed_release_matches_its_live_kernel_registry():
    live = _ort_releases.installed()
    if not any(r.startswith(live.version) for r in _ort_releases.recorded_releases()):
        pytest.skip(f"onnxruntime {live.version} is not recorded (run scripts/ort_releases.py)")
    recorded = _ort_releases.release(live.version)
    assert recorded.version == live.version
    assert (recorded.ir, dict(recorded.opsets)) == (live.ir, dict(live.opsets))

    def kernels(runtime: _ort_releases.Runtime) -> dict:
        return {
            key: sorted((k.start, k.end, sorted(k.types.items())) for k in ks) for key, ks in runtime.kernels.items()
        }

    assert kernels(recorded) == kernels(live)
    assert dict(recorded.inputs) == dict(live.inputs)  # how many inputs each contrib operator takes
    assert recorded.inputs[("com.microsoft", "GroupQueryAttention")] >= 17


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("tensorrt", "expected one of"),
        ("onnxruntime==1.12", r"records onnxruntime 1\.16\.3 to"),
        ("onnxruntime==banana", "expected a release number"),
        ("onnxruntime==1", "expected a release number"),
        ("opset=3", "expected an int from 7"),
    ],
)
def test_a_bad_target_is_an_input_error_that_lists_the_targets(cnn21, target, message):
    with pytest.raises(ob.InputError, match=message):
        cnn21.compat(target)


@settings(max_examples=40, deadline=None)
@given(target=st.text(max_size=30))
def test_any_target_string_gives_a_report_or_an_input_error(tmp_path_factory, target):
    art = _load(unary(), tmp_path_factory.mktemp("m"))
    error: ob.OnnxBridgeError | None = None
    try:
        report = art.compat(target)
    except (ob.InputError, ob.MissingDependencyError) as err:
        error = err
    if error is None:
        assert json.loads(report.to_json())["target"] == report.target
    elif isinstance(error, ob.InputError):
        assert re.search(r"expected (one of|a release number|an int)|records onnxruntime", str(error))
    else:
        assert "onnxruntime-web" in target


def test_the_command_line_exits_1_with_json_findings_and_0_when_compatible(cnn21, tmp_path):
    path = cnn21.save(tmp_path / "model.onnx")

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "onnxbridge", "compat", str(path), *args]
        return subprocess.run(command, capture_output=True, text=True, check=False)

    old = cli("--target", "onnxruntime==1.17", "--json")
    assert old.returncode == 1, old.stderr
    summary = json.loads(old.stdout)
    assert summary["ok"] is False
    assert any(f["fix"].startswith("art.with_opset(20)") for f in summary["findings"])
    assert cli("--target", "onnxruntime==1.18").returncode == 0
    bad = cli("--target", "onnxruntime==0.1")
    assert bad.returncode == 2
    assert bad.stderr.startswith("error: InputError: onnxruntime 0.1: onnxbridge records")


def _require_node() -> None:
    problems = []
    if not (ORT_WEB / "ort.node.min.mjs").is_file():
        problems.append(f"onnxruntime-web not found at {ORT_WEB} (npm install onnxruntime-web)")
    if subprocess.run(["which", "node"], capture_output=True, check=False).returncode:
        problems.append("Node.js is not on PATH")
    if problems:
        if os.environ.get("CI"):
            pytest.fail("; ".join(problems))
        pytest.skip("; ".join(problems))


def test_onnxruntime_web_runs_the_model_under_node_and_matches_python(cnn21):
    _require_node()
    report = cnn21.compat("onnxruntime-web")
    assert report.ok, str(report)
    assert report.target.startswith("onnxruntime-web 1.")
    assert "inputs: the export sample" in report.checked


def test_onnxruntime_web_names_an_operator_it_cannot_run(tmp_path):
    _require_node()
    model = unary("Relu")
    model.graph.node[0].domain, model.graph.node[0].op_type, model.graph.node[0].name = "com.microsoft", "Foo", "foo"
    model.opset_import.add(domain="com.microsoft", version=1)
    [finding] = _load(model, tmp_path).compat("onnxruntime-web").findings
    assert (finding.op_type, finding.domain) == ("Foo", "com.microsoft")
    assert finding.problem.endswith("does not know Foo")


def test_onnxruntime_web_refuses_a_custom_domain_before_running_anything(tmp_path):
    _require_node()
    model = unary("Relu")
    model.graph.node[0].domain = "com.example"
    model.opset_import.add(domain="com.example", version=1)
    report = _load(model, tmp_path).compat("onnxruntime-web")
    [finding] = report.findings
    assert finding.problem == "onnxruntime-web does not implement domain 'com.example'"
    assert not any(c.startswith("inputs:") for c in report.checked)  # refused before running


def test_onnxruntime_web_without_node_modules_says_how_to_install_it(cnn21, tmp_path, monkeypatch):
    monkeypatch.setenv("ONNXBRIDGE_ORT_WEB_DIST", str(tmp_path))
    with pytest.raises(ob.MissingDependencyError, match=r"npm install onnxruntime-web@\d"):
        cnn21.compat("onnxruntime-web")
