"""HistGradientBoosting with categorical features, which skl2onnx 1.20 converts into wrong answers.

scikit-learn encodes the categorical columns first (an ``OrdinalEncoder`` in ``_preprocessor``
that also moves them to the front) and splits them by category sets; skl2onnx reads the trees
as if the columns were untouched and every split numeric. The converter here writes the model
as it predicts: the columns reordered, each category replaced by its code (unknown ones become
missing, as scikit-learn does), then every tree in one ``ai.onnx.ml`` opset-5 ``TreeEnsemble``
whose category splits are ``BRANCH_MEMBER`` nodes, plus the baseline and the loss's link.
Models without categorical features keep skl2onnx's own converter.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np

_LEQ, _MEMBER = 0, 6


def uses_categories(model: Any) -> bool:
    categorical = getattr(model, "is_categorical_", None)
    return categorical is not None and bool(np.any(categorical))


def _categories_of(model: Any) -> list[np.ndarray]:
    encoder = model._preprocessor.named_transformers_["encoder"]
    return [np.asarray(c, dtype=np.float64) for c in encoder.categories_]


def _encoded(g: Any, model: Any, x: Any) -> Any:
    """The columns the trees read: categorical ones first, as category codes (unknown: NaN)."""
    categorical = np.flatnonzero(model.is_categorical_)
    numeric = np.flatnonzero(~np.asarray(model.is_categorical_))
    columns = []
    for index, categories in zip(categorical, _categories_of(model), strict=True):
        column = g("Gather", x, np.array([index], np.int64), axis=1)  # (N, 1)
        hits = g("Equal", column, g.const(categories[None, :]))  # (N, K)
        code = g("Cast", g("ArgMax", g("Cast", hits, to=6), axis=1, keepdims=1), to=g.onnx_dtype)
        known = g("Cast", g("ReduceMaxApi18", g("Cast", hits, to=6), axes=[1], keepdims=1), to=9)
        columns.append(g("Where", known, code, g.const([[np.nan]])))
    if len(numeric):
        columns.append(g("Gather", x, numeric.astype(np.int64), axis=1))
    return g("Concat", *columns, axis=1) if len(columns) > 1 else columns[0]


def _ensemble(g: Any, model: Any, encoded: Any) -> Any:
    """Every tree in one TreeEnsemble: raw scores (N, n_trees_per_iteration) before the baseline."""
    from onnx import numpy_helper

    attrs: dict[str, list[Any]] = {
        k: []
        for k in [
            "tree_roots",
            "feature",
            "split",
            "mode",
            "true",
            "true_leaf",
            "false",
            "false_leaf",
            "missing",
            "members",
            "leaf_target",
            "leaf_weight",
        ]
    }
    for iteration in model._predictors:
        for target, tree in enumerate(iteration):
            _add_tree(attrs, tree, target)
    dtype = g.dtype
    members = attrs["members"][:-1]  # sets are delimited by NaN: none after the last
    sets = {"membership_values": numpy_helper.from_array(np.array(members, dtype))} if members else {}
    return g(
        "TreeEnsemble",
        encoded,
        aggregate_function=1,
        n_targets=len(model._predictors[0]),
        post_transform=0,
        tree_roots=attrs["tree_roots"],
        nodes_featureids=attrs["feature"],
        nodes_splits=numpy_helper.from_array(np.array(attrs["split"], dtype)),
        nodes_modes=numpy_helper.from_array(np.array(attrs["mode"], np.uint8)),
        nodes_truenodeids=attrs["true"],
        nodes_trueleafs=attrs["true_leaf"],
        nodes_falsenodeids=attrs["false"],
        nodes_falseleafs=attrs["false_leaf"],
        nodes_missing_value_tracks_true=attrs["missing"],
        leaf_targetids=attrs["leaf_target"],
        leaf_weights=numpy_helper.from_array(np.array(attrs["leaf_weight"], dtype)),
        op_version=5,
        **sets,
    )


def _add_tree(attrs: dict[str, list[Any]], tree: Any, target: int) -> None:
    nodes = tree.nodes
    inner = {int(i): len(attrs["feature"]) + k for k, i in enumerate(np.flatnonzero(~nodes["is_leaf"].astype(bool)))}
    leaves = {int(i): len(attrs["leaf_weight"]) + k for k, i in enumerate(np.flatnonzero(nodes["is_leaf"]))}
    for i in sorted(leaves):
        attrs["leaf_target"].append(target)
        attrs["leaf_weight"].append(float(nodes["value"][i]))
    if not inner:  # a tree that is one leaf: one node whose branches both reach it
        attrs["tree_roots"].append(len(attrs["feature"]))
        for key, value in (("feature", 0), ("split", 0.0), ("mode", _LEQ), ("missing", 0)):
            attrs[key].append(value)
        for side in ("true", "false"):
            attrs[side].append(leaves[0])
            attrs[f"{side}_leaf"].append(1)
        return
    attrs["tree_roots"].append(inner[0])
    for i in sorted(inner):
        node = nodes[i]
        attrs["feature"].append(int(node["feature_idx"]))
        attrs["missing"].append(int(node["missing_go_to_left"]))
        if node["is_categorical"]:
            attrs["mode"].append(_MEMBER)
            attrs["split"].append(0.0)
            bits = tree.raw_left_cat_bitsets[node["bitset_idx"]]
            attrs["members"] += [float(v) for v in range(32 * len(bits)) if bits[v // 32] >> (v % 32) & 1]
            attrs["members"].append(np.nan)  # ends this node's set (the last one is dropped)
        else:
            attrs["mode"].append(_LEQ)
            attrs["split"].append(float(node["num_threshold"]))
        for side, child in (("true", int(node["left"])), ("false", int(node["right"]))):
            attrs[side].append(inner[child] if child in inner else leaves[child])
            attrs[f"{side}_leaf"].append(0 if child in inner else 1)


def build(g: Any, model: Any, x: Any, classifier: bool) -> list[Any]:
    """The outputs of a categorical HistGradientBoosting model: [label, probabilities] or [prediction]."""
    raw = g("Add", _ensemble(g, model, _encoded(g, model, x)), g.const(model._baseline_prediction))
    link = type(model._loss.link).__name__
    if not classifier:
        return [g("Exp", raw) if link == "LogLink" else raw]
    if link == "MultinomialLogit":
        proba = g("Softmax", raw, axis=1)
    else:
        positive = g("Sigmoid", raw)
        proba = g("Concat", g("Sub", g.const([[1.0]]), positive), positive, axis=1)
    return [g.pick(model.classes_, g("ArgMax", proba, axis=1, keepdims=0)), proba]


def supported_link(model: Any) -> bool:
    return type(model._loss.link).__name__ in ("IdentityLink", "LogLink", "LogitLink", "MultinomialLogit")


@functools.cache
def register(graph: Callable[[int, Any], Any]) -> None:
    """Route categorical HistGradientBoosting models to :func:`build`; the rest to skl2onnx's own."""
    from skl2onnx import update_registered_converter
    from skl2onnx._supported_operators import sklearn_operator_name_map
    from skl2onnx.common._registration import get_converter, get_shape_calculator
    from skl2onnx.common.data_types import guess_numpy_type
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    for cls, classifier in ((HistGradientBoostingClassifier, True), (HistGradientBoostingRegressor, False)):
        alias = sklearn_operator_name_map[cls]
        theirs, shapes = get_converter(alias), get_shape_calculator(alias)
        options = getattr(theirs, "get_allowed_options", lambda: None)()
        convert = _converter(graph, theirs, classifier, guess_numpy_type)
        update_registered_converter(cls, alias, shapes, convert, overwrite=True, options=options)


def _converter(graph: Callable[[int, Any], Any], theirs: Any, classifier: bool, numpy_type: Any) -> Any:
    def convert(scope: Any, operator: Any, container: Any) -> None:
        model = operator.raw_operator
        if not uses_categories(model):
            theirs(scope, operator, container)
            return
        x = operator.inputs[0]
        g = graph(container.target_opset, numpy_type(x.type))
        for out, output in zip(build(g, model, x, classifier), operator.outputs, strict=True):
            g("Identity", out, output_names=[output]).add_to(scope, container)

    return convert
