"""Validation: structure, symbolic axes, and numeric parity with the source.

A value mismatch is a failure, never "succeeded with a warning". Every failure is
collected before raising, so one run shows all of them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from onnxbridge.checks import _detections, _labels
from onnxbridge.checks._validation_report import (
    NOISE_ULPS,
    PARITY,
    Check,
    OutputComparison,
    ValidationReport,
)
from onnxbridge.core._axes import DynamicAxes, axes_by_dim
from onnxbridge.core._errors import InputError, ValidationError, first_line
from onnxbridge.core._types import Feeds, ReferenceFn
from onnxbridge.graph import _checker
from onnxbridge.graph._files import is_large

if TYPE_CHECKING:
    import onnx

    from onnxbridge.running._session import Session

__all__ = ["Check", "OutputComparison", "ValidationReport", "compare", "noise_band", "validate"]

SUM = " + "  # joins the terms of a dimension that is the sum of others


def check_structure(model: onnx.ModelProto, path: str | os.PathLike[str] | None = None) -> Check:
    """``onnx.checker`` with full (strict) shape inference.

    ``path``, a file holding ``model`` (weights as external data), is checked instead when
    given: the checker then reads the graph without a serialized copy of every weight, and
    models past protobuf's 2 GiB can be checked at all. Operators the checker has no schema for
    (onnxruntime's contrib operators) are named in the detail, not failed.
    """
    if path is None and is_large(model):
        return Check("onnx.checker", False, "past protobuf's 2 GiB limit: check it from a file with external data")
    try:
        skipped = _checker.check_model(model, path, full_check=True)
    except Exception as err:  # noqa: BLE001 - checker raises several unrelated types
        return Check("onnx.checker", False, f"{type(err).__name__}: {first_line(err)}")
    detail = "model is well-formed; full shape inference succeeded"
    return Check("onnx.checker", True, f"{detail}. {skipped[0].upper()}{skipped[1:]}" if skipped else detail)


def check_symbolic_axes(model: onnx.ModelProto, axes: DynamicAxes) -> Check:
    """Every declared dynamic axis is a symbolic dimension in the graph's signature."""
    if not axes:
        return Check("symbolic axes", None, "no dynamic axes declared")
    values = {v.name: v for v in [*model.graph.input, *model.graph.output]}
    problems = []
    for name, dims in sorted(axes.items()):
        value = values.get(name)
        if value is None:
            problems.append(f"{name!r} is not a graph input or output")
            continue
        shape = value.type.tensor_type.shape
        for axis, dim_name in sorted(dims.items()):
            if axis >= len(shape.dim):
                problems.append(f"{name!r} has rank {len(shape.dim)}, no axis {axis}")
                continue
            dim = shape.dim[axis]
            if dim.HasField("dim_value"):
                problems.append(f"{name!r} axis {axis} ({dim_name!r}) is fixed to {dim.dim_value}")
    if problems:
        return Check("symbolic axes", False, "; ".join(problems))
    count = sum(len(d) for d in axes.values())
    return Check("symbolic axes", True, f"all {count} declared dynamic axes are symbolic")


def variants(sample: Feeds, axes: DynamicAxes, names: Sequence[str]) -> list[tuple[str, Feeds]]:
    """The sample plus, per dynamic dimension, copies resized along it.

    Resizing takes elements ``arange(new) % old`` along the axis: a prefix when
    shrinking, repetition when growing. Values stay ones the model has seen (token
    ids stay valid). Inputs sharing a dimension name are resized together. A dimension
    named as a sum (``"past_sequence_length + sequence_length"``) is not resized on its
    own; it grows and shrinks with each of its terms. A row of ``attention_mask`` that shrinking
    leaves all padding (a left-padded row cut to its padding) becomes all tokens: no model is
    defined on a row with nothing to attend to.
    """
    cases = [("sample", sample)]
    groups = axes_by_dim(axes, [n for n in names if n in sample])
    for dim, members in groups.items():
        if SUM in dim:
            continue
        dependents = [m for other, ms in groups.items() if dim in other.split(SUM) and other != dim for m in ms]
        current = sample[members[0][0]].shape[members[0][1]]
        sizes = sorted({1, current + 2} - {current})
        for size in sizes:
            resized = dict(sample)
            for name, axis, new in [(n, a, size) for n, a in members] + [
                (n, a, sample[n].shape[a] + size - current) for n, a in dependents
            ]:
                resized[name] = np.take(resized[name], np.arange(new) % resized[name].shape[axis], axis=axis)
            mask = resized.get("attention_mask")
            if mask is not None and mask.ndim == 2 and mask.dtype.kind in "iub" and (mask.sum(axis=1) == 0).any():
                resized["attention_mask"] = np.where((mask.sum(axis=1) == 0)[:, None], np.ones_like(mask), mask)
            cases.append((f"{dim}={size}", resized))
    return cases


def compare(
    case: str,
    name: str,
    got: np.ndarray,
    ref: np.ndarray,
    rtol: float,
    atol: float,
    positions: np.ndarray | None = None,
    *,
    strict: bool = False,
) -> OutputComparison:
    """Compare one output with its reference, numpy ``allclose`` semantics, float noise told apart.

    ``positions`` (``(batch, sequence)`` booleans, an ``attention_mask``) limits the comparison to
    the positions that hold tokens: what a model computes at padding is not part of its answer.

    Float outputs outside ``atol + rtol * |reference|`` pass as ``noise`` when every element is
    within that plus :func:`noise_band`: summing in another order (another kernel, another
    thread count) moves a float result by a few units in the last place of the largest partial
    sums, so an element near zero in an output that reaches 40 can be off by 1e-4 with nothing
    wrong. ``strict`` leaves the band out.
    """
    got, ref = np.asarray(got), np.asarray(ref)
    shape = got.shape
    if got.shape != ref.shape:
        return OutputComparison(case, name, got.shape, ref.shape, float("inf"), float("inf"), 1.0, False)
    if positions is not None and got.shape[:2] == positions.shape:
        got, ref = got[positions], ref[positions]
    if got.size == 0:
        return OutputComparison(case, name, shape, shape, 0.0, 0.0, 0.0, True)
    if got.dtype.kind in "fc" or ref.dtype.kind in "fc":
        a, b = got.astype(np.float64), ref.astype(np.float64)
        both_nan = np.isnan(a) & np.isnan(b)
        diff = np.where(both_nan, 0.0, np.abs(a - b))
        diff = np.where(np.isnan(diff), np.inf, diff)
        allowed = atol + rtol * np.abs(np.nan_to_num(b))
        bad = diff > allowed
        with np.errstate(over="ignore"):  # an error beside an exact zero is infinitely relative
            rel = diff / np.maximum(np.abs(np.nan_to_num(b)), np.finfo(np.float64).tiny)
        noise = bool(bad.any()) and not strict and not bool((diff > allowed + noise_band(got, ref)).any())
        return OutputComparison(
            case,
            name,
            shape,
            shape,
            float(diff.max()),
            float(rel.max()),
            float(bad.mean()),
            noise or not bool(bad.any()),
            noise,
        )
    bad = got != ref
    err = (
        float(np.abs(got.astype(np.float64) - ref.astype(np.float64)).max())
        if got.dtype.kind in "iub"
        else float(bad.any())
    )
    return OutputComparison(case, name, shape, shape, err, err, float(bad.mean()), not bool(bad.any()))


def noise_band(got: np.ndarray, ref: np.ndarray) -> float:
    """How far summation order alone may move an output: :data:`NOISE_ULPS` ulp of its largest ``|reference|``.

    The unit is the machine epsilon of the coarser float type of the two (float32 for a float32
    graph compared with a float64 source); the reference's finite values give the magnitude.
    """
    kinds = [a.dtype for a in (got, ref) if a.dtype.kind == "f"] or [np.dtype(np.float64)]
    eps = max(float(np.finfo(kind).eps) for kind in kinds)
    finite = np.abs(ref[np.isfinite(ref)]) if ref.dtype.kind == "f" else np.abs(ref)
    return NOISE_ULPS * eps * float(finite.max()) if finite.size else 0.0


def check_parity(
    session: Session,
    cases: Iterable[tuple[str, Feeds]],
    reference: ReferenceFn | Mapping[str, Feeds],
    rtol: float,
    atol: float,
    *,
    optional: Collection[str] = (),
    skipped: list[str] | None = None,
    per_token: Collection[str] = (),
    strict: bool = False,
    detections: bool = False,
) -> tuple[Check, list[OutputComparison], list[str]]:
    """Run every case through onnxruntime and the reference; compare every output.

    Outputs named in ``per_token`` (one row per token, see :func:`per_token_outputs`) are
    compared where the case's ``attention_mask`` is 1.

    Cases named in ``optional`` (resized variants onnxbridge made up) that the source model
    itself refuses are not failures: they are appended to ``skipped`` with the reason.

    Returns:
        The check, every output comparison, and the cases that could not be compared.
    """
    comparisons: list[OutputComparison] = []
    errors: list[str] = []
    case_names: list[str] = []
    masked = False
    for case, feeds in cases:
        try:
            expected = reference(feeds) if callable(reference) else reference[case]
        except Exception as err:  # noqa: BLE001 - report, keep checking other cases
            reason = f"{type(err).__name__}: {first_line(err)}"
            if case in optional and skipped is not None:
                skipped.append(f"[{case}]: the source model itself refuses these sizes ({reason})")
            else:
                errors.append(f"[{case}] the source model failed: {reason}")
            continue
        case_names.append(case)
        try:
            got = session.run({k: v for k, v in feeds.items() if k in session.input_names})
        except Exception as err:  # noqa: BLE001
            errors.append(f"[{case}] onnxruntime failed: {first_line(err)}")
            continue
        if detections:  # each image's detections as a set: equal scores may come out in either order
            got = _detections.align(got, expected, rtol, atol)
        positions = _token_positions(feeds) if per_token else None
        masked = masked or positions is not None
        for name in session.output_names:
            if name not in expected:
                errors.append(f"[{case}] the source model produced no output matching {name!r}")
                continue
            where = positions if name in per_token else None
            comparison = compare(case, name, got[name], expected[name], rtol, atol, where, strict=strict)
            if not comparison.passed and not strict and _moved_by_noise(name, got, expected, rtol, atol, detections):
                comparison = dataclasses.replace(comparison, passed=True, noise=True)
            comparisons.append(comparison)
    failed = sum(not c.passed for c in comparisons)
    if errors or failed:
        parts = [f"{failed} of {len(comparisons)} output comparisons out of tolerance"] if failed else []
        parts += [f"{len(errors)} case(s) could not be compared"] if errors else []
        return Check(PARITY, False, "; ".join(parts)), comparisons, errors
    detail = f"{len(comparisons)} output comparisons within tolerance over cases: {', '.join(case_names)}"
    noisy = [c for c in comparisons if c.noise]
    if noisy:
        worst = max(c.max_abs_error for c in noisy)
        detail += (
            f"; {len(noisy)} of them only within float summation noise ({NOISE_ULPS} ulp of the output's largest "
            f"value; max abs error {worst:.3g}), not within rtol/atol: validate(strict=True) judges by rtol/atol alone"
        )
        if detections:
            detail += (
                "; a detector's boxes and scores count as noise within tolerance of each image's largest, its masks "
                "and keypoints where noise in a box moved them by one whole pixel"
            )
        elif any(c.output == "label" for c in noisy):
            detail += "; a class label counts as noise where it differs only on rows whose scores tie at the top"
    if masked:
        detail += "; (batch, sequence, ...) outputs compared where attention_mask is 1"
    return Check(PARITY, True, detail), comparisons, errors


def _moved_by_noise(name: str, got: Feeds, ref: Feeds, rtol: float, atol: float, detections: bool) -> bool:
    """Outputs that float noise moves by a whole step: a detector's pixels, a label its scores tie on."""
    if detections:
        return _detections.placed_within_noise(name, got, ref, rtol, atol)
    return _labels.decided_by_ties(name, got, ref, rtol, atol)


def per_token_outputs(model: onnx.ModelProto) -> set[str]:
    """Outputs whose second axis is the ``attention_mask``'s (a row per token): the same symbolic dimension."""

    def second(value: onnx.ValueInfoProto) -> str:
        dims = value.type.tensor_type.shape.dim
        return dims[1].dim_param if len(dims) > 1 else ""

    mask = next((i for i in model.graph.input if i.name == "attention_mask"), None)
    axis = second(mask) if mask is not None else ""
    return {o.name for o in model.graph.output if axis and second(o) == axis}


def _token_positions(feeds: Feeds) -> np.ndarray | None:
    """Where a 0/1 ``attention_mask`` input marks tokens (``None`` without one, or with no padding)."""
    mask = feeds.get("attention_mask")
    if mask is None:
        return None
    mask = np.asarray(mask)
    if mask.ndim != 2 or mask.dtype.kind not in "iub" or not np.isin(mask, (0, 1)).all() or mask.all():
        return None
    return mask.astype(bool)


# Fewer distinct rows than this from the export sample alone, and the report says to pass samples=.
def distinct_rows(cases: Iterable[tuple[str, Feeds]]) -> int | None:
    """How many different batch entries ``cases`` hold (all inputs of a row together), or None.

    None when the inputs of a case do not share a first axis (nothing to call a row).
    """
    seen: set[bytes] = set()
    for _, feeds in cases:
        arrays = [np.asarray(v) for v in feeds.values()]
        if not arrays or any(a.ndim == 0 or len(a) != len(arrays[0]) for a in arrays):
            return None
        for i in range(len(arrays[0])):
            digest = hashlib.blake2b(digest_size=16)  # a digest per row, not the row: samples may be large
            for a in arrays:
                digest.update(_row_bytes(a[i]))
            seen.add(digest.digest())
    return len(seen)


def _row_bytes(row: np.ndarray) -> bytes:
    if row.dtype.kind == "O":
        return repr(row.tolist()).encode()
    if row.dtype.kind == "f":  # the same row given as float64 and as float32 is one row
        row = row.astype(np.float32)
    return str(row.shape).encode() + np.ascontiguousarray(row).tobytes()


# Default (rtol, atol) for validate(): an export, or a quantized artifact by its mode. Quantized
# outputs differ from the source by design; these bounds catch a broken graph, not int8 error
# (quantize() measures that against the parent).
TOLERANCES: dict[str | None, tuple[float, float]] = {
    None: (1e-3, 1e-5),
    "fp16": (1e-2, 1e-3),
    "dynamic": (0.1, 0.1),
    "static": (0.1, 0.1),
    "qat": (0.1, 0.1),
    "weight-only": (0.1, 0.1),
    "int8-weight": (0.1, 0.1),
    "int4": (0.3, 0.3),
}


def validate(
    model: onnx.ModelProto,
    *,
    path: str | os.PathLike[str] | None,
    dynamic_axes: DynamicAxes,
    sample: Feeds | None,
    source: ReferenceFn | None,
    recorded: Feeds | None,
    session: Callable[[], Session],
    samples: list[Feeds],
    rtol: float | None = None,
    atol: float | None = None,
    quantized: str | None = None,
    facts: Mapping[str, str] | None = None,
    strict: bool = False,
    named: Mapping[str, Feeds] | None = None,
) -> ValidationReport:
    """Structure, symbolic axes and numeric parity of ``model``: the work of :meth:`Artifact.validate`.

    Parity runs ``session()`` on the sample, its resized variants and ``samples`` against
    ``source`` (the source framework), or on the sample alone against ``recorded`` outputs
    when there is no source. ``quantized`` (a quantization mode) picks default tolerances.
    ``named`` are more cases by name, the export's own choice (a detector's other image sizes, which
    replace the resized copies for it: an image 1 pixel high is not one a detector is made for).
    """
    facts = dict(facts or {})
    detections = facts.get("task") == _detections.TASK
    default_rtol, default_atol = TOLERANCES.get(quantized, TOLERANCES["dynamic"])
    if quantized is not None:
        facts["tolerances"] = f"{quantized} defaults"
    report = ValidationReport(
        rtol=default_rtol if rtol is None else rtol,
        atol=default_atol if atol is None else atol,
        strict=strict,
        facts=facts,
    )
    report.checks.append(check_structure(model, path))
    report.checks.append(check_symbolic_axes(model, dynamic_axes))
    if source is None and samples:
        raise InputError(
            "validate(samples=...) needs the source model to compute expected outputs, and this artifact "
            "has none (it was loaded from a file). Validate right after export, or drop samples=."
        )
    reference: ReferenceFn | Mapping[str, Feeds]
    if source is not None:
        names = list(sample) if sample else []
        if detections:  # a 1-pixel image is no image: the export's own sizes (named) instead of resized copies
            cases = [("sample", sample)] if sample else []
        else:
            cases = variants(sample, dynamic_axes, names) if sample else []
        cases += [(f"samples[{i}]", feeds) for i, feeds in enumerate(samples)]
        cases += list((named or {}).items())
        reference = source
        why = "the export had no sample to compare on; pass validate(samples=[...])"
    elif sample is not None and recorded is not None:
        cases, reference = [("recorded sample", sample)], {"recorded sample": recorded}
    else:
        cases, reference = [], {}
        why = "no source model and no recorded reference outputs"
    if not cases:
        report.checks.append(Check(PARITY, None, why))
        return report
    try:
        runner = session()
    except Exception as err:  # noqa: BLE001 - an unloadable model is a validation failure
        report.checks.append(Check(PARITY, False, f"onnxruntime cannot load the model: {err}"))
        report.errors.append(str(err))
        return report
    made_up = {case for case, _ in cases if case not in ("sample", "recorded sample") and "[" not in case}
    report.distinct_rows = distinct_rows(cases)
    report.sample_only = source is not None and not samples
    check, comparisons, errors = check_parity(
        runner,
        cases,
        reference,
        report.rtol,
        report.atol,
        optional=made_up,
        skipped=report.skipped,
        per_token=per_token_outputs(model),
        strict=strict,
        detections=detections,
    )
    report.checks.append(check)
    report.comparisons.extend(comparisons)
    report.errors.extend(errors)
    return report


def failure(report: ValidationReport, framework: str) -> ValidationError:
    """The error :meth:`Artifact.validate` raises for a failed ``report``: every failure, then what to try."""
    lines = "\n  - ".join(report.failures)
    return ValidationError(
        f"Validation of the {framework} export failed:\n  - {lines}\n{report}\n"
        "Look at the failing cases above: a fixed axis means the exporter specialised a size "
        "(re-export with that axis in dynamic_axes); value errors past tolerance mean the ONNX "
        "model computes something else (try another opset, or for PyTorch the other exporter with "
        "exporter='torchscript' or 'dynamo'). "
        "Pass raise_on_failure=False to get the report without raising.",
        report,
    )
