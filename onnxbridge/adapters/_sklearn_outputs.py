"""What each output of a scikit-learn export is, and which of the estimator's own methods it matches.

skl2onnx names a classifier's second output ``probabilities`` whatever it holds; for classifiers
without ``predict_proba`` (SVC, LinearSVC, RidgeClassifier, SGDClassifier with the hinge loss,
Perceptron...) it holds ``decision_function`` values. onnxbridge calls that output ``scores``,
gives binary classifiers the one column ``decision_function`` returns, and compares every output
with the method it stands for: that is what validation means for a tabular model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from onnxbridge.core._errors import ExportError, first_line
from onnxbridge.core._types import Feeds
from onnxbridge.graph import _graph

# Which column of skl2onnx's two-column binary scores is decision_function (default: the last).
_BINARY_SCORE_COLUMN = {"SklearnSVC": 0}


def final_estimator(model: Any) -> Any:
    """The last step of a pipeline (pipelines nest), or the model itself."""
    while hasattr(model, "steps"):
        model = model.steps[-1][1]
    return model


def converter_alias(estimator: Any) -> str | None:
    from skl2onnx._supported_operators import sklearn_operator_name_map

    return sklearn_operator_name_map.get(type(estimator))


def allowed_options(estimator: Any) -> dict[str, Any]:
    """The options the estimator's registered skl2onnx converter takes (``{}`` when none or unknown)."""
    from skl2onnx.common._registration import get_converter

    alias = converter_alias(estimator)
    if alias is None:
        return {}
    try:
        converter = get_converter(alias)
    except ValueError:
        return {}
    return dict(getattr(converter, "get_allowed_options", lambda: None)() or {})


def converter_options(model: Any, user: dict[Any, Any]) -> dict[Any, Any]:
    """The user's options, plus ``zipmap=False`` where the final estimator's converter takes it.

    Converters that take no ``zipmap`` (LinearSVC's, RFE's) refuse it with a ``NameError``, so
    the option is only passed to a converter that lists it.
    """
    options = {key: dict(value) for key, value in user.items()}
    final = final_estimator(model)
    if "zipmap" in allowed_options(final):
        options.setdefault(id(final), {}).setdefault("zipmap", False)
    return options


@dataclass(frozen=True)
class Plan:
    """What the outputs are: ``kind`` and, per output, the estimator method it equals."""

    kind: str  # "classifier", "regressor", "transformer", "cluster", or "" (nothing to compare with)
    methods: tuple[str, ...]


def class_labels(model: Any, outputs: Plan, names: list[str]) -> dict[str, list[str]] | None:
    """Class names of the outputs that have one column per class (probabilities, multiclass scores)."""
    classes = getattr(model, "classes_", None)
    if outputs.kind != "classifier" or classes is None or isinstance(classes, list):
        return None  # multi-output classifiers keep a list of class arrays
    labels = [str(c) for c in np.asarray(classes).ravel()]
    per_class = {"predict_proba"} | ({"decision_function"} if len(labels) > 2 else set())
    found = {name: labels for name, method in zip(names, outputs.methods, strict=True) if method in per_class}
    return found or None


def plan(model: Any, n_outputs: int) -> Plan:
    """Which method each of the ``n_outputs`` outputs stands for."""
    from sklearn.base import is_classifier, is_clusterer, is_regressor
    from sklearn.feature_selection import SelectorMixin

    final = final_estimator(model)
    if isinstance(final, SelectorMixin) or (hasattr(model, "transform") and not hasattr(model, "predict")):
        return Plan("transformer", ("transform",)) if n_outputs == 1 else Plan("", ())
    if is_classifier(final):
        second = "predict_proba" if hasattr(model, "predict_proba") else "decision_function"
        return Plan("classifier", ("predict", second)[:n_outputs]) if n_outputs <= 2 else Plan("", ())
    if is_clusterer(final):
        methods = ("predict", "transform") if hasattr(model, "transform") else ("predict",)
        return Plan("cluster", methods[:n_outputs]) if n_outputs <= len(methods) else Plan("", ())
    if is_regressor(final) and n_outputs == 1:
        return Plan("regressor", ("predict",))
    return Plan("", ())


def name_scores(proto: Any, model: Any, outputs: Plan) -> None:
    """Call decision-function outputs ``scores``; binary ones get decision_function's one column."""
    from onnx import helper

    if outputs.methods[1:2] != ("decision_function",):
        return
    graph = proto.graph
    current = graph.output[1].name
    classes = getattr(final_estimator(model), "classes_", None)
    if classes is None or len(classes) != 2:
        _graph.rename_values(graph, {current: "scores"})
        return
    column = _BINARY_SCORE_COLUMN.get(converter_alias(final_estimator(model)) or "", -1)
    index = helper.make_tensor("scores_column", 7, [], [column])  # int64 scalar
    graph.initializer.append(index)
    graph.node.append(helper.make_node("Gather", [current, "scores_column"], ["scores"], axis=1, name="scores"))
    dtype = graph.output[1].type.tensor_type.elem_type
    graph.output.remove(graph.output[1])
    graph.output.insert(1, helper.make_tensor_value_info("scores", dtype, ["batch"]))


class Reference:
    """The estimator's own methods on the inputs of a run, shaped like the ONNX outputs."""

    def __init__(self, model: Any, source_input: Any, proto: Any, outputs: Plan) -> None:
        self.model, self.source_input, self.outputs = model, source_input, outputs
        # The values of the run, in the dtype the estimator computes in (KMeans refuses a mix).
        centres = getattr(final_estimator(model), "cluster_centers_", None)
        self.float_dtype = centres.dtype if isinstance(centres, np.ndarray) else np.dtype(np.float64)
        self.names = [o.name for o in proto.graph.output]
        self.ranks = [len(o.type.tensor_type.shape.dim) for o in proto.graph.output]

    def __call__(self, feeds: Feeds) -> Feeds:
        x = self.source_input(feeds)
        if isinstance(x, np.ndarray) and x.dtype.kind == "f":
            x = x.astype(self.float_dtype)
        values = []
        for method in self.outputs.methods:
            out = getattr(self.model, method)(x)
            values.append(out.toarray() if hasattr(out, "toarray") else np.asarray(out))
        rows = len(next(iter(feeds.values())))
        # (N,) where the graph gives (N, 1); SparsePCA gives (K,) for one row where the graph gives (1, K).
        shaped = [
            v.reshape(rows, -1) if v.ndim == 1 and r == 2 else v for v, r in zip(values, self.ranks, strict=False)
        ]
        return dict(zip(self.names, shaped, strict=False))

    def on_sample(self, sample: Feeds) -> Feeds:
        """The reference outputs of the export sample; a source that fails on it is an ExportError."""
        try:
            return self(sample)
        except Exception as err:
            methods = ", ".join(self.outputs.methods)
            raise ExportError(
                f"The {type(self.model).__name__}'s own {methods} failed on the export sample, as onnxbridge "
                f"passed it ({type(err).__name__}: {first_line(err)}). Check that the sample is rows like the "
                "ones used for fit(); if the model needs exact float64 values (e.g. categories that are "
                "floats), export with precision='float64'."
            ) from err
