"""Classic ML benchmark: onnxbridge session vs the estimator's own predict.

Run with ``make bench`` (or ``python benchmarks/bench_sklearn.py``). Ratios of two
things measured side by side in this process, medians over interleaved rounds, at one
row and at 1000 rows. Not part of the tests.
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
import onnxruntime as ort
import sklearn
from _timing import compare, table
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import onnxbridge as ob

warnings.filterwarnings("ignore")


def main() -> None:
    """Print the classic-ML benchmark table."""
    x, y = load_digits(return_X_y=True)
    models = {
        "StandardScaler+PCA+LogisticRegression": make_pipeline(
            StandardScaler(), PCA(20, random_state=0), LogisticRegression(max_iter=2000)
        ),
        "RandomForest (100 trees)": RandomForestClassifier(n_estimators=100, random_state=0, n_jobs=1),
    }
    rows = []
    rng = np.random.default_rng(0)
    big = x[rng.integers(0, len(x), 1000)]
    for name, model in models.items():
        model.fit(x, y)
        art = ob.export(model, x[:8])
        options = ort.SessionOptions()
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        sess = art.session(providers=["cpu"], threads=1, options=options)
        for rows_n, batch, calls in ((1, x[:1], 200), (1000, big, 10)):
            result = compare(
                lambda m=model, b=batch: m.predict_proba(b),
                lambda s=sess, b=batch: s.run(b),
                rounds=15,
                calls=calls,
            )
            rows.append(
                [
                    name,
                    str(rows_n),
                    f"{result.a_seconds * 1e6:.0f} us",
                    f"{result.b_seconds * 1e6:.0f} us",
                    f"{result.ratio:.1f}x",
                ]
            )
    print(
        "## onnxbridge session (1 onnxruntime thread) vs predict_proba (n_jobs=1) "
        "(targets: >= 10x / 50x at 1 row, >= 1.5x at 1000)\n"
    )
    print(table(["model", "rows", "predict_proba", "onnxbridge session", "speed-up"], rows))
    print(f"\nscikit-learn {sklearn.__version__}, onnxruntime {ort.__version__}, measured {time.strftime('%Y-%m-%d')}")


if __name__ == "__main__":
    main()
