"""Every adapter, built-in or third-party, honours the same contract behind ``export()``.

Detection without importing the framework, refusal of unknown options, the names and
dynamic axes asked for, and an ``Exported`` whose sample, reference and graph agree.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import onnxbridge as ob
from onnxbridge.exporting._registry import default_registry
from tests.numpy_models import NumpyMLP
from tests.onnx_models import unary

pytestmark = pytest.mark.core

ROWS = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)


def _torch_model():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    return torch.nn.Linear(4, 2).eval()


def _sklearn_model():
    pytest.importorskip("skl2onnx")
    from sklearn.linear_model import Ridge

    return Ridge().fit(ROWS, ROWS.sum(axis=1))


def _keras_model():
    keras = pytest.importorskip("keras")
    pytest.importorskip("tf2onnx")
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])


def _lightgbm_booster():
    lightgbm = pytest.importorskip("lightgbm")
    params = {"objective": "regression", "min_data_in_leaf": 1, "min_data_in_bin": 1, "verbose": -1}
    return lightgbm.train(params, lightgbm.Dataset(ROWS, ROWS.sum(axis=1)), num_boost_round=3)


MODELS = {
    "onnx": lambda: unary("Relu", ["n", 4]),
    "numpy_mlp": lambda: NumpyMLP(inputs=4),
    "torch": _torch_model,
    "sklearn": _sklearn_model,
    "tensorflow": _keras_model,
    "lightgbm": _lightgbm_booster,
}


@pytest.fixture(params=sorted(MODELS))
def case(request, numpy_framework):
    model = MODELS[request.param]()
    return request.param, model


def test_the_registry_finds_the_adapter_from_the_models_class(case):
    framework, model = case
    adapter = default_registry.find(model)
    assert adapter.framework == framework
    assert adapter.accepts(model)
    assert set(adapter.module_roots) & {c.__module__.split(".")[0] for c in type(model).__mro__}


def test_unknown_options_are_refused_by_name(case):
    _, model = case
    with pytest.raises(ob.InputError, match="not_an_option"):
        ob.export(model, ROWS, not_an_option=1)


def test_names_axes_sample_and_reference_agree_with_the_graph(case):
    framework, model = case
    adapter = default_registry.find(model)
    request = ob.ExportRequest(sample=ROWS, dynamic_axes="batch", input_names=["features"], output_names=["scores"])
    exported = adapter.export(model, request)
    graph = exported.model.graph
    assert exported.framework == framework
    assert [v.name for v in graph.input if v.name not in {i.name for i in graph.initializer}] == ["features"]
    assert [v.name for v in graph.output] == ["scores"]
    assert exported.dynamic_axes["features"] == {0: "batch"}
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert list(exported.sample) == ["features"]
    art = ob.Artifact(exported)
    got = art.session().run(exported.sample)["scores"]
    assert got.shape[0] == len(ROWS)
    if exported.reference is not None:  # an ONNX model has no source to compare with
        want = exported.reference(exported.sample)
        assert list(want) == ["scores"]
        np.testing.assert_allclose(got, np.asarray(want["scores"]).reshape(got.shape), rtol=1e-3, atol=1e-4)


def test_importing_the_built_in_adapters_imports_no_framework():
    code = (
        "import sys, json\n"
        "import onnxbridge.adapters.onnx_model, onnxbridge.adapters.pytorch\n"
        "import onnxbridge.adapters.scikit_learn, onnxbridge.adapters.tensorflow\n"
        "print(json.dumps([m for m in ('torch', 'tensorflow', 'keras', 'sklearn', 'skl2onnx', 'tf2onnx') "
        "if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []
