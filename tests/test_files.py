"""save() and load(): plain ONNX files, atomic writes, and refusing bad files."""

from __future__ import annotations

import json
import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxbridge as ob
from tests.onnx_models import unary

pytestmark = pytest.mark.core


def _model(weights: int = 4) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", weights])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", weights])
    w = numpy_helper.from_array(np.arange(weights, dtype=np.float32), "w")
    graph = helper.make_graph([helper.make_node("Mul", ["x", "w"], ["y"])], "g", [x], [y], initializer=[w])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _torch_artifact():
    torch = pytest.importorskip("torch")
    from tests import models

    return ob.export(models.mlp(), torch.randn(2, 8), dynamic_axes="batch", exporter="torchscript")


def test_save_writes_plain_onnx_with_onnxbridge_metadata(tmp_path):
    art = _torch_artifact()
    art.validate()
    path = art.save(tmp_path / "mlp.onnx")
    model = onnx.load(str(path))
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["onnxbridge.framework"] == "torch"
    assert meta["onnxbridge.exporter"] == "torch.onnx (torchscript)"
    assert json.loads(meta["onnxbridge.dynamic_axes"]) == {"input": {"0": "batch"}, "output": {"0": "batch"}}
    assert json.loads(meta["onnxbridge.validation"])["ok"] is True
    assert meta["onnxbridge.framework_version"].startswith("2.")


def test_load_restores_the_artifact_facts(tmp_path):
    art = _torch_artifact()
    loaded = ob.load(art.save(tmp_path / "mlp.onnx"))
    assert loaded.framework == "torch"
    assert loaded.exporter == art.exporter
    assert loaded.dynamic_axes == art.dynamic_axes
    assert loaded.opset == art.opset
    assert loaded.input_names == ["input"]
    assert loaded.output_names == ["output"]
    x = np.random.rand(3, 8).astype(np.float32)
    np.testing.assert_allclose(loaded.session().run(x)["output"], art.session().run(x)["output"])


def test_any_onnx_file_loads_with_its_symbolic_axes(tmp_path):
    onnx.save(_model(), str(tmp_path / "plain.onnx"))
    art = ob.load(tmp_path / "plain.onnx")
    assert art.framework == "onnx"
    assert art.dynamic_axes == {"x": {0: "batch"}, "y": {0: "batch"}}


def test_failed_save_leaves_the_previous_file_intact_and_no_temporary_files(tmp_path, monkeypatch):
    target = tmp_path / "model.onnx"
    onnx.save(_model(), str(target))
    before = target.read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)  # the rename step fails, as on a full or vanished disk
    with pytest.raises(ob.ModelFileError, match=r"Cannot write .*disk full") as info:
        ob.load(target).save(target)
    assert isinstance(info.value.__cause__, OSError)  # the cause stays visible
    monkeypatch.undo()
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def test_save_into_missing_folder_is_a_model_file_error(tmp_path):
    with pytest.raises(ob.ModelFileError, match="does not exist"):
        ob.export(_model()).save(tmp_path / "nope" / "m.onnx")


def test_external_data_round_trip(tmp_path):
    art = ob.export(_model(weights=1024))
    path = art.save(tmp_path / "big.onnx", external_data=True)
    assert (tmp_path / "big.onnx.data").is_file()
    assert len(art.model.graph.initializer[0].raw_data) > 0  # the in-memory model keeps its weights
    loaded = ob.load(path)
    x = np.ones((2, 1024), np.float32)
    np.testing.assert_array_equal(loaded.session().run(x)["y"], x * np.arange(1024, dtype=np.float32))


def test_external_data_pointing_outside_the_folder_is_refused(tmp_path):
    inner = tmp_path / "models"
    inner.mkdir()
    ob.export(_model(weights=1024)).save(tmp_path / "victim.onnx", external_data=True)
    model = onnx.load(str(tmp_path / "victim.onnx"), load_external_data=False)
    for entry in model.graph.initializer[0].external_data:
        if entry.key == "location":
            entry.value = "../victim.onnx.data"
    onnx.save(model, str(inner / "evil.onnx"))
    with pytest.raises(ob.ModelFileError, match="outside the model's folder"):
        ob.load(inner / "evil.onnx")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "No such model file"),
        (b"", "is empty"),
        (b"this is a text file, not a model\n" * 3, "not a readable ONNX model|holds no ONNX graph"),
    ],
)
def test_load_refuses_missing_empty_and_non_onnx_files(tmp_path, content, message):
    path = tmp_path / "model.onnx"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ob.ModelFileError, match=message):
        ob.load(path)


