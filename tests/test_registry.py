"""The converter registry: detection, forcing, third-party adapters, missing extras."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections import OrderedDict

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import onnxbridge as ob
from onnxbridge.exporting._adapter import Exported
from onnxbridge.exporting._registry import default_registry
from tests.onnx_models import unary

pytestmark = pytest.mark.core


def _identity_model() -> onnx.ModelProto:
    return unary("Neg", ["n", 2])


class Polynomial:
    """A toy 'framework' model: y = -x."""


class PolynomialAdapter:
    framework = "polynomial"
    module_roots = (__name__.split(".")[0],)

    def accepts(self, model: object) -> bool:
        return isinstance(model, Polynomial)

    def export(self, model, request):
        return Exported(
            model=_identity_model(),
            framework="polynomial",
            framework_version="1.0",
            exporter="hand-written",
            dynamic_axes={"x": {0: "n"}, "y": {0: "n"}},
            sample={"x": np.asarray(request.sample, dtype=np.float32)},
            reference=lambda feeds: {"y": -feeds["x"]},
        )


@pytest.fixture
def polynomial_adapter():
    ob.register_adapter(PolynomialAdapter())
    yield
    default_registry.unregister("polynomial")


def test_unknown_model_type_names_supported_frameworks_and_how_to_register():
    with pytest.raises(ob.UnsupportedModelError) as info:
        ob.export(OrderedDict(), None)
    message = str(info.value)
    assert "collections.OrderedDict" in message
    assert "torch" in message
    assert "register_adapter" in message


def test_supported_frameworks_lists_builtins():
    assert {"torch", "onnx"} <= set(ob.supported_frameworks())


def test_registered_adapter_is_found_and_its_export_validates(polynomial_adapter):
    art = ob.export(Polynomial(), np.ones((3, 2)))
    assert art.framework == "polynomial"
    report = art.validate()
    assert report.ok
    assert {c.case for c in report.comparisons} == {"sample", "n=1", "n=5"}


def test_duplicate_registration_is_refused_unless_overwrite(polynomial_adapter):
    with pytest.raises(ob.RegistrationError, match="already registered"):
        ob.register_adapter(PolynomialAdapter())
    ob.register_adapter(PolynomialAdapter(), overwrite=True)
    assert "polynomial" in ob.supported_frameworks()


def test_malformed_adapter_is_refused_with_what_is_missing():
    class Broken:
        framework = "not a name"

    with pytest.raises(ob.RegistrationError) as info:
        ob.register_adapter(Broken())  # type: ignore[arg-type]
    assert "module_roots" in str(info.value)
    assert "accepts" in str(info.value)


def test_framework_argument_forces_an_adapter():
    with pytest.raises(ob.UnsupportedModelError, match="no registered adapter"):
        ob.export(object(), None, framework="nope")


def test_adapter_from_entry_point_group_is_loaded(tmp_path):
    package = tmp_path / "toy_adapter.py"
    package.write_text(
        textwrap.dedent(
            """
        class ToyAdapter:
            framework = "toy"
            module_roots = ("toy_models",)
            def accepts(self, model):
                return False
            def export(self, model, request):
                raise NotImplementedError
        """
        )
    )
    dist = tmp_path / "toy_adapter-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-adapter\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[onnxbridge.adapters]\ntoy = toy_adapter:ToyAdapter\n")
    code = "import onnxbridge as ob; print(ob.supported_frameworks())"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": f"{tmp_path}:{':'.join(sys.path)}"},
    )
    assert "'toy'" in out.stdout


def test_missing_framework_raises_missing_dependency_naming_the_extra():
    # torch made unimportable in a fresh interpreter: what a user without the extra sees.
    code = textwrap.dedent(
        """
        import sys
        sys.modules["torch"] = None
        import onnxbridge as ob
        try:
            ob.export(object(), None, framework="torch")
        except ob.MissingDependencyError as err:
            print(type(err).__name__, err)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "MissingDependencyError" in out.stdout
    assert 'pip install "onnxbridge[torch]"' in out.stdout


def test_export_of_none_says_the_model_is_none():
    with pytest.raises(ob.InputError, match="The model passed to export\\(\\) is None"):
        ob.export(None, np.zeros((1, 2), np.float32))


def test_forcing_a_framework_that_does_not_take_the_model_is_unsupported_not_a_type_error():
    pytest.importorskip("sklearn")
    model = helper.make_model(helper.make_graph([], "empty", [], []))
    with pytest.raises(ob.UnsupportedModelError, match=r"framework='sklearn' was asked for.*ModelProto"):
        ob.export(model, framework="sklearn")


class _ToyModel:
    """A model of an imaginary framework whose converter always writes opset 17."""

    def __init__(self, op: str) -> None:
        self.op = op


class _ToyAdapter:
    framework = "toy_opset"
    module_roots = ("tests",)

    def accepts(self, model: object) -> bool:
        return isinstance(model, _ToyModel)

    def export(self, model, request):
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])
        inits = [onnx.numpy_helper.from_array(np.ones(4, np.float32), n) for n in ("s", "b")]
        inputs = ["x", "s", "b"] if model.op == "LayerNormalization" else ["x", "s"]
        graph = helper.make_graph([helper.make_node(model.op, inputs, ["y"])], "toy", [x], [y], inits)
        proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        sample = {"x": np.arange(8, dtype=np.float32).reshape(2, 4)}

        def reference(feeds):
            values = feeds["x"]
            if model.op == "Add":
                return {"y": values + 1}
            mean, var = values.mean(-1, keepdims=True), values.var(-1, keepdims=True)
            return {"y": (values - mean) / np.sqrt(var + 1e-5)}

        return Exported(proto, "toy_opset", "1", "toy", {}, sample=sample, reference=reference)


@pytest.fixture
def toy_adapter():
    ob.register_adapter(_ToyAdapter())
    yield
    default_registry.unregister("toy_opset")


def test_an_adapter_that_ignores_the_opset_is_converted_and_checked(toy_adapter):
    art = ob.export(_ToyModel("Add"), opset=14)
    assert art.opset == 14
    assert any(
        "converted to the requested opset 14" in n and "checked against the source" in n for n in art.export_notes
    )


def test_an_opset_that_cannot_be_reached_is_refused_not_replaced(toy_adapter):
    with pytest.raises(ob.InputError, match=r"opset=11 was asked for, but toy produced opset 17.*Use opset>=17"):
        ob.export(_ToyModel("LayerNormalization"), opset=11)
