"""Exporting real scikit-learn, LightGBM and XGBoost models fitted on bundled data."""

from __future__ import annotations

import numpy as np
import pytest

from tests.parity import assert_parity

sklearn = pytest.importorskip("sklearn")
pytest.importorskip("skl2onnx")

from sklearn.base import BaseEstimator, ClassifierMixin  # noqa: E402
from sklearn.datasets import load_diabetes, load_digits, load_iris  # noqa: E402
from sklearn.decomposition import PCA  # noqa: E402
from sklearn.ensemble import (  # noqa: E402
    GradientBoostingClassifier,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from sklearn.neighbors import KNeighborsClassifier  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.svm import SVC  # noqa: E402

import onnxbridge as ob  # noqa: E402


def _split(loader):
    x, y = loader(return_X_y=True)
    return train_test_split(x, y, test_size=0.25, random_state=0)


DIGITS = _split(load_digits)
IRIS = _split(load_iris)
DIABETES = _split(load_diabetes)

CLASSIFIERS = {
    "logistic": (lambda: LogisticRegression(max_iter=2000), DIGITS),
    "random_forest": (lambda: RandomForestClassifier(n_estimators=30, random_state=0), DIGITS),
    "gradient_boosting": (lambda: GradientBoostingClassifier(n_estimators=10, random_state=0), IRIS),
    "hist_gradient_boosting": (lambda: HistGradientBoostingClassifier(max_iter=20, random_state=0), DIGITS),
    "svc": (lambda: SVC(probability=True, random_state=0), DIGITS),
    "knn": (lambda: KNeighborsClassifier(), DIGITS),
    "scaler_pca_logistic": (
        lambda: make_pipeline(StandardScaler(), PCA(20, random_state=0), LogisticRegression(max_iter=2000)),
        DIGITS,
    ),
}


def _held_out_agreement(report: ob.ValidationReport, case: str = "samples[0]") -> float:
    label = next(c for c in report.comparisons if c.case == case and c.output == "label")
    return 1.0 - label.mismatch_fraction


@pytest.mark.parametrize("name", list(CLASSIFIERS))
def test_classifier_exports_validates_and_agrees_on_held_out_data(name, tmp_path):
    build, (x_train, x_test, y_train, _) = CLASSIFIERS[name]
    model = build().fit(x_train, y_train)
    art = ob.export(model, x_train[:16])
    assert art.output_names == ["label", "probabilities"]  # plain arrays, no ZipMap
    assert art.input_names == ["input"]
    report = art.validate(samples=[x_test])
    assert _held_out_agreement(report) == 1.0
    out = art.session().run(x_test[:5])
    assert isinstance(out["probabilities"], np.ndarray)
    assert out["probabilities"].shape[0] == 5
    loaded = ob.load(art.save(tmp_path / f"{name}.onnx"))
    assert loaded.framework == "sklearn"
    assert loaded.properties == {"precision": "float32"}
    assert_parity(loaded.validate())


def test_random_forest_regressor_validates_within_tolerance():
    x_train, x_test, y_train, _ = DIABETES
    model = RandomForestRegressor(n_estimators=30, random_state=0).fit(x_train, y_train)
    art = ob.export(model, x_train[:8])
    assert art.output_names == ["variable"]
    report = art.validate(samples=[x_test])
    assert report.ok
    assert "precision=float32" in str(report)


@pytest.mark.parametrize(
    "build",
    [
        lambda: RandomForestRegressor(n_estimators=10, random_state=0),
        lambda: RandomForestClassifier(n_estimators=10, random_state=0),
        lambda: HistGradientBoostingClassifier(max_iter=10, random_state=0),
        lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)),
    ],
    ids=["forest_regressor", "forest_classifier", "hist_gradient_boosting", "scaler_logistic"],
)
def test_float64_precision_keeps_double_inputs_and_validates(build):
    # skl2onnx 1.20 builds double tree ensembles that onnxruntime refuses; onnxbridge mends them.
    x_train, x_test, y_train, _ = DIABETES if "Regressor" in type(build()).__name__ else DIGITS
    model = build().fit(x_train, y_train)
    art = ob.export(model, x_train[:8], precision="float64")
    assert art.session().inputs[0].dtype == np.float64
    report = art.validate(samples=[x_test], rtol=1e-6, atol=1e-7)
    assert report.facts == {"precision": "float64"}
    assert report.ok


