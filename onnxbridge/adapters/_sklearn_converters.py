"""Converters for scikit-learn estimators skl2onnx has none for, and the ones no converter can be.

Each converter here is for an estimator whose prediction is a closed-form graph over what it
learned (constants, centroids, a kernel against stored rows, a linear map); it is registered with
skl2onnx's own ``update_registered_converter``, so it also works inside pipelines. Estimators that
cannot predict on new data (DBSCAN, t-SNE...) or whose prediction is an iterative solve (NMF, LDA,
sparse coding) get :func:`unsupported_reason`, which :class:`~onnxbridge.adapters.scikit_learn.SklearnAdapter`
turns into an ``UnsupportedModelError`` that says what to export instead.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from onnxbridge.adapters import _sklearn_hist_gbt

_KERNELS = ("linear", "rbf", "laplacian", "poly", "polynomial", "sigmoid", "cosine")
_INSTEAD_CLUSTERS = (
    "it has no predict() for new rows: the clusters exist only for the data it was fitted on. Export a "
    "model of its result instead, e.g. KNeighborsClassifier().fit(X, model.labels_), or use a clusterer "
    "with predict() (KMeans, BisectingKMeans, GaussianMixture)."
)
_INSTEAD_EMBEDDING = (
    "it has no transform() for new rows: the embedding exists only for the data it was fitted on. Learn "
    "the mapping instead, e.g. KNeighborsRegressor().fit(X, model.embedding_), or use PCA, KernelPCA or "
    "TruncatedSVD, which transform new rows."
)
_ITERATIVE = (
    "its {method}() solves an optimisation problem per row ({how}), which is not a fixed ONNX graph. "
    "Fit {instead} on the same data, or compute its output before the ONNX model."
)
_NO_NEW_DATA = {
    "DBSCAN": _INSTEAD_CLUSTERS,
    "HDBSCAN": _INSTEAD_CLUSTERS,
    "OPTICS": _INSTEAD_CLUSTERS,
    "AgglomerativeClustering": _INSTEAD_CLUSTERS,
    "SpectralClustering": _INSTEAD_CLUSTERS,
    "TSNE": _INSTEAD_EMBEDDING,
    "SpectralEmbedding": _INSTEAD_EMBEDDING,
    "MDS": _INSTEAD_EMBEDDING,
    "ClassicalMDS": _INSTEAD_EMBEDDING,
    "Isomap": (
        "its transform() runs shortest paths through the neighbour graph of the training rows, which ONNX "
        "cannot express. " + _INSTEAD_EMBEDDING.split(": ", 1)[1]
    ),
    "LocallyLinearEmbedding": _ITERATIVE.format(
        method="transform", how="barycentre weights over its nearest training rows", instead="PCA or KernelPCA"
    ),
    "NMF": _ITERATIVE.format(method="transform", how="non-negative least squares", instead="TruncatedSVD"),
    "MiniBatchNMF": _ITERATIVE.format(method="transform", how="non-negative least squares", instead="TruncatedSVD"),
    "LatentDirichletAllocation": _ITERATIVE.format(
        method="transform", how="variational inference", instead="TruncatedSVD"
    ),
    "DictionaryLearning": _ITERATIVE.format(method="transform", how="sparse coding", instead="PCA or SparsePCA"),
    "MiniBatchDictionaryLearning": _ITERATIVE.format(
        method="transform", how="sparse coding", instead="PCA or SparsePCA"
    ),
    "SparseCoder": _ITERATIVE.format(method="transform", how="sparse coding", instead="PCA or SparsePCA"),
}


def unsupported_reason(estimator: Any) -> str:
    """Why ``estimator`` cannot be an ONNX graph ('' when it may be)."""
    name = type(estimator).__name__
    if name in _NO_NEW_DATA:
        return _NO_NEW_DATA[name]
    kernel = getattr(estimator, "kernel", None) if name in ("KernelRidge", "Nystroem") else None
    if kernel is not None and (callable(kernel) or kernel not in _KERNELS):
        return f"kernel={kernel!r}; onnxbridge's converter computes the kernels {', '.join(_KERNELS)}."
    categorical = name.startswith("HistGradientBoosting") and _sklearn_hist_gbt.uses_categories(estimator)
    if categorical and not _sklearn_hist_gbt.supported_link(estimator):
        return "categorical features with this loss; onnxbridge's converter handles the common losses' links."
    if name == "NearestCentroid" and estimator.metric != "euclidean":
        return f"metric={estimator.metric!r}; onnxbridge's converter computes metric='euclidean'."
    if name == "DummyClassifier" and estimator.strategy in ("stratified", "uniform"):
        return f"strategy={estimator.strategy!r} predicts random labels; only a fixed strategy is a graph."
    if name in ("DummyClassifier", "DummyRegressor") and getattr(estimator, "n_outputs_", 1) != 1:
        return "it was fitted on several targets; onnxbridge's converter handles one."
    return ""


# -- graph pieces (skl2onnx's algebra) -----------------------------------------------------------
class _Graph:
    """Small numpy-like helpers over skl2onnx's algebra operators, for one converter call."""

    def __init__(self, opset: int, dtype: Any) -> None:
        from skl2onnx.algebra import onnx_ops

        self.ops, self.opset, self.dtype = onnx_ops, opset, dtype

    def __call__(self, op: str, *inputs: Any, **attrs: Any) -> Any:
        attrs.setdefault("op_version", self.opset)
        return getattr(self.ops, f"Onnx{op}")(*inputs, **attrs)

    @property
    def onnx_dtype(self) -> int:
        """The ONNX element type of the graph's floats (for Cast)."""
        return 11 if np.dtype(self.dtype) == np.float64 else 1

    def const(self, value: Any) -> Any:
        return np.asarray(value, dtype=self.dtype)

    def rows(self, x: Any) -> Any:
        """The batch size, as a 1-element int64 tensor."""
        return self("Slice", self("Shape", x), np.array([0], np.int64), np.array([1], np.int64))

    def broadcast(self, x: Any, row: np.ndarray) -> Any:
        """``row`` (1-D) repeated on every row of ``x``: shape (N, len(row))."""
        shape = self("Concat", self.rows(x), np.array([len(row)], np.int64), axis=0)
        return self("Expand", self.const(row[None, :]), shape)

    def linear(self, x: Any, matrix: np.ndarray, mean: np.ndarray | None = None, bias: Any = None) -> Any:
        centred = self("Sub", x, self.const(mean)) if mean is not None else x
        out = self("MatMul", centred, self.const(matrix))
        return self("Add", out, self.const(bias)) if bias is not None else out

    def sqdist(self, x: Any, centres: np.ndarray) -> Any:
        """Squared Euclidean distances (N, K) from each row to each centre, never below 0."""
        norms = self("ReduceSumApi11", self("Mul", x, x), axes=[1], keepdims=1)
        cross = self("MatMul", x, self.const(-2.0 * centres.T))
        total = self("Add", self("Add", norms, cross), self.const((centres**2).sum(axis=1)[None, :]))
        return self("Max", total, self.const([0.0]))

    def manhattan(self, x: Any, points: np.ndarray) -> Any:
        wide = self("Reshape", x, np.array([-1, 1, points.shape[1]], np.int64))
        return self("ReduceSumApi11", self("Abs", self("Sub", wide, self.const(points))), axes=[2], keepdims=0)

    def kernel(self, x: Any, points: np.ndarray, name: str, gamma: Any, degree: Any, coef0: Any) -> Any:
        """scikit-learn's ``pairwise_kernels(x, points, metric=name)`` with its default parameters."""
        gamma = 1.0 / points.shape[1] if gamma is None else gamma
        if name == "rbf":
            return self("Exp", self("Mul", self.sqdist(x, points), self.const([-gamma])))
        if name == "laplacian":
            return self("Exp", self("Mul", self.manhattan(x, points), self.const([-gamma])))
        if name == "cosine":
            norms = self("Sqrt", self("ReduceSumApi11", self("Mul", x, x), axes=[1], keepdims=1))
            unit = points / np.maximum(np.linalg.norm(points, axis=1, keepdims=True), 1e-300)
            return self("MatMul", self("Div", x, self("Max", norms, self.const([1e-30]))), self.const(unit.T))
        dot = self("MatMul", x, self.const(points.T))
        if name == "linear":
            return dot
        shifted = self("Add", self("Mul", dot, self.const([gamma])), self.const([1.0 if coef0 is None else coef0]))
        if name == "sigmoid":
            return self("Tanh", shifted)
        return self("Pow", shifted, self.const([3 if degree is None else degree]))

    def pick(self, values: Any, index: Any) -> Any:
        """``values[index]`` for a 1-D constant array of labels (ints or strings)."""
        table = np.asarray(values)
        table = table.astype(np.int64) if table.dtype.kind in "iub" else table.astype(str).astype(object)
        return self("Gather", table, index, axis=0)


