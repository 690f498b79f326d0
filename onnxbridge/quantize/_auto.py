"""``quantize("auto")``: try every recipe that fits, measure each against the parent, keep the best.

This is what Olive's search does from a configuration file, in one call: each candidate is
measured on the same samples (accuracy), its file size, and its latency next to the parent
(interleaved rounds, one thread); the best one that meets the tolerance by the objective is
returned with the whole table in its report.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from onnxbridge.core._errors import QuantizationError
from onnxbridge.core._types import Feeds
from onnxbridge.quantize import _measure, _optimize
from onnxbridge.quantize._dynamic import DynamicInt8
from onnxbridge.quantize._fp16 import Fp16
from onnxbridge.quantize._recipe import Recipe
from onnxbridge.quantize._run import Result, looks_like_transformer, run
from onnxbridge.quantize._static import StaticQdq
from onnxbridge.quantize._types import Candidate, OptimizationReport, QuantizationMode, QuantizationReport
from onnxbridge.quantize._weight_only import WeightOnly

if TYPE_CHECKING:
    import onnx

DEFAULT_TOLERANCE = {"cosine": 0.99}


def recipes(parent: onnx.ModelProto, samples: list[Feeds], *, calibrated: bool) -> list[tuple[bool, Recipe]]:
    """The candidates for ``parent``: (optimize first?, recipe)."""
    out: list[tuple[bool, Recipe]] = [
        (False, DynamicInt8(per_channel=False)),
        (False, DynamicInt8(per_channel=True)),
    ]
    if looks_like_transformer(parent):
        out += [
            (False, DynamicInt8(per_channel=True, embeddings=True, protect="float")),
            (False, DynamicInt8(per_channel=True, embeddings=True, protect="weight-only")),
            (True, DynamicInt8(per_channel=True, embeddings=True)),
        ]
    if calibrated:
        out.append((False, StaticQdq(samples)))
    out += [(False, WeightOnly(bits=8)), (False, WeightOnly(bits=4)), (False, Fp16())]
    return out


def search(
    parent: onnx.ModelProto,
    samples: list[Feeds],
    tolerance: Mapping[str, float] | None,
    objective: str,
    *,
    calibrated: bool,
) -> Result:
    """Measure every candidate; return the best that meets ``tolerance`` (default: min cosine 0.99)."""
    tolerance = dict(tolerance or DEFAULT_TOLERANCE)
    size_before = _measure.model_size(parent)
    base_session = _measure.session(parent, threads=1)
    expected = _measure.run_all(base_session, samples)  # every candidate is measured against these
    optimized: tuple[onnx.ModelProto, OptimizationReport] | None = None
    results: list[tuple[Candidate, Result | None]] = []
    for optimize_first, recipe in recipes(parent, samples, calibrated=calibrated):
        name = ("optimize + " if optimize_first else "") + recipe.name
        try:
            source = parent
            if optimize_first:
                if optimized is None:
                    optimized = _optimize.optimize(parent, [], "extended")
                source = optimized[0]
            # measured against the real parent's outputs, also when the optimized graph was quantized
            result = run(source, recipe, samples, [], None, measure_latency=False, expected=expected)
            if optimized is not None and optimize_first:
                result.report.optimized = dict(optimized[1].fused)
            acc = result.report.accuracy
            cosines = [a.min_cosine for a in acc if a.min_cosine is not None]
            tops = [a.top1 for a in acc if a.top1 is not None]
            latency = _measure.latency_ratio(base_session, result.model, samples[0], rounds=5)
            candidate = Candidate(
                name,
                min(cosines) if cosines else None,
                min(tops) if tops else None,
                max(a.max_abs_error for a in acc),
                _measure.model_size(result.model) / size_before,
                latency,
                _measure.meets(acc, tolerance),
            )
            result.report.latency_ratio = latency
            results.append((candidate, result))
        except Exception as err:  # noqa: BLE001 - a failing recipe is a row of the table
            why = f"{type(err).__name__}: {(str(err).strip().splitlines() or [''])[0][:80]}"
            results.append((Candidate(name, None, None, None, None, None, False, why), None))
    table = [c for c, _ in results]
    passing = [(c, r) for c, r in results if c.meets and r is not None]
    key = (
        (lambda cr: (cr[0].latency_ratio or float("inf"), cr[0].size_ratio or float("inf")))
        if objective == "latency"
        else (lambda cr: (cr[0].size_ratio or float("inf"), cr[0].latency_ratio or float("inf")))
    )
    if not passing:
        report = QuantizationReport(QuantizationMode.AUTO, {"objective": objective}, size_before, size_before)
        report.tolerance, report.passed, report.candidates = tolerance, False, table
        raise QuantizationError(
            f"quantize('auto') found no recipe that meets tolerance {tolerance} on these samples:\n"
            f"{report.table()}\nLoosen the tolerance, pass calibration data closer to real inputs, or keep the float "
            "model.",
            report,
        )
    best, result = min(passing, key=key)
    assert result is not None
    report = result.report
    report.mode = QuantizationMode.AUTO
    report.settings = {"objective": objective, "recipe": best.name, **report.settings}
    report.tolerance, report.passed, report.candidates, report.chosen = tolerance, True, table, best.name
    report.size_after = _measure.model_size(result.model)
    if best.latency_ratio and best.latency_ratio > 1.0:
        why = (
            "no candidate that meets the tolerance was faster"
            if objective == "latency"
            else "it was chosen for size; objective='latency' picks the fastest that meets the tolerance"
        )
        report.warnings.append(
            f"the chosen recipe runs {best.latency_ratio:.2f}x as long as the float model on this CPU; {why}"
        )
    return result