def test_load_refuses_a_truncated_file(tmp_path):
    art = _torch_artifact()
    data = art.save(tmp_path / "full.onnx").read_bytes()
    for cut in (len(data) // 3, len(data) // 2, len(data) - 7):
        (tmp_path / "cut.onnx").write_bytes(data[:cut])
        with pytest.raises(ob.ModelFileError):
            ob.load(tmp_path / "cut.onnx")


def test_passthrough_from_path_and_model_proto(tmp_path):
    onnx.save(_model(), str(tmp_path / "plain.onnx"))
    by_path = ob.export(str(tmp_path / "plain.onnx"))
    proto = _model()
    by_proto = ob.export(proto, input_names=["features"], output_names=["scaled"])
    assert by_path.input_names == ["x"]
    assert by_proto.input_names == ["features"]
    assert by_proto.output_names == ["scaled"]
    assert proto.graph.input[0].name == "x"  # the caller's proto is untouched
    out = by_proto.session().run(np.ones((1, 4), np.float32))
    assert out["scaled"].tolist() == [[0.0, 1.0, 2.0, 3.0]]


def test_passthrough_opset_conversion_and_dynamic_axes():
    art = ob.export(unary("Relu", [None, 3], opset=13), np.ones((2, 3), np.float32), dynamic_axes="batch", opset=17)
    assert art.opset == 17
    assert art.dynamic_axes == {"x": {0: "batch"}, "y": {0: "batch"}}
    assert art.model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"


def test_passthrough_cannot_make_a_fixed_dimension_dynamic():
    with pytest.raises(ob.InputError, match="fixes"):
        ob.export(_model(), dynamic_axes={"x": {1: "features"}})


def test_path_that_is_not_onnx_is_unsupported(tmp_path):
    with pytest.raises(ob.UnsupportedModelError, match=r"'\.onnx' file"):
        ob.export(str(tmp_path / "weights.pt"))


@pytest.mark.parametrize("external_data", [False, True])
def test_save_to_an_unwritable_place_is_a_model_file_error(external_data):
    art = ob.export(_model())
    with pytest.raises(ob.ModelFileError, match=r"Cannot write '/proc/model.onnx'.*nothing was written"):
        art.save("/proc/model.onnx", external_data=external_data)  # /proc takes no new files, even for root


def test_save_removes_partials_nobody_holds_and_nothing_else(tmp_path):
    import fcntl

    past = os.stat(tmp_path).st_mtime - 10**6  # long before this process started
    orphan = tmp_path / ".onnxbridge-partial-k1ll3d"  # no writer holds it: removed whatever its age
    orphan.write_bytes(b"half a model")
    old_style = tmp_path / ".onnxbridge-ab12cd34"  # what releases before 0.2 named them (no lock): by age
    old_style.mkdir()
    (old_style / "model.onnx").write_bytes(b"half")
    users = tmp_path / ".onnxbridge-notes.txt"  # not a name onnxbridge gives its partials
    users.write_text("mine")
    for path in (old_style, users):
        os.utime(path, (past, past))
    running = tmp_path / ".onnxbridge-partial-busy01"  # a save going on right now: its writer holds the lock
    running.write_bytes(b"being written")
    os.utime(running, (past, past))  # however old
    with running.open("rb") as writer:
        fcntl.flock(writer, fcntl.LOCK_EX | fcntl.LOCK_NB)
        ob.export(_model()).save(tmp_path / "model.onnx")
        left = sorted(p.name for p in tmp_path.iterdir())
    assert left == [".onnxbridge-notes.txt", ".onnxbridge-partial-busy01", "model.onnx"]


KILLED_SAVE = """
import sys, time
from pathlib import Path
from onnxbridge.graph import _files
with _files.atomic_write(Path(sys.argv[1]) / "model.onnx") as handle:
    handle.write(b"x" * 1_000_000)
    handle.flush()
    print("writing", flush=True)
    time.sleep(600)
"""


def test_a_partial_of_a_killed_save_is_removed_by_a_process_that_started_before_it(tmp_path):
    import signal
    import subprocess
    import sys

    for _ in range(3):  # killed three times mid-save; each new save removes the one before it
        child = subprocess.Popen([sys.executable, "-c", KILLED_SAVE, str(tmp_path)], stdout=subprocess.PIPE, text=True)
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "writing"
        child.send_signal(signal.SIGKILL)
        child.wait()
    partials = [p for p in tmp_path.iterdir() if p.name.startswith(".onnxbridge-partial-")]
    assert [p.stat().st_size for p in partials] == [1_000_000]  # the last one's
    ob.load(ob.export(_model()).save(tmp_path / "model.onnx"))  # this process began long before those children
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def test_a_load_removes_orphaned_partials_too(tmp_path):
    path = ob.export(_model()).save(tmp_path / "model.onnx")
    (tmp_path / ".onnxbridge-partial-k1ll3d").write_bytes(b"half a model")
    ob.load(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def _contrib_model(*, broken: bool = False) -> onnx.ModelProto:
    """RMS normalization as onnxruntime's fusions write it: ``SimplifiedLayerNormalization`` in the
    standard domain (no ONNX schema) and ``SkipSimplifiedLayerNormalization`` in ``com.microsoft``."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])
    scale = numpy_helper.from_array(np.array([1.0, 2.0, 0.5, 1.5], dtype=np.float32), "scale")
    nodes = [
        helper.make_node("SimplifiedLayerNormalization", ["x", "scale"], ["n"], axis=-1, epsilon=1e-6),
        helper.make_node(
            "SkipSimplifiedLayerNormalization",
            ["n", "missing" if broken else "x", "scale"],
            ["y"],
            domain="com.microsoft",
            epsilon=1e-6,
        ),
    ]
    graph = helper.make_graph(nodes, "g", [x], [y], initializer=[scale])
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    return helper.make_model(graph, opset_imports=opsets, ir_version=8)


def test_a_model_with_onnxruntime_contrib_operators_loads_and_says_what_the_checker_skipped(tmp_path):
    path = tmp_path / "fused.onnx"
    onnx.save(_contrib_model(), str(path))
    art = ob.load(path)
    note = next(n for n in art.export_notes if n.startswith("onnx.checker has no schema"))
    assert "SimplifiedLayerNormalization ×1 (ai.onnx)" in note
    assert "SkipSimplifiedLayerNormalization ×1 (com.microsoft)" in note
    x = np.array([[1.0, -2.0, 3.0, 0.5]], dtype=np.float32)
    rms = x / np.sqrt((x**2).mean(-1, keepdims=True) + 1e-6) * [1.0, 2.0, 0.5, 1.5]
    want = (rms + x) / np.sqrt(((rms + x) ** 2).mean(-1, keepdims=True) + 1e-6) * [1.0, 2.0, 0.5, 1.5]
    np.testing.assert_allclose(art.session(providers=["cpu"]).run({"x": x})["y"], want, rtol=1e-5)
    structure = art.validate(raise_on_failure=False).checks[0]
    assert structure.passed is True, structure.detail
    assert "SimplifiedLayerNormalization" in structure.detail
    # The file itself is unchanged: the nodes stay in their own domains.
    assert [n.domain for n in onnx.load(str(path)).graph.node] == ["", "com.microsoft"]


def test_a_real_fault_beside_contrib_operators_is_still_refused(tmp_path):
    path = tmp_path / "broken.onnx"
    onnx.save(_contrib_model(broken=True), str(path))
    with pytest.raises(ob.ModelFileError, match="missing"):
        ob.load(path)


def test_a_checked_file_with_external_data_and_contrib_operators_leaves_no_temporary(tmp_path):
    from onnxbridge.graph import _checker

    path = tmp_path / "fused.onnx"
    onnx.save(_contrib_model(), str(path), save_as_external_data=True, size_threshold=0)
    assert "SimplifiedLayerNormalization ×1" in _checker.check_model(_contrib_model(), path)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".onnxbridge")]
    broken = tmp_path / "broken.onnx"
    onnx.save(_contrib_model(broken=True), str(broken), save_as_external_data=True, size_threshold=0)
    with pytest.raises(onnx.checker.ValidationError, match="missing"):
        _checker.check_model(_contrib_model(broken=True), broken)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".onnxbridge")]