# -- the converters: each returns the graph of every output, in the parser's order ---------------
def _dummy_classifier(g: _Graph, model: Any, x: Any) -> list[Any]:
    classes = np.asarray(model.classes_)
    if model.strategy == "constant":
        winner = int(np.flatnonzero(classes == model.constant)[0])
    else:
        winner = int(np.argmax(model.class_prior_))
    proba = np.asarray(model.class_prior_, dtype=np.float64)
    if model.strategy != "prior":
        proba = np.eye(len(classes))[winner]
    label = g("Expand", g.pick(classes[[winner]], np.array([0], np.int64)), g.rows(x))
    return [label, g.broadcast(x, proba)]


def _dummy_regressor(g: _Graph, model: Any, x: Any) -> list[Any]:
    return [g.broadcast(x, np.asarray(model.constant_, dtype=np.float64).ravel())]


def _nearest_centroid(g: _Graph, model: Any, x: Any) -> list[Any]:
    spread = np.where(model.within_class_std_dev_ != 0, model.within_class_std_dev_, 1.0)
    scaled = g("Div", x, g.const(spread))
    scores = g("Add", g("Neg", g.sqdist(scaled, model.centroids_ / spread)), g.const(2.0 * np.log(model.class_prior_)))
    if np.isclose(model.class_prior_, 1 / len(model.classes_)).all():
        index = g("ArgMin", g.sqdist(x, model.centroids_), axis=1, keepdims=0)
    else:
        index = g("ArgMax", scores, axis=1, keepdims=0)
    return [g.pick(model.classes_, index), g("Softmax", scores, axis=1)]


