"""Class labels decided by a tie: a label that differs where the model's own scores for it tie.

A classifier's label is the argmax of its probabilities (or decision scores). Where the two
largest are equal up to float noise (a forest's votes split evenly, a row halfway between two
classes), either label is the model's answer, and which one comes out depends on the order the
runtime sums in. A label output that differs only on such rows, while the scores themselves
match, is noise, not an error in the graph.
"""

from __future__ import annotations

import numpy as np

from onnxbridge.checks._validation_report import float32_noise
from onnxbridge.core._types import Feeds

__all__ = ["decided_by_ties"]

SCORES = ("probabilities", "scores")  # the outputs a label is the argmax of (scikit-learn's names)


def decided_by_ties(name: str, got: Feeds, ref: Feeds, rtol: float, atol: float) -> bool:
    """Whether label output ``name`` differs from ``ref`` only on rows whose reference scores tie at the top."""
    if name != "label" or name not in got:
        return False
    scores = next((s for s in SCORES if s in ref and s in got), None)
    if scores is None:
        return False
    labels, want = np.asarray(got[name]), np.asarray(ref[name])
    table = np.asarray(ref[scores], dtype=np.float64)
    table = table.reshape(len(table), -1) if table.ndim else table
    if labels.shape != want.shape or table.ndim != 2 or table.shape[0] != len(want):
        return False
    if not np.allclose(
        np.asarray(got[scores], dtype=np.float64).reshape(table.shape), table, rtol, atol + float32_noise(table)
    ):
        return False  # the scores differ: the label's difference is not a tie's
    mismatch = np.any(labels.reshape(len(labels), -1) != want.reshape(len(want), -1), axis=1)
    if not mismatch.any():
        return False
    if table.shape[1] == 1:  # a binary decision score: the tie is at 0
        return bool((np.abs(table[mismatch, 0]) <= atol + float32_noise(table)).all())
    top = np.sort(table[mismatch], axis=1)[:, -2:]
    return bool((top[:, 1] - top[:, 0] <= atol + rtol * np.abs(top[:, 1]) + float32_noise(table)).all())
