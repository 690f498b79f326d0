"""Validation of classic models compares more rows than the sample, and the rows where such models go wrong."""

from __future__ import annotations

import numpy as np
import pytest

import onnxbridge as ob

sklearn = pytest.importorskip("sklearn")
pytest.importorskip("skl2onnx")

from sklearn.cluster import BisectingKMeans, KMeans  # noqa: E402
from sklearn.datasets import load_iris  # noqa: E402
from sklearn.neighbors import KNeighborsTransformer  # noqa: E402

X, Y = load_iris(return_X_y=True)


@pytest.mark.parametrize("model", [BisectingKMeans(n_clusters=3, random_state=0), KMeans(n_clusters=4, n_init=3)])
def test_a_clustering_export_is_validated_between_its_centres_and_reproduces_predict_on_every_row(model):
    model.fit(X)
    art = ob.export(model, X[:1])
    report = art.validate()  # raises on a difference
    cases = {c.case for c in report.comparisons}
    assert "between cluster centres" in cases
    assert report.distinct_rows > 2 * len(model.cluster_centers_)
    labels = art.session().run(X)["label"]
    assert (labels == model.predict(X)).all()  # every iris row, as the issue asks


def test_bisecting_kmeans_assigns_by_its_tree_where_the_nearest_centre_differs():
    model = BisectingKMeans(n_clusters=3, random_state=0).fit(X)
    nearest = np.argmin(((X[:, None] - model.cluster_centers_[None]) ** 2).sum(-1), axis=1)
    differ = np.flatnonzero(nearest != model.predict(X))
    assert len(differ)  # rows 57, 93 and 98: the tree's answer is not the nearest centre's
    labels = ob.export(model, X[:2]).session().run(X[differ])["label"]
    assert (labels == model.predict(X[differ])).all()


def test_a_neighbours_model_with_tied_training_rows_fails_validation_and_says_they_tie():
    model = KNeighborsTransformer(n_neighbors=5).fit(X)  # iris holds repeated rows: equidistant neighbours
    art = ob.export(model, X[:2])
    assert any("equidistant neighbours" in note for note in art.export_notes)
    with pytest.raises(ob.ValidationError, match=r"training rows \(\d+ of 150 tied\)"):
        art.validate()


def test_a_label_that_differs_only_where_its_scores_tie_is_noise_and_a_wrong_one_fails():
    from onnxbridge.checks import _labels

    probabilities = np.array([[0.5, 0.5, 0.0], [0.1, 0.7, 0.2]], dtype=np.float32)
    ref = {"label": np.array([0, 1]), "probabilities": probabilities}
    assert _labels.decided_by_ties("label", {**ref, "label": np.array([1, 1])}, ref, 1e-3, 1e-5)
    assert not _labels.decided_by_ties("label", {**ref, "label": np.array([0, 2])}, ref, 1e-3, 1e-5)
    moved = {"label": np.array([1, 1]), "probabilities": probabilities + np.array([[0.0, 0.1, 0.0]] * 2)}
    assert not _labels.decided_by_ties("label", moved, ref, 1e-3, 1e-5)  # the scores differ too: not a tie