def _kernel_params(model: Any) -> dict[str, Any]:
    params = {"gamma": model.gamma, "degree": model.degree, "coef0": model.coef0}
    params.update(getattr(model, "kernel_params", None) or {})
    return params


def _kernel_ridge(g: _Graph, model: Any, x: Any) -> list[Any]:
    dual = np.asarray(model.dual_coef_, dtype=np.float64).reshape(len(model.X_fit_), -1)
    if model.kernel == "linear":  # x @ X_fit.T @ dual, folded into one matrix: fewer float32 sums
        return [g.linear(x, np.asarray(model.X_fit_).T @ dual)]
    kernel = g.kernel(x, np.asarray(model.X_fit_, np.float64), model.kernel, **_kernel_params(model))
    return [g("MatMul", kernel, g.const(dual))]


def _nystroem(g: _Graph, model: Any, x: Any) -> list[Any]:
    kernel = g.kernel(x, np.asarray(model.components_, np.float64), model.kernel, **_kernel_params(model))
    return [g("MatMul", kernel, g.const(np.asarray(model.normalization_).T))]


def _additive_chi2(g: _Graph, model: Any, x: Any) -> list[Any]:
    interval = model.sample_interval
    if interval is None:
        interval = {1: 0.8, 2: 0.5, 3: 0.4}[model.sample_steps]
    positive = g("Greater", x, g.const([0.0]))
    safe = g("Where", positive, x, g.const([1.0]))
    zero = g.const([0.0])
    parts = [g("Where", positive, g("Sqrt", g("Mul", safe, g.const([interval]))), zero)]
    log_step = g("Mul", g("Log", safe), g.const([interval]))
    for j in range(1, model.sample_steps):
        factor = g("Sqrt", g("Mul", safe, g.const([2 * interval / math.cosh(math.pi * j * interval)])))
        angle = g("Mul", log_step, g.const([j]))
        parts += [g("Where", positive, g("Mul", factor, g(op, angle)), zero) for op in ("Cos", "Sin")]
    return [g("Concat", *parts, axis=1)]


def _missing_indicator(g: _Graph, model: Any, x: Any) -> list[Any]:
    columns = g("Gather", x, np.asarray(model.features_, dtype=np.int64), axis=1)
    if isinstance(model.missing_values, float) and math.isnan(model.missing_values):
        return [g("IsNaN", columns)]
    return [g("Equal", columns, g.const([model.missing_values]))]


def _bisecting_kmeans(g: _Graph, model: Any, x: Any) -> list[Any]:
    """predict() walks the bisection tree (nearer child, the left one on ties), as scikit-learn does."""
    offset = getattr(model, "_X_mean", 0.0)
    nodes, centres = [], []

    def collect(node: Any) -> None:
        if node.left is not None:
            nodes.append(node)
            centres.extend([node.left.center + offset, node.right.center + offset])
            collect(node.left)
            collect(node.right)

    collect(model._bisecting_tree)
    distances = g.sqdist(x, np.asarray(centres, dtype=np.float64)) if nodes else None

    def label(node: Any) -> Any:
        if node.left is None:
            return np.array(node.label, dtype=np.int64)
        i = 2 * nodes.index(node)
        left, right = (g("Gather", distances, np.array(k, np.int64), axis=1) for k in (i, i + 1))
        return g("Where", g("LessOrEqual", left, right), label(node.left), label(node.right))

    root = model._bisecting_tree
    labels = label(root) if nodes else g("Expand", np.array([root.label], np.int64), g.rows(x))
    return [labels, g("Sqrt", g.sqdist(x, np.asarray(model.cluster_centers_, np.float64)))]


def _factor_analysis(g: _Graph, model: Any, x: Any) -> list[Any]:
    weighted = model.components_ / model.noise_variance_
    cov_z = np.linalg.inv(np.eye(len(model.components_)) + weighted @ model.components_.T)
    return [g.linear(x, weighted.T @ cov_z, mean=model.mean_)]


def _fast_ica(g: _Graph, model: Any, x: Any) -> list[Any]:
    return [g.linear(x, model.components_.T, mean=model.mean_ if model.whiten else None)]


def _sparse_pca(g: _Graph, model: Any, x: Any) -> list[Any]:
    c = np.asarray(model.components_, dtype=np.float64)
    return [g.linear(x, c.T @ np.linalg.inv(c @ c.T + model.ridge_alpha * np.eye(len(c))), mean=model.mean_)]


def _rbf_sampler(g: _Graph, model: Any, x: Any) -> list[Any]:
    projection = g.linear(x, model.random_weights_, bias=model.random_offset_)
    return [g("Mul", g("Cos", projection), g.const([(2.0 / model.n_components) ** 0.5]))]


def _skewed_chi2(g: _Graph, model: Any, x: Any) -> list[Any]:
    logged = g("Log", g("Add", x, g.const([model.skewedness])))
    projection = g.linear(logged, model.random_weights_, bias=model.random_offset_)
    return [g("Mul", g("Cos", projection), g.const([math.sqrt(2.0) / math.sqrt(model.n_components)]))]


def _bernoulli_rbm(g: _Graph, model: Any, x: Any) -> list[Any]:
    return [g("Sigmoid", g.linear(x, model.components_.T, bias=model.intercept_hidden_))]


# -- output shapes and registration -------------------------------------------------------------
def _width(model: Any) -> int:
    name = type(model).__name__
    if name == "AdditiveChi2Sampler":
        return int(model.n_features_in_ * (2 * model.sample_steps - 1))
    if name == "MissingIndicator":
        return len(model.features_)
    if name == "KernelRidge":
        return int(np.asarray(model.dual_coef_).reshape(len(model.X_fit_), -1).shape[1])
    if name == "DummyRegressor":
        return int(np.asarray(model.constant_).size)
    if hasattr(model, "random_weights_"):
        return int(model.random_weights_.shape[1])
    return int(np.asarray(model.components_).shape[0])


