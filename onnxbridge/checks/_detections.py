"""Detections compared as what they are: a set of boxes per image, matched by label, score and box.

A detector's outputs are ordered by score, and two detections of equal score may come out in
either order from two runtimes; comparing position by position would call that a failure.
Before the outputs are compared, each image's detections from onnxruntime are put in the
reference's order, each matched to one reference detection of the same label whose score and
box are within tolerance (float summation noise included). Counts must be equal and every
detection matched; otherwise the outputs are left as they are and the comparison fails.
"""

from __future__ import annotations

import re

import numpy as np

from onnxbridge.checks._validation_report import NOISE_ULPS
from onnxbridge.core._types import Feeds

__all__ = ["TASK", "align"]

TASK = "object-detection"  # an export's ``task`` property whose outputs are detections per image

_PARTS = ("boxes", "scores", "labels")
_NAME = re.compile(r"^([a-z_]+?)(_\d+)?$")  # boxes, boxes_0, keypoints_scores_1, ...


def align(got: Feeds, ref: Feeds, rtol: float, atol: float) -> Feeds:
    """``got`` with each image's detections in ``ref``'s order, where every one of them has its match."""
    images: dict[str, dict[str, str]] = {}  # image suffix ("" or "_0", "_1", ...) -> part -> output name
    for name in ref:
        found = _NAME.match(name)
        if found:
            images.setdefault(found.group(2) or "", {})[found.group(1)] = name
    aligned = dict(got)
    for parts in images.values():
        if not all(part in parts and parts[part] in got for part in _PARTS):
            continue
        mine = [np.asarray(got[parts[part]]) for part in _PARTS]
        theirs = [np.asarray(ref[parts[part]]) for part in _PARTS]
        order = _match(mine[0], mine[1], mine[2], theirs[0], theirs[1], theirs[2], rtol, atol)
        if order is None:
            continue
        for name in parts.values():
            value = np.asarray(got[name]) if name in got else None
            if value is not None and value.ndim and value.shape[0] == len(order):
                aligned[name] = value[order]
    return aligned


def _match(
    boxes: np.ndarray,
    scores: np.ndarray,
    labels: np.ndarray,
    want_boxes: np.ndarray,
    want_scores: np.ndarray,
    want_labels: np.ndarray,
    rtol: float,
    atol: float,
) -> np.ndarray | None:
    """For each reference detection, the index of its match in ``got``; ``None`` unless all match one to one."""
    if len(boxes) != len(want_boxes) or boxes.ndim != 2 or want_boxes.ndim != 2:
        return None
    eps = float(np.finfo(np.float32).eps) * NOISE_ULPS
    box_noise = eps * float(np.abs(want_boxes).max(initial=0.0))
    score_noise = eps * float(np.abs(want_scores).max(initial=0.0))
    used = np.zeros(len(boxes), dtype=bool)
    order = np.empty(len(want_boxes), dtype=np.int64)
    for j in range(len(want_boxes)):
        close_score = np.abs(scores - want_scores[j]) <= atol + rtol * abs(float(want_scores[j])) + score_noise
        distance = np.abs(boxes - want_boxes[j]).max(axis=1)
        close_box = distance <= atol + rtol * np.abs(want_boxes[j]).max() + box_noise
        candidates = np.flatnonzero(~used & (labels == want_labels[j]) & close_score & close_box)
        if not len(candidates):
            return None
        pick = candidates[np.argmin(distance[candidates])]
        used[pick] = True
        order[j] = pick
    return order
