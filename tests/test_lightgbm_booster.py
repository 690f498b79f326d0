"""LightGBM boosters from ``lightgbm.train`` and from model files: exported and validated against ``predict``."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import onnxbridge as ob
from tests.parity import assert_parity

pytest.importorskip("sklearn")
lightgbm = pytest.importorskip("lightgbm")
pytest.importorskip("onnxmltools")

from sklearn.datasets import load_diabetes, load_iris  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402


def _iris():
    x, y = load_iris(return_X_y=True)
    return train_test_split(x, y, test_size=0.3, random_state=0)


@pytest.fixture(scope="module")
def multiclass(tmp_path_factory):
    """A multiclass booster saved as LightGBM's text model and read back, as a registry holds it."""
    x_train, x_test, y_train, _ = _iris()
    params = {"objective": "multiclass", "num_class": 3, "verbose": -1}
    path = tmp_path_factory.mktemp("lgb") / "model.txt"
    lightgbm.train(params, lightgbm.Dataset(x_train, y_train), num_boost_round=20).save_model(path)
    return lightgbm.Booster(model_file=path), x_test


def test_a_multiclass_booster_read_from_its_file_matches_predict_on_held_out_rows(multiclass):
    booster, x_test = multiclass
    art = ob.export(booster, x_test[:2])
    assert (art.framework, art.output_names) == ("lightgbm", ["label", "probabilities"])
    assert_parity(art.validate(samples=[x_test]))
    out = art.session(providers=["cpu"]).run({"input": x_test.astype(np.float32)})
    np.testing.assert_allclose(out["probabilities"], booster.predict(x_test), rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(out["label"], booster.predict(x_test).argmax(axis=1))


def test_a_binary_booster_gives_both_class_probabilities():
    x_train, x_test, y_train, _ = _iris()
    booster = lightgbm.train({"objective": "binary", "verbose": -1}, lightgbm.Dataset(x_train, y_train > 0), 10)
    art = ob.export(booster, x_test[:2])
    assert_parity(art.validate(samples=[x_test]))
    p = art.session(providers=["cpu"]).run({"input": x_test.astype(np.float32)})["probabilities"]
    np.testing.assert_allclose(p[:, 1], booster.predict(x_test), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("objective", ["regression", "poisson", "huber"])
def test_a_regression_booster_gives_one_value_per_row(objective):
    x, y = load_diabetes(return_X_y=True)
    target = np.round(y / 10) if objective == "poisson" else y
    booster = lightgbm.train({"objective": objective, "verbose": -1}, lightgbm.Dataset(x[:300], target[:300]), 20)
    art = ob.export(booster, x[:2], opset=17)
    assert (art.output_names, art.opset) == (["variable"], 17)
    assert_parity(art.validate(samples=[x[300:]]))


def test_a_sample_of_the_wrong_width_is_an_input_error_that_names_the_width(multiclass):
    booster, x_test = multiclass
    with pytest.raises(ob.InputError, match=r"rows of 4 features: pass a \(rows, 4\) array"):
        ob.export(booster, x_test[:2, :3])
    with pytest.raises(ob.InputError, match="only the batch axis varies"):
        ob.export(booster, x_test[:2], dynamic_axes={"input": {1: "features"}})


@settings(max_examples=25, deadline=None)
@given(rows=st.integers(0, 4), width=st.integers(0, 6))
def test_any_sample_shape_exports_or_is_refused_with_an_input_error(multiclass, rows, width):
    booster, _ = multiclass
    sample = np.ones((rows, width))
    if rows > 0 and width == 4:
        assert_parity(ob.export(booster, sample).validate())
    else:
        with pytest.raises(ob.InputError, match="this booster takes rows of 4 features"):
            ob.export(booster, sample)
