"""onnxbridge's own converters (estimators skl2onnx has none for) and what the adapter mends in skl2onnx's."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")
pytest.importorskip("skl2onnx")

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.cluster import BisectingKMeans, KMeans
from sklearn.datasets import load_diabetes, load_digits, load_iris
from sklearn.decomposition import FactorAnalysis, FastICA, SparsePCA
from sklearn.discriminant_analysis import QuadraticDiscriminantAnalysis
from sklearn.dummy import DummyClassifier, DummyRegressor
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.impute import MissingIndicator
from sklearn.kernel_approximation import AdditiveChi2Sampler, Nystroem, RBFSampler, SkewedChi2Sampler
from sklearn.kernel_ridge import KernelRidge
from sklearn.linear_model import RidgeClassifier
from sklearn.model_selection import train_test_split
from sklearn.neighbors import NearestCentroid
from sklearn.neural_network import BernoulliRBM
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler, OrdinalEncoder, StandardScaler
from sklearn.svm import SVC, LinearSVC

import onnxbridge as ob
from tests import sklearn_zoo as zoo


def _split(loader, scale=False):
    x, y = loader(return_X_y=True)
    if scale:
        x = MinMaxScaler().fit_transform(x)
    return train_test_split(x, y, test_size=0.3, random_state=0)


DIGITS, IRIS, DIABETES = _split(load_digits), _split(load_iris), _split(load_diabetes)
DIGITS01 = _split(load_digits, scale=True)


def _iris_with_gaps():
    x_train, x_test, y_train, y_test = IRIS
    rng = np.random.default_rng(0)
    holed = [np.where(rng.random(x.shape) < 0.1, np.nan, x) for x in (x_train, x_test)]
    return holed[0], holed[1], y_train, y_test


# name -> (estimator, data): each fitted on the training rows, judged on the held-out ones.
CASES = {
    "dummy_classifier_prior": (lambda: DummyClassifier(), DIGITS),
    "dummy_classifier_most_frequent": (lambda: DummyClassifier(strategy="most_frequent"), DIGITS),
    "dummy_classifier_constant": (lambda: DummyClassifier(strategy="constant", constant=2), IRIS),
    "dummy_regressor_quantile": (lambda: DummyRegressor(strategy="quantile", quantile=0.9), DIABETES),
    "nearest_centroid_unequal_priors": (lambda: NearestCentroid(), DIGITS),
    "nearest_centroid_in_a_pipeline": (lambda: make_pipeline(StandardScaler(), NearestCentroid()), IRIS),
    "kernel_ridge_rbf": (lambda: KernelRidge(kernel="rbf", gamma=2.0), DIABETES),
    "kernel_ridge_poly": (lambda: KernelRidge(kernel="poly", degree=2), DIABETES),
    "kernel_ridge_laplacian": (lambda: KernelRidge(kernel="laplacian"), IRIS),
    "kernel_ridge_sigmoid": (lambda: KernelRidge(kernel="sigmoid", gamma=0.01), IRIS),
    "kernel_ridge_cosine": (lambda: KernelRidge(kernel="cosine"), IRIS),
    "nystroem_poly": (lambda: Nystroem(kernel="poly", degree=2, n_components=30, random_state=0), IRIS),
    "additive_chi2_three_steps_with_zeros": (lambda: AdditiveChi2Sampler(sample_steps=3), DIGITS),
    "missing_indicator_all_features": (lambda: MissingIndicator(features="all"), _iris_with_gaps()),
    "missing_indicator_missing_only": (lambda: MissingIndicator(), _iris_with_gaps()),
    "bisecting_kmeans_deep_tree": (lambda: BisectingKMeans(n_clusters=7, random_state=0), DIGITS),
    "factor_analysis": (lambda: FactorAnalysis(n_components=5, random_state=0), DIGITS),
    "fast_ica": (lambda: FastICA(n_components=5, random_state=0, max_iter=500), DIGITS),
    "sparse_pca": (lambda: SparsePCA(n_components=3, random_state=0), IRIS),
    "rbf_sampler": (lambda: RBFSampler(gamma=0.5, n_components=40, random_state=0), IRIS),
    "skewed_chi2_sampler": (lambda: SkewedChi2Sampler(n_components=40, random_state=0), IRIS),
    "bernoulli_rbm": (lambda: BernoulliRBM(n_components=16, random_state=0), DIGITS01),
}


@pytest.mark.parametrize("name", list(CASES))
def test_added_converter_agrees_with_the_estimator_on_held_out_rows(name):
    build, (x_train, x_test, y_train, _) = CASES[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = build().fit(x_train, y_train)
        art = ob.export(model, x_train[:4])
        report = art.validate(samples=[x_test])
        got = art.session(providers=["cpu"]).run(x_test)
    assert report.ok
    assert any("onnxbridge's own converter" in note for note in art.export_notes)
    held_out = zoo.Fitted(name, zoo.kind_of(model), model, x_test)
    assert zoo.agrees(list(got.values()), zoo.expected(held_out)) == ""


@pytest.mark.parametrize("estimator", [SVC(), LinearSVC(), RidgeClassifier()], ids=lambda e: type(e).__name__)
def test_binary_classifier_without_probabilities_exports_decision_function_as_scores(estimator):
    x_train, x_test, y_train, _ = _split(load_iris)
    binary = y_train < 2
    model = estimator.fit(x_train[binary], y_train[binary])
    art = ob.export(model, x_train[:3])
    art.validate(samples=[x_test])
    assert art.output_names == ["label", "scores"]
    scores = art.session(providers=["cpu"]).run(x_test)["scores"]
    assert scores.shape == (len(x_test),)
    np.testing.assert_allclose(scores, model.decision_function(x_test), rtol=1e-3, atol=1e-4)


def test_clusterer_validation_compares_labels_and_distances():
    x = load_iris().data
    art = ob.export(KMeans(3, n_init=3, random_state=0).fit(x), x[:2])
    report = art.validate(samples=[x])
    assert {(c.case, c.output) for c in report.comparisons} >= {("samples[0]", "label"), ("samples[0]", "scores")}
    assert "validation compares label with predict(), scores with transform()" in art.export_notes


def test_float_categories_choose_float64_and_float32_is_refused_with_the_fix():
    x = load_iris().data
    encoder = OrdinalEncoder().fit(x)
    art = ob.export(encoder, x[:2])
    assert art.properties["precision"] == "float64"
    art.validate(samples=[x])
    with pytest.raises(ob.ExportError, match="precision='float64'"):
        ob.export(encoder, x[:2], precision="float32")


def test_wrongly_declared_outputs_are_redeclared_and_keep_a_dynamic_batch(tmp_path):
    x, y = load_iris(return_X_y=True)
    art = ob.export(QuadraticDiscriminantAnalysis().fit(x, y), x[:2])
    label = art.model.graph.output[0].type.tensor_type.shape
    assert [d.dim_param for d in label.dim] == ["batch"]
    for rows in (1, 7, 150):
        assert art.session(providers=["cpu"]).run(x[:rows])["label"].shape == (rows,)
    assert any("redeclared" in note for note in art.export_notes)


def test_report_says_how_many_distinct_rows_it_compared_and_asks_for_more():
    x, y = load_iris(return_X_y=True)
    art = ob.export(NearestCentroid().fit(x, y), x[:2])
    few = art.validate()  # the two rows, and rows resampled column by column from them (4 distinct here)
    assert few.distinct_rows == 4
    assert "compared 4 distinct input row(s)" in str(few)
    assert "validate(samples=[X])" in str(few)
    more = art.validate(samples=[x])
    # every iris row, and the resampled rows that are not among them
    assert more.distinct_rows >= len(np.unique(x, axis=0))
    assert "samples=[X]" not in str(more)
    assert more.summary()["distinct_rows"] == more.distinct_rows


def test_estimator_without_predict_for_new_rows_says_what_to_export_instead():
    from sklearn.cluster import DBSCAN

    x = load_iris().data
    with pytest.raises(ob.UnsupportedModelError, match=r"KNeighborsClassifier\(\)\.fit\(X, model\.labels_\)"):
        ob.export(make_pipeline(StandardScaler(), DBSCAN()).fit(x), x[:2])


@settings(max_examples=12, deadline=None)
@given(
    data=arrays(np.float64, st.tuples(st.integers(12, 40), st.integers(1, 6)), elements=st.floats(-50, 50)),
    seed=st.integers(0, 2**16),
)
def test_nearest_centroid_and_kernel_ridge_agree_on_any_numeric_table(data, seed):
    rng = np.random.default_rng(seed)
    data = data + rng.normal(size=data.shape)  # no constant column: NearestCentroid refuses those
    labels = rng.integers(0, 3, len(data))
    labels[:3] = [0, 1, 2]
    rows = rng.normal(scale=20, size=(16, data.shape[1]))
    for model in (NearestCentroid().fit(data, labels), KernelRidge(kernel="rbf", gamma=1e-3).fit(data, labels)):
        art = ob.export(model, data[:2], precision="float64")
        got = list(art.session(providers=["cpu"]).run(rows).values())
        assert zoo.agrees(got, zoo.expected(zoo.Fitted("", zoo.kind_of(model), model, rows))) == ""


def _with_a_category(x, y, rng):
    """Iris plus a column of float codes that mostly follow the class (so the trees split on it)."""
    codes = np.array([3.5, 7.0, 11.0, 20.0])
    column = np.where(rng.random(len(y)) < 0.7, codes[y], codes[rng.integers(0, 4, len(y))])
    return np.column_stack([x[:, :2], column, x[:, 2:]])


@pytest.mark.parametrize(
    ("build", "classes"),
    [
        (lambda: HistGradientBoostingClassifier(categorical_features=[2], max_iter=30, random_state=0), 3),
        (lambda: HistGradientBoostingClassifier(categorical_features=[2], max_iter=30, random_state=0), 2),
        (lambda: HistGradientBoostingRegressor(categorical_features=[2], max_iter=30, random_state=0), 0),
        (lambda: HistGradientBoostingRegressor(categorical_features=[2], loss="poisson", random_state=0), 0),
    ],
    ids=["multiclass", "binary", "regressor", "poisson"],
)
def test_hist_gradient_boosting_with_categories_splits_on_them_like_scikit_learn(build, classes):
    rng = np.random.default_rng(0)
    x, y = load_iris(return_X_y=True)
    table = _with_a_category(x, y, rng)
    target = y if classes else table[:, 0] * 3 + table[:, 2]
    keep = y > 0 if classes == 2 else np.ones(len(y), bool)  # versicolor and virginica overlap
    x_train, x_test, y_train, _ = train_test_split(table[keep], target[keep], random_state=0)
    model = build().fit(x_train, y_train)
    x_test = x_test.copy()
    x_test[:3, 2] = 99.0  # categories never seen in fit
    x_test[3:5, 2] = np.nan  # missing
    art = ob.export(model, x_train[:2])
    art.validate(samples=[x_test])
    ensemble = next(n for n in art.model.graph.node if n.op_type == "TreeEnsemble")
    modes = next(a for a in ensemble.attribute if a.name == "nodes_modes")
    assert 6 in np.frombuffer(modes.t.raw_data, np.uint8)  # BRANCH_MEMBER: a split on a category set
    got = list(art.session(providers=["cpu"]).run(x_test).values())
    assert zoo.agrees(got, zoo.expected(zoo.Fitted("", zoo.kind_of(model), model, x_test))) == ""
