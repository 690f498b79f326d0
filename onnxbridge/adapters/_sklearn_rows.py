"""Rows a scikit-learn export is validated on besides its sample: more of them, and the ones that tell.

An export sample is often a row or two. A clustering model is wrong only near a boundary between
clusters, a neighbours model only where the training set holds near-equal distances: a couple of
rows rarely land there. Validation of a classic model therefore also compares:

* **resampled rows**: each column drawn from the values that column holds in the sample (or in the
  training rows the model stores), so every value is one the model has seen in its place, even a
  category code, in combinations the sample does not have;
* **training rows**, where the model keeps them (neighbours models' ``_fit_X``): what a
  neighbours model answers depends on them, ties included. When some of them have equidistant
  neighbours at the cut, which of the tied rows counts is up to each library's sort: the case's
  name says how many (``training rows (55 of 150 tied)``), and :func:`tie_note` says what it means,
  so that a failure there reads as what it is;
* **rows between cluster centres** (``cluster_centers_``): 45% and 55% of the way from each centre
  to each other one, on both sides of the boundary and off the exact tie at its middle.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

__all__ = ["tie_note", "validation_rows"]

RESAMPLED = 64  # rows drawn column by column
MOST_TRAINING_ROWS = 1000
MOST_CENTRE_PAIRS = 45  # 10 centres


def validation_rows(model: Any, sample: Any) -> dict[str, np.ndarray]:
    """Named 2-D arrays of rows to validate ``model`` on (empty unless its input is one numeric matrix)."""
    matrix = np.asarray(sample) if sample is not None else None
    if matrix is None or matrix.ndim != 2 or matrix.dtype.kind not in "biuf" or not len(matrix):
        return {}
    rows: dict[str, np.ndarray] = {}
    stored = _training_rows(model, matrix.shape[1])
    pool = stored if stored is not None and len(stored) > len(matrix) else matrix
    if len(pool) > 1:
        rng = np.random.default_rng(0)
        rows["resampled rows"] = np.stack(
            [pool[rng.integers(0, len(pool), RESAMPLED), j] for j in range(pool.shape[1])], axis=1
        ).astype(matrix.dtype, copy=False)
    if stored is not None:
        tied = _tied_neighbours(model, stored)
        rows["training rows" + (f" ({tied} of {len(stored)} tied)" if tied else "")] = stored
    centres = getattr(model, "cluster_centers_", None)
    if centres is not None and np.ndim(centres) == 2 and np.shape(centres)[1] == matrix.shape[1] > 0:
        pairs = list(itertools.combinations(range(len(centres)), 2))[:MOST_CENTRE_PAIRS]
        if pairs:
            centres = np.asarray(centres, dtype=np.float64)
            between = [centres[a] + t * (centres[b] - centres[a]) for a, b in pairs for t in (0.45, 0.55)]
            rows["between cluster centres"] = np.asarray(between)
    return rows


def _training_rows(model: Any, features: int) -> np.ndarray | None:
    """The training rows a neighbours model keeps, in its input space (not a pipeline's inner step)."""
    stored = getattr(model, "_fit_X", None)
    if stored is None or not isinstance(stored, np.ndarray) or stored.ndim != 2 or stored.shape[1] != features:
        return None  # sparse, precomputed distances, or absent
    if stored.dtype.kind not in "biuf":
        return None
    return stored[:MOST_TRAINING_ROWS]


def _tied_neighbours(model: Any, rows: np.ndarray) -> int:
    """How many ``rows`` have equal distances on both sides of the model's neighbour count (or the next)."""
    count = getattr(model, "n_neighbors", None)
    if not isinstance(count, int) or not hasattr(model, "kneighbors"):
        return 0
    reach = min(count + 2, len(getattr(model, "_fit_X", rows)))
    try:
        distances = np.asarray(model.kneighbors(rows, n_neighbors=reach, return_distance=True)[0])
    except Exception:  # noqa: BLE001 - a model whose kneighbors takes other arguments: no count to give
        return 0
    cuts = [c for c in (count, count + 1) if c < reach]
    tied = np.zeros(len(rows), dtype=bool)
    for cut in cuts:
        tied |= np.isclose(distances[:, cut - 1], distances[:, cut], rtol=1e-6, atol=1e-9)
    return int(tied.sum())


def tie_note(rows: dict[str, np.ndarray]) -> str:
    """What a ``training rows (N of M tied)`` case means, for the export's notes ('' without ties)."""
    tied = [name for name in rows if name.startswith("training rows (")]
    if not tied:
        return ""
    return (
        f"{tied[0].removeprefix('training rows (').removesuffix(')')} training rows have equidistant neighbours at "
        "the model's neighbour count: which of the tied rows is taken is up to each library's sort, so scikit-learn "
        "and onnxruntime may answer differently on them (and on other rows with such ties); validation fails there, "
        "as the outputs do differ, and the difference is a tie, not an error in the graph"
    )
