"""Artifacts and 10,000-row data shared by the Ray and Spark tests; each artifact is exported once per process."""

from __future__ import annotations

import functools

import numpy as np

import onnxbridge as ob

ROWS = 10_000


def digits_rows() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled digits, repeated to 10,000 rows: flat features and 1x8x8 images."""
    from sklearn.datasets import load_digits

    data = load_digits()
    flat = np.resize(data.data.astype(np.float32), (ROWS, 64))
    return flat, (flat / 16.0).reshape(ROWS, 1, 8, 8).astype(np.float32)


@functools.cache
def forest() -> ob.Artifact:
    from sklearn.datasets import load_digits
    from sklearn.ensemble import RandomForestClassifier

    x, y = load_digits(return_X_y=True)
    return ob.export(RandomForestClassifier(n_estimators=30, random_state=0).fit(x, y), x[:4])


@functools.cache
def cnn() -> ob.Artifact:
    import torch

    from tests import models

    torch.manual_seed(0)
    return ob.export(models.DigitsCNN().eval(), torch.rand(1, 1, 8, 8), dynamic_axes="batch")
