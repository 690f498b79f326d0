"""Detections compared as what they are: a set of boxes per image, matched by label, score and box.

A detector's outputs are ordered by score, and two detections of equal score may come out in
either order from two runtimes; comparing position by position would call that a failure.
Before the outputs are compared, each image's detections from onnxruntime are put in the
reference's order, each matched to one reference detection of the same label whose score and
box are within tolerance relative to the image's top score and largest coordinate (float
summation noise included). Counts must be equal and every
detection matched; otherwise the outputs are left as they are and the comparison fails.

Masks and keypoints are placed on whole pixels from their boxes (a mask pasted at the box's
integer corner, a keypoint at the argmax of a heatmap resized to the box's rounded-up size), so
float noise in a box can move them by one pixel. Box corners are positions, judged relative to
the image's extent rather than to their distance from the corner. :func:`placed_within_noise` tells
what noise does from error.
"""

from __future__ import annotations

import re

import numpy as np

from onnxbridge.checks._validation_report import float32_noise
from onnxbridge.core._types import Feeds

__all__ = ["TASK", "align", "placed_within_noise"]

TASK = "object-detection"  # an export's ``task`` property whose outputs are detections per image

_PARTS = ("boxes", "scores", "labels")
# a keypoint's heatmap cell is at most a pixel, and one pixel more of box size rescales the cells by up to a pixel
_KEYPOINT_PIXELS = 2.0
# a box under 4 pixels across: a pixel of rounding rescales its mask whole, and its RoI features swing with noise
_TINY_BOX = 4.0
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
    box_noise = float32_noise(want_boxes)
    top_score = float(np.abs(want_scores).max(initial=0.0))
    score_noise = float32_noise(top_score)
    used = np.zeros(len(boxes), dtype=bool)
    order = np.empty(len(want_boxes), dtype=np.int64)
    for j in range(len(want_boxes)):
        close_score = np.abs(scores - want_scores[j]) <= atol + rtol * top_score + score_noise
        distance = np.abs(boxes - want_boxes[j]).max(axis=1)
        close_box = distance <= atol + rtol * np.abs(want_boxes[j]).max() + box_noise
        candidates = np.flatnonzero(~used & (labels == want_labels[j]) & close_score & close_box)
        if not len(candidates):
            return None
        pick = candidates[np.argmin(distance[candidates])]
        used[pick] = True
        order[j] = pick
    return order


def placed_within_noise(name: str, got: Feeds, ref: Feeds, rtol: float, atol: float) -> bool:
    """Whether output ``name`` (boxes, masks, keypoints or keypoint scores; aligned) is off only as noise moves it.

    * ``boxes`` and ``scores``: every value within ``atol + rtol * `` the image's largest (and the noise band): a
      two-stage detector carries float noise from its proposals into every box and score;
    * ``masks``: every pixel within tolerance of the range of the reference's 3x3 neighbourhood around it (widened
      by half that range: the resized mask can peak between pixel centres), for
      every detection whose box is at least 4 pixels high and wide (a one-pixel change rescales a thinner
      box's mask whole);
    * ``keypoints`` and their scores: each keypoint either has the reference's score within tolerance (as boxes'),
      wherever it is (in place, or at another maximum of its heatmap as high up to noise: argmax picks one of
      two near-equal peaks), or it moved past float noise by at most two pixels (one heatmap cell, and the cells'
      rescaling when the box's rounded-up size changes by one), where it reads its heatmap, computed from its
      box's features, elsewhere and its score may differ. A box under 4 pixels across has its keypoints on
      its few pixels, and its RoI features swing with noise in its corners: its keypoints are not judged.
    """
    found = _NAME.match(name)
    if not found or name not in got:
        return False
    part, suffix = found.group(1), found.group(2) or ""
    mine, theirs = np.asarray(got[name], dtype=np.float64), np.asarray(ref[name], dtype=np.float64)
    if mine.shape != theirs.shape:
        return False
    boxes = f"boxes{suffix}"
    if part == "masks" and mine.ndim >= 3 and boxes in ref and len(ref[boxes]) == len(mine):
        judged = ~_tiny(ref[boxes])
        return _masks_within_a_pixel(mine[judged], theirs[judged], rtol, atol)
    if part in ("boxes", "scores"):
        return bool((np.abs(mine - theirs) <= _tolerance(_extent(theirs), rtol, atol)).all())
    if part in ("keypoints", "keypoints_scores"):
        tiny = _tiny(ref[boxes]) if boxes in ref else np.zeros(0, dtype=bool)
        return _keypoints_within_noise(got, ref, f"keypoints{suffix}", f"keypoints_scores{suffix}", tiny, rtol, atol)
    return False


def _tiny(boxes: np.ndarray) -> np.ndarray:
    """Which boxes are under :data:`_TINY_BOX` pixels high or wide."""
    corners = np.asarray(boxes, dtype=np.float64)
    return np.asarray((corners[:, 2:] - corners[:, :2] < _TINY_BOX).any(axis=1))


def _keypoints_within_noise(
    got: Feeds, ref: Feeds, points: str, scores: str, tiny: np.ndarray, rtol: float, atol: float
) -> bool:
    if not all(name in got and name in ref for name in (points, scores)) or len(tiny) != len(ref[points]):
        return False
    xy_got, xy_ref = np.asarray(got[points])[..., :2], np.asarray(ref[points], dtype=np.float64)[..., :2]
    mine, theirs = np.asarray(got[scores], dtype=np.float64), np.asarray(ref[scores], dtype=np.float64)
    if xy_got.shape != xy_ref.shape or mine.shape != theirs.shape or mine.shape != xy_ref.shape[:-1]:
        return False
    offset = np.abs(xy_got - xy_ref).max(axis=-1, initial=0.0)
    extent = float(np.abs(xy_ref).max(initial=0.0))  # positions judged relative to the image's extent, as boxes
    noise = atol + float32_noise(extent)
    same_score = np.abs(mine - theirs) <= _tolerance(_extent(theirs), rtol, atol)
    # moved past float noise, by two pixels at most: read its heatmap (and its box's features) elsewhere
    shifted = (offset > noise) & (offset <= _KEYPOINT_PIXELS + noise + rtol * extent)
    return bool((same_score | shifted | tiny[:, None]).all())


def _tolerance(ref: np.ndarray, rtol: float, atol: float) -> np.ndarray:
    """Elementwise ``atol + rtol * |ref|`` plus the noise band of ``ref``'s largest value."""
    noise = float32_noise(ref)
    return atol + rtol * np.abs(ref) + noise


def _extent(coordinates: np.ndarray) -> np.ndarray:
    """Every coordinate replaced by the largest ``|coordinate|``, to judge coordinates relative to the image's extent.

    A box 2 pixels from the corner is as exact as one 300 pixels away: a position's error does not scale with its
    distance from 0.
    """
    return np.full_like(coordinates, float(np.abs(coordinates).max(initial=0.0)))


def _masks_within_a_pixel(got: np.ndarray, ref: np.ndarray, rtol: float, atol: float) -> bool:
    height, width = ref.shape[-2:]
    padded = np.pad(ref, [(0, 0)] * (ref.ndim - 2) + [(1, 1), (1, 1)], mode="edge")
    shifted = [padded[..., dy : dy + height, dx : dx + width] for dy in range(3) for dx in range(3)]
    low, high = np.minimum.reduce(shifted), np.maximum.reduce(shifted)
    # between pixel centres the resized mask may peak past its neighbours by up to half their spread
    slack = _tolerance(high, rtol, atol) + (high - low) / 2
    return bool(((got >= low - slack) & (got <= high + slack)).all())
