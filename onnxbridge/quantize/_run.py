"""One recipe run against its parent: measure it, protect and repair it, never slow a model down silently.

Recipes (one module each) only turn a model into a model; everything measured here is
measured against the parent on explicit samples from :mod:`onnxbridge.quantize._data`.
:mod:`~onnxbridge.quantize._quantize` picks the recipe; :mod:`~onnxbridge.quantize._auto`
runs several.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from onnxbridge.core._errors import QuantizationError
from onnxbridge.core._types import Feeds, Reference
from onnxbridge.quantize import _measure, _passes, _sensitivity
from onnxbridge.quantize._dynamic import DynamicInt8
from onnxbridge.quantize._recipe import Recipe
from onnxbridge.quantize._simulate import Int8Simulator
from onnxbridge.quantize._types import QuantizationMode, QuantizationReport

if TYPE_CHECKING:
    import onnx

# The transformer default keeps the fewest MatMuls in float (most sensitive first) for which
# the simulated int8 model reaches this worst-row cosine on the samples, and at most this
# fraction of them. The target is above 0.99 on purpose: calibration sets are small, and on
# all-MiniLM-L6-v2 protection that just reached 0.99 on 8 calibration sentences gave 0.986 on
# 36 others, while 0.995 gave 0.995 (benchmarks/bench_quantization.py). Float, not 8-bit
# weight-only: MatMulNBits ran 3x slower than float at batch 1 on AVX2 without VNNI.
PROTECT_TARGET = {"cosine": 0.995}
PROTECT_AT_MOST = 1 / 3
_SLOWER = 1.10
_FALLS_BACK = (
    QuantizationMode.DYNAMIC,
    QuantizationMode.STATIC,
)  # a result this much slower than float at every batch measured is not kept silently


@dataclass(frozen=True)
class Result:
    """A quantized model, its report, and the ground truth that replaces the parent's (QAT's trained model)."""

    model: onnx.ModelProto
    report: QuantizationReport
    source: Reference | None = None


def looks_like_transformer(model: onnx.ModelProto) -> bool:
    """Has a large embedding table read by Gather (token embeddings): text transformers do."""
    from onnx import TensorProto

    tables = {
        i.name
        for i in model.graph.initializer
        if i.data_type == TensorProto.FLOAT and len(i.dims) == 2 and i.dims[0] * i.dims[1] >= 2**16
    }
    return any(n.op_type == "Gather" and n.input and n.input[0] in tables for n in model.graph.node)


def run(
    parent: onnx.ModelProto,
    recipe: Recipe,
    samples: list[Feeds],
    exclude: list[str],
    tolerance: Mapping[str, float] | None,
    *,
    allow_slower: bool = False,
    batch_sizes: Sequence[int] = (),
    measure_latency: bool = True,
    expected: list[dict[str, np.ndarray]] | None = None,
) -> Result:
    """Run ``recipe`` on ``parent``, protect what is sensitive, repair to ``tolerance``, measure.

    ``expected`` are the outputs accuracy is measured against, one per sample (default: the
    parent's, computed once here and reused by every measurement of this call).
    """
    if expected is None:
        expected = _measure.run_all(parent, samples)
    protected: list[str] = []
    simulator, how = None, ""
    if isinstance(recipe, DynamicInt8) and recipe.protect:
        simulator, how = _simulator(parent, recipe, samples, exclude), recipe.protect
        protected = _protect(simulator)
    model, left = recipe(parent, [*exclude, *protected])
    report = QuantizationReport(
        recipe.mode,
        recipe.settings([*exclude, *protected]),
        _measure.model_size(parent),
        _measure.model_size(model),
        tolerance=dict(tolerance) if tolerance else None,
    )
    if protected:
        report.attempts.append(
            f"kept the {len(protected)} MatMul(s) whose int8 error hurt the outputs most {how}: {', '.join(protected)}"
        )
    report.accuracy = _measure.compare(expected, _measure.run_all(model, samples))
    report.passed = _measure.meets(report.accuracy, tolerance) if tolerance else None
    if tolerance and not report.passed:
        if simulator is None and isinstance(recipe, DynamicInt8):
            simulator = _simulator(parent, recipe, samples, exclude)
        model, left = _repair(parent, recipe, [*exclude, *protected], samples, expected, tolerance, report, simulator)
    report.nodes_left_float = left
    report.size_after = _measure.model_size(model)
    source = getattr(recipe, "source", None)
    if measure_latency:
        model = _keep_if_faster(parent, model, samples, report, allow_slower, batch_sizes)
    return Result(model, report, source)


def _simulator(parent: onnx.ModelProto, recipe: DynamicInt8, samples: list[Feeds], exclude: list[str]) -> Int8Simulator:
    nodes = [c for c in recipe.candidates(parent) if c not in exclude]
    return Int8Simulator(recipe.prepare(parent), samples, nodes)


def _protect(simulator: Int8Simulator) -> list[str]:
    """The fewest most-sensitive MatMuls to keep out of int8 for :data:`PROTECT_TARGET`, capped."""
    order = [name for _, name in simulator.ranked()]
    cap = math.ceil(len(order) * PROTECT_AT_MOST)
    for count in range(cap + 1):  # each try is one simulated run per sample
        if _measure.meets(simulator.accuracy(order[count:]), PROTECT_TARGET):
            return order[:count]
    return order[:cap]


def _keep_if_faster(
    parent: onnx.ModelProto,
    model: onnx.ModelProto,
    samples: list[Feeds],
    report: QuantizationReport,
    allow: bool,
    batch_sizes: Sequence[int] = (),
) -> onnx.ModelProto:
    """``model``, or ``parent`` where an int8 ``model`` is slower at every batch measured (see the docs)."""
    for batch, feeds in _latency_feeds(samples, batch_sizes):
        ratio = _measure.latency_ratio(parent, model, feeds, threads=None)
        if ratio:
            report.latency_ratios[batch] = ratio
    ratios = report.latency_ratios
    report.latency_ratio = ratios.get(1, next(iter(ratios.values()), None))
    slower = {batch: ratio for batch, ratio in ratios.items() if ratio > _SLOWER}
    measured = ", ".join(f"{r:.2f}x at batch {b}" for b, r in sorted(ratios.items()))
    # Only int8 modes whose float parent computes the same function fall back to it; QAT's result
    # is a trained model, and fp16 and weight-only are asked for by name.
    if not slower:
        return model
    if len(slower) < len(ratios) or report.mode not in _FALLS_BACK:
        report.warnings.append(
            f"the quantized model is slower than the float one on this CPU at batch "
            f"{', '.join(map(str, sorted(slower)))} ({measured}); it is kept because "
            + ("it is not slower at every batch" if len(slower) < len(ratios) else f"{report.mode.value} was asked for")
        )
        return model
    if allow:
        report.warnings.append(
            f"the quantized model is slower than the float one on this CPU ({measured}); kept because "
            "allow_slower=True (it may be faster on a CPU with VNNI/AMX or on another provider)"
        )
        return model
    report.kept_float = True
    report.warnings.append(
        f"the quantized model was slower than the float one on this CPU at every batch measured ({measured} of its "
        "latency), so the FLOAT model is returned; its accuracy and size figures above describe the quantized model "
        "that was not kept. Pass allow_slower=True to keep it anyway (e.g. for a CPU with VNNI, or for the smaller "
        "file)."
    )
    report.size_after = report.size_before
    return _passes.copy(parent)  # its own copy: saving the child writes metadata into its model


LATENCY_BATCHES = (1, 8)  # with the measuring sample's batch and the user's batch_sizes


def _latency_feeds(samples: list[Feeds], batch_sizes: Sequence[int] = ()) -> list[tuple[int, Feeds]]:
    """The first sample at batch 1, at its own batch, at 8 and at ``batch_sizes``: rows repeated or cut."""
    first = samples[0]
    own = min((len(v) for v in first.values() if v.ndim), default=1)
    sizes = sorted({*LATENCY_BATCHES, own, *batch_sizes})
    return [(size, {k: _rows(v, size) for k, v in first.items()}) for size in sizes]


def _rows(value: np.ndarray, count: int) -> np.ndarray:
    """``value`` with ``count`` rows along axis 0, cycling through its own (scalars as they are)."""
    if not value.ndim or len(value) == count or not len(value):
        return value
    return np.ascontiguousarray(np.take(value, np.arange(count) % len(value), axis=0))


def _repair(
    parent: onnx.ModelProto,
    recipe: Recipe,
    exclude: list[str],
    samples: list[Feeds],
    expected: list[dict[str, np.ndarray]],
    tolerance: Mapping[str, float],
    report: QuantizationReport,
    simulator: Int8Simulator | None = None,
) -> tuple[onnx.ModelProto, list[str]]:
    """Leave the most sensitive nodes out of quantization, in doubling steps, until the tolerance is met."""
    candidates = [c for c in recipe.candidates(parent) if c not in exclude]

    def only(name: str) -> onnx.ModelProto:
        return recipe(parent, [*exclude, *[c for c in candidates if c != name]])[0]

    order = _sensitivity.rank(expected, samples, candidates, only, simulator)
    # 1, 2, 4, ... most sensitive nodes out, and finally all but one (with every candidate out
    # nothing is quantized: not a success)
    steps = sorted({min(2**i, len(order) - 1) for i in range(len(order).bit_length())} - {0})
    for count in steps:
        kept = order[:count]
        model, left = recipe(parent, [*exclude, *kept])
        report.accuracy = _measure.compare(expected, _measure.run_all(model, samples))
        report.attempts.append(f"left the {count} most sensitive node(s) out: {_measure.summary(report.accuracy)}")
        if _measure.meets(report.accuracy, tolerance):
            report.passed = True
            report.settings = recipe.settings([*exclude, *kept])
            return model, left
    report.passed = False
    raise QuantizationError(
        f"{report.mode.value} quantization could not meet tolerance {dict(tolerance)}: it left up to "
        f"{max(len(order) - 1, 0)} of the {len(order)} quantizable nodes out, most sensitive first, and no result "
        f"that still quantizes anything passed (last: {_measure.summary(report.accuracy)}). Try "
        "quantize('auto', tolerance=...) to compare every recipe, another mode, or a looser tolerance.",
        report,
    )
