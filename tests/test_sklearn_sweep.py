"""Every estimator scikit-learn lists, with default parameters: exported and right on every row, or refused with a reason.

The same catalogue as ``scripts/sklearn_sweep.py`` (the table in docs/sklearn.md). Classifiers,
clusterers and transformers are fitted on iris, regressors on diabetes.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")
pytest.importorskip("skl2onnx")

import onnxbridge as ob
from tests import sklearn_zoo as zoo

CATALOGUE = dict(zoo.catalogue())

# Cannot be fitted with default parameters on a numeric matrix and a 1-D target (text, dicts,
# labels, several targets, a binary-only meta-estimator, a square kernel matrix...).
NOT_FITTABLE = {
    "CCA", "ClassifierChain", "DictVectorizer", "FixedThresholdClassifier", "GaussianRandomProjection",
    "IsotonicRegression", "KernelCenterer", "LabelBinarizer", "LabelEncoder", "MultiLabelBinarizer",
    "MultiOutputClassifier", "MultiOutputRegressor", "MultiTaskElasticNet", "MultiTaskElasticNetCV",
    "MultiTaskLasso", "MultiTaskLassoCV", "PLSCanonical", "PLSSVD", "RegressorChain", "SelfTrainingClassifier",
    "SparseRandomProjection", "TunedThresholdClassifierCV",
}  # fmt: skip
# No ONNX graph: no predict/transform for new rows, an iterative solve per row, or no converter.
UNSUPPORTED = {
    "AffinityPropagation", "AgglomerativeClustering", "Birch", "DBSCAN", "DictionaryLearning",
    "FeatureAgglomeration", "HDBSCAN", "HashingVectorizer", "Isomap", "LabelPropagation", "LabelSpreading",
    "LatentDirichletAllocation", "LocallyLinearEmbedding", "MeanShift", "MiniBatchDictionaryLearning",
    "MiniBatchNMF", "NMF", "OPTICS", "OutputCodeClassifier", "PatchExtractor", "PolynomialCountSketch",
    "RadiusNeighborsTransformer", "SequentialFeatureSelector", "SpectralClustering", "SplineTransformer", "TSNE",
    "TransformedTargetRegressor",
}  # fmt: skip
# skl2onnx converts these but not as fitted here (float categories, sparse outputs, multiclass GP,
# VotingClassifier's flatten_transform), or onnxruntime breaks ties among equidistant neighbours
# differently from scikit-learn (iris has duplicate rows): a typed error, never a wrong answer.
TYPED_ERRORS = {
    "FeatureHasher", "GaussianProcessClassifier", "KBinsDiscretizer", "KNeighborsClassifier",
    "KNeighborsTransformer", "OneHotEncoder", "RadiusNeighborsClassifier", "RandomTreesEmbedding", "TargetEncoder",
    "VotingClassifier",
}  # fmt: skip
# Refused because ONNX cannot represent them at all: the message says why and what to export instead.
NO_GRAPH = {
    "AgglomerativeClustering", "DBSCAN", "DictionaryLearning", "HDBSCAN", "Isomap", "LatentDirichletAllocation",
    "LocallyLinearEmbedding", "MiniBatchDictionaryLearning", "MiniBatchNMF", "NMF", "OPTICS", "SpectralClustering",
    "TSNE",
}  # fmt: skip


def _fitted(name: str) -> zoo.Fitted:
    try:
        return zoo.fit(name, CATALOGUE[name])
    except zoo.NotFittable:
        assert name in NOT_FITTABLE, f"{name} no longer fits with default parameters on the bundled data"
        pytest.skip(f"{name} cannot be fitted with default parameters on the bundled data")


def _names(*, supported: bool) -> list[str]:
    refused = NOT_FITTABLE | UNSUPPORTED | TYPED_ERRORS
    return sorted(n for n in CATALOGUE if (n not in refused) == supported and n not in NOT_FITTABLE)


def test_catalogue_is_what_the_sweep_expects():
    assert len(CATALOGUE) >= 170
    assert set(CATALOGUE) >= (NOT_FITTABLE | UNSUPPORTED | TYPED_ERRORS)
    assert NO_GRAPH <= UNSUPPORTED
    assert len(_names(supported=True)) >= 120


@pytest.mark.parametrize("name", _names(supported=True))
def test_estimator_exports_and_agrees_on_every_row(name, tmp_path):
    fitted = _fitted(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        art = ob.export(fitted.model, fitted.x[:2])
        report = art.validate(samples=[fitted.x])
        outputs = art.session(providers=["cpu"]).run(fitted.x)
    assert report.ok
    assert report.distinct_rows is not None
    assert report.distinct_rows >= len(np.unique(fitted.x, axis=0))
    assert zoo.agrees(list(outputs.values()), zoo.expected(fitted)) == ""
    art.save(tmp_path / "model.onnx")
    again = ob.load(tmp_path / "model.onnx").session(providers=["cpu"]).run(fitted.x)
    for key, value in outputs.items():
        np.testing.assert_array_equal(again[key], value)


@pytest.mark.parametrize("name", sorted(UNSUPPORTED))
def test_estimator_without_an_onnx_graph_is_refused_with_its_reason(name):
    fitted = _fitted(name)
    with pytest.raises(ob.UnsupportedModelError) as caught:
        ob.export(fitted.model, fitted.x[:2])
    message = str(caught.value)
    assert name in message
    if name in NO_GRAPH:
        assert "cannot be exported to ONNX" in message
        assert "instead" in message or "Fit " in message
    else:
        assert "update_registered_converter" in message


@pytest.mark.parametrize("name", sorted(TYPED_ERRORS))
def test_estimator_skl2onnx_gets_wrong_here_raises_a_typed_error(name):
    fitted = _fitted(name)

    def export_and_validate() -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ob.export(fitted.model, fitted.x[:2]).validate(samples=[fitted.x])

    with pytest.raises(ob.OnnxBridgeError) as caught:
        export_and_validate()
    assert not isinstance(caught.value, ob.UnsupportedModelError)
