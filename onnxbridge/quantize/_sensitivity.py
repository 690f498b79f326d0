"""Which nodes suffer most from int8: measured on the model's outputs, not guessed.

MatMuls under dynamic int8 are measured with :class:`~onnxbridge.quantize._simulate.Int8Simulator`
(one session, each node switched to simulated int8 alone). Any other node is measured the slow
way: the model quantized by the recipe with only that node in int8, compared with the parent.
A cheaper local figure (each product's own int8 error) was tried first and ranked nodes poorly
(Spearman 0.28 against the output effect on all-MiniLM-L6-v2): errors that propagate through
later layers count more.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from onnxbridge.core._types import Feeds
from onnxbridge.quantize import _measure
from onnxbridge.quantize._simulate import Int8Simulator

if TYPE_CHECKING:
    import onnx

_MAX_SLOW = 48  # nodes measured by whole-model quantization at most


def rank(
    expected: Sequence[Mapping[str, np.ndarray]],
    samples: Sequence[Feeds],
    candidates: Sequence[str],
    quantize_only: Callable[[str], onnx.ModelProto],
    simulator: Int8Simulator | None = None,
) -> list[str]:
    """Candidates, most sensitive first.

    A node's figure is the worst cosine shortfall (else max error) of the outputs with only that
    node in int8: from ``simulator`` for the MatMuls it covers, else from ``quantize_only(node)``
    measured against ``expected`` (the parent's outputs on ``samples``). The simulated nodes come first (their figures are not on the
    same scale as the measured ones); past 48 measured candidates, the rest keep graph order.
    """
    simulated = [n for _, n in simulator.ranked() if n in set(candidates)] if simulator else []
    rest = [c for c in candidates if c not in set(simulated)]
    measured = [
        (_measure.score(_measure.compare(expected, _measure.run_all(quantize_only(name), samples))), name)
        for name in rest[:_MAX_SLOW]
    ]
    return simulated + [name for _, name in sorted(measured, reverse=True)] + rest[_MAX_SLOW:]