def test_column_transformer_over_a_dataframe_with_a_string_column(tmp_path):
    pd = pytest.importorskip("pandas")
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import OneHotEncoder

    x, y = load_iris(return_X_y=True, as_frame=True)
    frame = x.rename(columns=lambda c: c.replace(" (cm)", "").replace(" ", "_"))
    frame["size"] = pd.cut(frame["petal_length"], 3, labels=["small", "medium", "large"]).astype(str)
    frame["count"] = (frame["sepal_length"] * 10).astype("int64")
    x_train, x_test, y_train, _ = train_test_split(frame, y, test_size=0.25, random_state=0)
    transform = ColumnTransformer(
        [
            ("num", StandardScaler(), ["sepal_length", "sepal_width", "petal_length", "petal_width", "count"]),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["size"]),
        ]
    )
    model = make_pipeline(transform, LogisticRegression(max_iter=1000)).fit(x_train, y_train)
    art = ob.export(model, x_train.head(10))
    assert art.input_names == list(frame.columns)
    report = art.validate(samples=[x_test])  # a DataFrame sample, as the model takes it
    assert _held_out_agreement(report) == 1.0
    out = art.session().run(x_test)  # the DataFrame directly
    np.testing.assert_array_equal(out["label"], model.predict(x_test))
    reloaded = ob.load(art.save(tmp_path / "frame.onnx")).validate()
    parity = next(c for c in reloaded.checks if c.name == "numeric parity")
    assert parity.passed is None  # text inputs are not embedded in the file, and the report says so
    assert "no recorded reference" in parity.detail


def test_lightgbm_classifier_alone_and_in_a_pipeline():
    lightgbm = pytest.importorskip("lightgbm")
    pytest.importorskip("onnxmltools")
    x_train, x_test, y_train, _ = IRIS
    for model in (
        lightgbm.LGBMClassifier(n_estimators=30, verbose=-1, random_state=0),
        make_pipeline(StandardScaler(), lightgbm.LGBMClassifier(n_estimators=30, verbose=-1, random_state=0)),
    ):
        model.fit(x_train, y_train)
        art = ob.export(model, x_train[:8])
        assert "lightgbm" in art.framework_version
        assert _held_out_agreement(art.validate(samples=[x_test])) == 1.0


def test_xgboost_regressor(tmp_path):
    xgboost = pytest.importorskip("xgboost")
    pytest.importorskip("onnxmltools")
    x_train, x_test, y_train, _ = DIABETES
    model = xgboost.XGBRegressor(n_estimators=30, max_depth=3, random_state=0).fit(x_train, y_train)
    art = ob.export(model, x_train[:8], output_names=["prediction"])
    assert art.output_names == ["prediction"]
    assert_parity(art.validate(samples=[x_test]))
    assert_parity(ob.load(art.save(tmp_path / "xgb.onnx")).validate())


def test_transformer_pipeline_is_compared_with_transform():
    x_train, x_test, _, _ = DIGITS
    model = make_pipeline(StandardScaler(), PCA(5, random_state=0)).fit(x_train)
    art = ob.export(model, x_train[:4])
    report = art.validate(samples=[x_test])
    assert report.ok
    assert report.comparisons[0].shape == (4, 5)


# -- bad input ----------------------------------------------------------------------------------
def test_unfitted_estimator_raises_input_error():
    with pytest.raises(ob.InputError, match="not fitted yet"):
        ob.export(LogisticRegression(), np.zeros((2, 4)))


def test_wrong_number_of_features_raises_input_error():
    x_train, _, y_train, _ = IRIS
    model = LogisticRegression(max_iter=500).fit(x_train, y_train)
    with pytest.raises(ob.InputError, match="has 3 features but the model was fitted on 4"):
        ob.export(model, x_train[:2, :3])


def test_estimator_without_converter_names_the_type_and_how_to_register():
    class Majority(ClassifierMixin, BaseEstimator):
        def fit(self, x, y):
            self.classes_ = np.unique(y)
            self.n_features_in_ = x.shape[1]
            return self

        def predict(self, x):
            return np.full(len(x), self.classes_[0])

    x_train, _, y_train, _ = IRIS
    with pytest.raises(ob.UnsupportedModelError) as info:
        ob.export(Majority().fit(x_train, y_train), x_train[:2])
    message = str(info.value)
    assert "Majority" in message
    assert "update_registered_converter" in message
    assert "register_adapter" in message


def test_only_the_batch_axis_may_vary():
    x_train, _, y_train, _ = IRIS
    model = LogisticRegression(max_iter=500).fit(x_train, y_train)
    with pytest.raises(ob.InputError, match="dynamic batch axis"):
        ob.export(model, x_train[:2], dynamic_axes={"input": {1: "features"}})