def _shapes(kind: str) -> Callable[[Any], None]:
    def calculate(operator: Any) -> None:
        from skl2onnx.common.data_types import BooleanTensorType, Int64TensorType
        from skl2onnx.common.shape_calculator import calculate_linear_classifier_output_shapes

        model, first = operator.raw_operator, operator.inputs[0]
        n, float_type = first.get_first_dimension(), first.type.__class__
        if kind == "classifier":
            calculate_linear_classifier_output_shapes(operator)
        elif kind == "cluster":
            operator.outputs[0].type = Int64TensorType([n])
            operator.outputs[1].type = float_type([n, len(model.cluster_centers_)])
        elif type(model).__name__ == "MissingIndicator":
            operator.outputs[0].type = BooleanTensorType([n, _width(model)])
        else:
            operator.outputs[0].type = float_type([n, _width(model)])

    return calculate


def _converter(build: Callable[[_Graph, Any, Any], list[Any]]) -> Callable[[Any, Any, Any], None]:
    def convert(scope: Any, operator: Any, container: Any) -> None:
        from skl2onnx.common.data_types import guess_numpy_type

        x = operator.inputs[0]
        g = _Graph(container.target_opset, guess_numpy_type(x.type))
        for graph, output in zip(build(g, operator.raw_operator, x), operator.outputs, strict=True):
            g("Identity", graph, output_names=[output]).add_to(scope, container)

    return convert


# (module, class) -> (kind, graph builder)
_CONVERTERS: dict[tuple[str, str], tuple[str, Callable[[_Graph, Any, Any], list[Any]]]] = {
    ("sklearn.dummy", "DummyClassifier"): ("classifier", _dummy_classifier),
    ("sklearn.dummy", "DummyRegressor"): ("regressor", _dummy_regressor),
    ("sklearn.neighbors", "NearestCentroid"): ("classifier", _nearest_centroid),
    ("sklearn.kernel_ridge", "KernelRidge"): ("regressor", _kernel_ridge),
    ("sklearn.kernel_approximation", "Nystroem"): ("transformer", _nystroem),
    ("sklearn.kernel_approximation", "AdditiveChi2Sampler"): ("transformer", _additive_chi2),
    ("sklearn.kernel_approximation", "RBFSampler"): ("transformer", _rbf_sampler),
    ("sklearn.kernel_approximation", "SkewedChi2Sampler"): ("transformer", _skewed_chi2),
    ("sklearn.impute", "MissingIndicator"): ("transformer", _missing_indicator),
    ("sklearn.cluster", "BisectingKMeans"): ("cluster", _bisecting_kmeans),
    ("sklearn.decomposition", "FactorAnalysis"): ("transformer", _factor_analysis),
    ("sklearn.decomposition", "FastICA"): ("transformer", _fast_ica),
    ("sklearn.decomposition", "SparsePCA"): ("transformer", _sparse_pca),
    ("sklearn.decomposition", "MiniBatchSparsePCA"): ("transformer", _sparse_pca),
    ("sklearn.neural_network", "BernoulliRBM"): ("transformer", _bernoulli_rbm),
}


# What skl2onnx's classifier parser may pass to any classifier's converter.
_CLASSIFIER_OPTIONS = {"nocl": [True, False], "zipmap": [True, False, "columns"], "output_class_labels": [False, True]}


_REGISTERED: list[str] = []


def added() -> list[str]:
    """The estimators onnxbridge registered its converters for (class names), after :func:`register`."""
    return list(_REGISTERED)


@functools.cache
def register() -> None:
    """Register every converter above with skl2onnx, unless skl2onnx has its own by then."""
    import importlib

    from skl2onnx import update_registered_converter
    from skl2onnx._supported_operators import sklearn_operator_name_map

    for (module, name), (kind, build) in _CONVERTERS.items():
        cls = getattr(importlib.import_module(module), name)
        if cls in sklearn_operator_name_map:
            continue  # a newer skl2onnx converts it itself
        options = _CLASSIFIER_OPTIONS if kind == "classifier" else None
        update_registered_converter(cls, f"OnnxBridge{name}", _shapes(kind), _converter(build), options=options)
        _REGISTERED.append(name)
    _sklearn_hist_gbt.register(_Graph)
