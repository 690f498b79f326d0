"""Detections are compared as sets: equal scores in another order pass, a moved box or a lost detection fails."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onnxbridge.checks import _detections, _validation

pytestmark = pytest.mark.core


def detections(count: int, seed: int, ties: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    scores = np.sort(rng.uniform(0.1, 0.9, count).astype(np.float32))[::-1].copy()
    scores[: min(ties, count)] = scores[0]  # a run of equal scores, as random weights and real crowds give
    top_left = rng.uniform(0, 400, (count, 2))
    boxes = np.concatenate([top_left, top_left + rng.uniform(5, 100, (count, 2))], axis=1).astype(np.float32)
    return {"boxes": boxes, "scores": scores, "labels": rng.integers(0, 5, count).astype(np.int64)}


def passes(got: dict[str, np.ndarray], ref: dict[str, np.ndarray]) -> bool:
    aligned = _detections.align(got, ref, 1e-3, 1e-5)
    return all(_validation.compare("c", name, aligned[name], ref[name], 1e-3, 1e-5).passed for name in ref)


@settings(max_examples=50, deadline=None)
@given(count=st.integers(1, 60), seed=st.integers(0, 2**16), ties=st.integers(0, 60))
def test_tied_detections_in_another_order_pass_and_a_moved_box_fails(count, seed, ties):
    ref = detections(count, seed, ties)
    order = np.arange(count)
    tied = min(ties, count)
    order[:tied] = np.random.default_rng(seed + 1).permutation(tied)  # equal scores, another order
    got = {name: value[order] for name, value in ref.items()}
    assert passes(got, ref)
    moved = {name: value.copy() for name, value in got.items()}
    moved["boxes"][count // 2, 0] += 3.0  # three pixels off
    assert not passes(moved, ref)


def test_a_detection_lost_or_relabelled_fails():
    ref = detections(20, 0, 5)
    fewer = {name: value[:-1] for name, value in ref.items()}
    assert not passes(fewer, ref)
    relabelled = {name: value.copy() for name, value in ref.items()}
    relabelled["labels"][3] = (relabelled["labels"][3] + 1) % 5
    assert not passes(relabelled, ref)


def test_each_image_of_several_is_matched_on_its_own():
    first, second = detections(10, 1, 4), detections(12, 2, 6)
    ref = {**{f"{k}_0": v for k, v in first.items()}, **{f"{k}_1": v for k, v in second.items()}}
    swapped = {f"{k}_0": v[[1, 0, 2, 3, 4, 5, 6, 7, 8, 9]] for k, v in first.items()}
    swapped.update({f"{k}_1": v[[2, 1, 0, *range(3, 12)]] for k, v in second.items()})
    assert passes(swapped, ref)
