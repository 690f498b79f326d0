"""Every scikit-learn estimator, fitted with default parameters on bundled data.

The catalogue behind the scikit-learn sweep (``scripts/sklearn_sweep.py``, which writes the table
in docs/sklearn.md) and ``tests/test_sklearn_sweep.py``: classifiers, clusterers and transformers
on iris, regressors on diabetes. ``expected`` gives what each estimator's own methods return, in
the order onnxbridge exports its outputs; ``agrees`` compares an ONNX run with it on every row.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.base import is_classifier, is_clusterer, is_regressor
from sklearn.datasets import load_diabetes, load_iris
from sklearn.utils import all_estimators

KINDS = ("classifier", "regressor", "transformer", "cluster")
RTOL, ATOL = 1e-3, 1e-4


class NotFittable(Exception):
    """The estimator cannot be fitted with default parameters on a numeric matrix."""


@dataclass
class Fitted:
    name: str
    kind: str
    model: Any
    x: np.ndarray  # every row of the data set, float64


def _arguments() -> dict[str, dict[str, Any]]:
    """The simplest argument for estimators that need one (meta-estimators), else none."""
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.preprocessing import StandardScaler
    from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

    logistic = LogisticRegression(max_iter=1000)
    classifiers = [("logistic", logistic), ("tree", DecisionTreeClassifier(random_state=0))]
    regressors = [("linear", LinearRegression()), ("tree", DecisionTreeRegressor(random_state=0))]
    on_logistic = {"estimator": logistic}
    return {
        **dict.fromkeys(
            [
                "ClassifierChain",
                "FixedThresholdClassifier",
                "MultiOutputClassifier",
                "OneVsOneClassifier",
                "OneVsRestClassifier",
                "OutputCodeClassifier",
                "RFE",
                "RFECV",
                "SelectFromModel",
                "SequentialFeatureSelector",
                "TunedThresholdClassifierCV",
            ],
            on_logistic,
        ),
        "MultiOutputRegressor": {"estimator": LinearRegression()},
        "RegressorChain": {"estimator": LinearRegression()},
        "StackingClassifier": {"estimators": classifiers},
        "VotingClassifier": {"estimators": classifiers},
        "StackingRegressor": {"estimators": regressors},
        "VotingRegressor": {"estimators": regressors},
        "ColumnTransformer": {"transformers": [("scaled", StandardScaler(), [0, 1]), ("kept", "passthrough", [2, 3])]},
        "FeatureUnion": {"transformer_list": [("scaled", StandardScaler()), ("logs", StandardScaler(with_mean=False))]},
    }


def catalogue() -> list[tuple[str, Callable[[], Any]]]:
    """(name, factory) of every estimator scikit-learn lists: default parameters, plus the simplest
    sub-estimator for the meta-estimators that need one (a LogisticRegression, a LinearRegression)."""
    from sklearn.base import clone

    arguments = _arguments()
    found: list[tuple[str, Callable[[], Any]]] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, cls in all_estimators(type_filter=list(KINDS)):
            kwargs = arguments.get(name, {})
            try:
                cls(**kwargs)
            except TypeError:
                continue  # needs an argument no simple default fits (SparseCoder's dictionary)
            found.append(
                (name, lambda cls=cls, kwargs=kwargs: cls(**{k: clone(v, safe=False) for k, v in kwargs.items()}))
            )
    return found


def kind_of(model: Any) -> str:
    try:
        is_classifier(model)
    except AttributeError:  # tags that need a sub-estimator the defaults leave out
        mixins = {"ClassifierMixin": "classifier", "RegressorMixin": "regressor", "ClusterMixin": "cluster"}
        return next((k for c in type(model).__mro__ if (k := mixins.get(c.__name__))), "transformer")
    from sklearn.feature_selection import SelectorMixin

    if isinstance(model, SelectorMixin):  # RFE(LogisticRegression()) selects features: a transformer
        return "transformer"
    if is_classifier(model):
        return "classifier"
    if is_regressor(model):
        return "regressor"
    if is_clusterer(model):
        return "cluster"
    return "transformer"


def fit(name: str, make: Callable[[], Any]) -> Fitted:
    """Fit ``make()`` on iris (or diabetes for regressors); NotFittable says why it cannot be."""
    model = make()
    if "random_state" in model.get_params():
        model.set_params(random_state=0)
    kind = kind_of(model)
    x, y = (load_diabetes if kind == "regressor" else load_iris)(return_X_y=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            model.fit(x, y)
        except Exception as err:
            raise NotFittable(f"{type(err).__name__}: {str(err).splitlines()[0][:120]}") from err
    return Fitted(name, kind, model, x)


def expected(fitted: Fitted) -> list[np.ndarray]:
    """The estimator's own answers on every row, in onnxbridge's output order."""
    model, x = fitted.model, fitted.x
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if fitted.kind == "classifier":
            scores = model.predict_proba(x) if hasattr(model, "predict_proba") else model.decision_function(x)
            return [np.asarray(model.predict(x)), np.asarray(scores)]
        if fitted.kind == "regressor":
            return [np.asarray(model.predict(x))]
        if fitted.kind == "cluster":
            found = [np.asarray(model.predict(x))]
            if hasattr(model, "transform"):
                found.append(np.asarray(model.transform(x)))
            return found
        out = model.transform(x)
        return [np.asarray(out.toarray() if hasattr(out, "toarray") else out)]


def agrees(got: Sequence[Any], want: Sequence[np.ndarray], labels_only: bool = False) -> str:
    """'' when the outputs agree with the estimator on every row, else what differs."""
    if len(got) < len(want) if not labels_only else not got:
        return f"{len(got)} outputs, expected {len(want)}"
    checks: list[tuple[int, Callable[[np.ndarray, np.ndarray], str]]] = [(0, _first)]
    if not labels_only:
        checks += [(i, _values) for i in range(1, len(want))]
    for index, check in checks:
        problem = check(np.asarray(got[index]), np.asarray(want[index]))
        if problem:
            return f"output {index}: {problem}"
    return ""


def _first(got: np.ndarray, want: np.ndarray) -> str:
    if want.dtype.kind in "iubOU":
        got, want = got.reshape(want.shape) if got.size == want.size else got, want
        if got.shape != want.shape:
            return f"shape {got.shape}, expected {want.shape}"
        agree = float(np.mean(got.astype(want.dtype) == want)) if want.size else 1.0
        return "" if agree == 1.0 else f"labels agree on {agree:.1%} of rows"
    return _values(got, want)


def _values(got: np.ndarray, want: np.ndarray) -> str:
    if got.size != want.size:
        return f"shape {got.shape}, expected {want.shape}"
    got, want = got.reshape(want.shape).astype(np.float64), want.astype(np.float64)
    bad = ~np.isclose(got, want, rtol=RTOL, atol=ATOL)
    if bad.any():
        worst = float(np.max(np.abs(got - want)))
        return f"{bad.mean():.1%} of values outside rtol={RTOL:g}, atol={ATOL:g} (max diff {worst:.2g})"
    return ""
