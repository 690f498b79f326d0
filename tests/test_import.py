"""The package's front door: lazy imports and a deliberate public surface."""

from __future__ import annotations

import json
import subprocess
import sys
import types
from pathlib import Path

import pytest

import onnxbridge as ob

pytestmark = pytest.mark.core

HEAVY = [
    "torch",
    "tensorflow",
    "sklearn",
    "onnxruntime",
    "onnx",
    "keras",
    "tf2onnx",
    "skl2onnx",
    "ray",
    "pyspark",
    "typer",
]


def test_import_onnxbridge_imports_no_framework_and_no_onnxruntime():
    code = f"import sys, json, onnxbridge; print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_public_api_is_exactly_what_all_lists():
    # Subpackages (onnxbridge.adapters) appear as attributes once imported; they are not API names.
    public = {
        name for name in dir(ob) if not name.startswith("_") and not isinstance(getattr(ob, name), types.ModuleType)
    } - {"annotations"}
    assert public == set(ob.__all__) - {"__version__"}


def test_every_public_name_is_in_the_api_reference():
    reference = (Path(__file__).resolve().parent.parent / "docs" / "reference.md").read_text()
    missing = [name for name in ob.__all__ if name != "__version__" and f"onnxbridge.{name}" not in reference]
    assert missing == []


def test_every_error_derives_from_the_base_error():
    errors = [getattr(ob, n) for n in ob.__all__ if n.endswith("Error")]
    assert len(errors) >= 7
    assert all(issubclass(e, ob.OnnxBridgeError) for e in errors)


def test_version_is_exposed():
    assert ob.__version__.count(".") == 2


def test_exporting_an_onnx_file_imports_no_framework(tmp_path):
    code = f"""
import sys, json
from onnx import TensorProto, helper, save
import onnxbridge as ob
x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n"])
y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n"])
graph = helper.make_graph([helper.make_node("Neg", ["x"], ["y"])], "g", [x], [y])
save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), {str(tmp_path / "m.onnx")!r})
ob.export({str(tmp_path / "m.onnx")!r}).validate()
print(json.dumps([m for m in ["torch", "tensorflow", "keras", "sklearn"] if m in sys.modules]))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []
