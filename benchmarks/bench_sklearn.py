"""Classic ML benchmark: onnxbridge sessions vs the libraries' own predict, and where a forest's time goes.

Run with ``make bench`` (or ``python benchmarks/bench_sklearn.py``). Ratios of two things measured
side by side in this process, medians over interleaved rounds, at one row and at 1000 rows of
digits (64 features, 10 classes). Both sides use one thread: onnxruntime with ``threads=1`` and
spinning off, scikit-learn with ``n_jobs=1``, LightGBM ``n_jobs=1``, XGBoost ``nthread=1``. Not
part of the tests.

The second table splits a 100-tree random forest's time at 1000 rows into its parts: the
onnxbridge ``Session`` wrapper against a bare onnxruntime session, the float64 -> float32 cast,
the label output next to the probabilities, ``precision="float64"``, and onnxruntime's default
thread pool (two threads that spin) against one thread.
"""

from __future__ import annotations

import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
import onnxruntime as ort
import sklearn
from _timing import compare, table
from sklearn.datasets import load_diabetes, load_digits
from sklearn.decomposition import PCA
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier, RandomForestRegressor
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import onnxbridge as ob

warnings.filterwarnings("ignore")


def _models() -> dict[str, Any]:
    models: dict[str, Any] = {
        "StandardScaler+PCA+LogisticRegression": make_pipeline(
            StandardScaler(), PCA(20, random_state=0), LogisticRegression(max_iter=2000)
        ),
        "RandomForest (100 trees)": RandomForestClassifier(n_estimators=100, random_state=0, n_jobs=1),
        "HistGradientBoosting (100 iterations)": HistGradientBoostingClassifier(max_iter=100, random_state=0),
    }
    try:
        import lightgbm

        models["LightGBM (100 trees)"] = lightgbm.LGBMClassifier(n_estimators=100, n_jobs=1, verbose=-1)
    except ImportError:
        print("LightGBM not installed: its rows are left out")
    try:
        import xgboost

        models["XGBoost (100 trees)"] = xgboost.XGBClassifier(n_estimators=100, nthread=1)
    except ImportError:
        print("XGBoost not installed: its rows are left out")
    return models


def _one_thread(threads: int | None = 1) -> ort.SessionOptions:
    options = ort.SessionOptions()
    if threads == 1:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def side_by_side(x: np.ndarray, y: np.ndarray, big: np.ndarray) -> list[list[str]]:
    rows = []
    for name, model in _models().items():
        model.fit(x, y)
        sess = ob.export(model, x[:8]).session(providers=["cpu"], threads=1, options=_one_thread())
        for n, batch, calls in ((1, x[:1], 200), (1000, big, 10)):
            result = compare(
                lambda m=model, b=batch: m.predict_proba(b),
                lambda s=sess, b=batch: s.run(b),
                rounds=15,
                calls=calls,
            )
            rows.append(
                [
                    name,
                    str(n),
                    f"{result.a_seconds * 1e6:.0f} us",
                    f"{result.b_seconds * 1e6:.0f} us",
                    f"{result.b_seconds / result.a_seconds:.2f}x",
                    f"{result.ratio:.1f}x",
                ]
            )
    return rows


def forest_parts(x: np.ndarray, y: np.ndarray, big: np.ndarray) -> list[list[str]]:
    """Each variant of running the forest at 1000 rows, against predict_proba, side by side."""
    forest = RandomForestClassifier(n_estimators=100, random_state=0, n_jobs=1).fit(x, y)
    art = ob.export(forest, x[:8])
    bare = ort.InferenceSession(art.model.SerializeToString(), _bare_options(), providers=["CPUExecutionProvider"])
    big32 = big.astype(np.float32)
    wrapped = art.session(providers=["cpu"], threads=1, options=_one_thread())
    double = ob.export(forest, x[:8], precision="float64").session(providers=["cpu"], threads=1, options=_one_thread())
    default_pool = art.session(providers=["cpu"])
    variants: dict[str, Callable[[], object]] = {
        "onnxbridge session, float64 rows (cast inside)": lambda: wrapped.run(big),
        "bare onnxruntime session, float32 rows": lambda: bare.run(None, {"input": big32}),
        "bare session, float64 rows cast first": lambda: bare.run(None, {"input": big.astype(np.float32)}),
        "bare session, probabilities output only": lambda: bare.run(["probabilities"], {"input": big32}),
        "precision='float64' export (double thresholds)": lambda: double.run(big),
        "onnxruntime's default thread pool (2 threads, spinning)": lambda: default_pool.run(big),
    }
    rows = []
    for label, run in variants.items():
        result = compare(lambda: forest.predict_proba(big), run, rounds=11, calls=5)
        rows.append([label, f"{result.b_seconds * 1e3:.2f} ms", f"{result.b_seconds / result.a_seconds:.2f}x"])
    return rows


def operator_version(big_rows: int = 1000) -> list[list[str]]:
    """A forest regressor as ``TreeEnsembleRegressor`` (what skl2onnx writes) vs opset 5's ``TreeEnsemble``.

    A regressor, because ``TreeEnsemble`` gives each leaf one target: a 10-class forest would
    need its trees copied per class, which is not the same model to time.
    """
    x, y = load_diabetes(return_X_y=True)
    forest = RandomForestRegressor(n_estimators=100, random_state=0, n_jobs=1).fit(x, y)
    old = ob.export(forest, x[:8]).model
    new = _as_tree_ensemble_v5(old)
    rows32 = x[np.random.default_rng(0).integers(0, len(x), big_rows)].astype(np.float32)
    sessions = [
        ort.InferenceSession(m.SerializeToString(), _bare_options(), providers=["CPUExecutionProvider"])
        for m in (old, new)
    ]
    outs = [s.run(None, {"input": rows32})[0].ravel() for s in sessions]
    np.testing.assert_allclose(outs[1], outs[0], rtol=1e-5, atol=1e-3)  # the same model, or no figure
    result = compare(
        lambda: sessions[0].run(None, {"input": rows32}),
        lambda: sessions[1].run(None, {"input": rows32}),
        rounds=11,
        calls=5,
    )
    return [
        ["TreeEnsembleRegressor (ai.onnx.ml 3)", f"{result.a_seconds * 1e3:.2f} ms", "1.00x"],
        [
            "TreeEnsemble (ai.onnx.ml 5)",
            f"{result.b_seconds * 1e3:.2f} ms",
            f"{result.b_seconds / result.a_seconds:.2f}x",
        ],
    ]


_MODES = {"BRANCH_LEQ": 0, "BRANCH_LT": 1, "BRANCH_GTE": 2, "BRANCH_GT": 3, "BRANCH_EQ": 4, "BRANCH_NEQ": 5}


def _as_tree_ensemble_v5(proto: Any) -> Any:
    """The same trees, written as ai.onnx.ml opset 5's ``TreeEnsemble`` (one target, no base value)."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.ModelProto()
    model.CopyFrom(proto)
    node = next(n for n in model.graph.node if n.op_type == "TreeEnsembleRegressor")
    a = {attr.name: helper.get_attribute_value(attr) for attr in node.attribute}
    modes = [m.decode() for m in a["nodes_modes"]]
    keys = list(zip(a["nodes_treeids"], a["nodes_nodeids"], strict=True))
    interior = {key: k for k, key in enumerate(key for key, mode in zip(keys, modes, strict=True) if mode != "LEAF")}
    leaves = {key: i for i, key in enumerate(zip(a["target_treeids"], a["target_nodeids"], strict=True))}
    inner = [i for i, mode in enumerate(modes) if mode != "LEAF"]
    true_ids, true_leafs, false_ids, false_leafs = [], [], [], []
    for i in inner:
        for child, ids, leafs in (
            (a["nodes_truenodeids"][i], true_ids, true_leafs),
            (a["nodes_falsenodeids"][i], false_ids, false_leafs),
        ):
            key = (a["nodes_treeids"][i], child)
            ids.append(interior[key] if key in interior else leaves[key])
            leafs.append(0 if key in interior else 1)
    roots = [interior[(tree, 0)] for tree in sorted(set(a["nodes_treeids"]))]
    v5 = helper.make_node(
        "TreeEnsemble",
        list(node.input),
        list(node.output),
        domain="ai.onnx.ml",
        aggregate_function={"SUM": 1, "AVERAGE": 0}[a.get("aggregate_function", b"SUM").decode()],
        n_targets=a["n_targets"],
        post_transform=0,
        tree_roots=roots,
        nodes_featureids=[a["nodes_featureids"][i] for i in inner],
        nodes_splits=numpy_helper.from_array(np.array([a["nodes_values"][i] for i in inner], np.float32)),
        nodes_modes=numpy_helper.from_array(np.array([_MODES[modes[i]] for i in inner], np.uint8)),
        nodes_truenodeids=true_ids,
        nodes_trueleafs=true_leafs,
        nodes_falsenodeids=false_ids,
        nodes_falseleafs=false_leafs,
        leaf_targetids=list(a["target_ids"]),
        leaf_weights=numpy_helper.from_array(np.array(a["target_weights"], np.float32)),
    )
    assert not any(a.get("base_values", [])), "a base value would need an Add after the ensemble"
    nodes = [v5 if n is node else n for n in model.graph.node]
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    for entry in model.opset_import:
        if entry.domain == "ai.onnx.ml":
            entry.version = 5
    return model


def _bare_options() -> ort.SessionOptions:
    options = _one_thread()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return options


def main() -> None:
    """Print the classic-ML benchmark tables."""
    x, y = load_digits(return_X_y=True)
    big = x[np.random.default_rng(0).integers(0, len(x), 1000)]
    print(
        "## onnxbridge session (1 onnxruntime thread) vs the model's own predict_proba (1 thread)\n\n"
        "time ratio = session time / predict_proba time (goal for the forest at 1000 rows: <= 0.67x); "
        "speed-up = median of per-round predict_proba / session.\n"
    )
    print(
        table(
            ["model", "rows", "predict_proba", "onnxbridge session", "time ratio", "speed-up"], side_by_side(x, y, big)
        )
    )
    print("\n## Where a 100-tree random forest's time goes at 1000 rows (each against predict_proba)\n")
    print(table(["variant", "time", "time ratio"], forest_parts(x, y, big)))
    print("\n## Operator version: a 100-tree forest regressor (diabetes), 1000 rows, 1 thread\n")
    print(table(["operator", "time", "time ratio"], operator_version()))
    print(f"\nscikit-learn {sklearn.__version__}, onnxruntime {ort.__version__}, measured {time.strftime('%Y-%m-%d')}")


if __name__ == "__main__":
    main()
