"""Validation's generation check: greedy tokens in onnxruntime against the tokens the source recorded."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from onnxbridge.checks._validation import Check, ValidationReport, failure
from onnxbridge.core._errors import first_line
from onnxbridge.generation._decoding import Generated
from onnxbridge.generation._spec import GenerationSpec, GreedyRecord

__all__ = ["GENERATION", "check_generation", "conclude"]

GENERATION = "generation"


def check_generation(
    run: Callable[[GreedyRecord], Generated],
    spec: GenerationSpec,
    *,
    rtol: float,
    atol: float,
    quantized: str | None = None,
) -> Check:
    """Greedy generation in onnxruntime against the source's recorded tokens (and logits at each step).

    A quantized model is not expected to keep every token; its agreement is reported and the
    check is neither passed nor failed.
    """
    record = spec.record
    if record is None or record.steps == 0:
        return Check(GENERATION, None, "no recorded generation from the source model to compare with")
    try:
        generated = run(record)
    except Exception as err:  # noqa: BLE001 - a generation that cannot run is a failed check
        return Check(GENERATION, False, f"greedy generation failed in onnxruntime: {first_line(err)}")
    prompt = record.input_ids.shape[1]
    want, got = record.tokens, generated.tokens
    if record.encoder_inputs is None:
        lengths = ", ".join(str(int(n)) for n in record.attention_mask.sum(axis=1))
        where = f"{record.steps} steps from {want.shape[0]} prompts of {lengths} tokens (left-padded)"
    else:
        where = f"{record.steps} steps from {want.shape[0]} encoder inputs"
    first = _first_difference(got[:, prompt:], want[:, prompt:])
    if quantized is not None:
        same = "identical" if first is None else f"identical until step {first[0]} (row {first[1]})"
        return Check(GENERATION, None, f"{quantized} model: greedy tokens {same} over {where}; not required")
    if first is not None:
        step, row = first
        g = int(got[row, prompt + step]) if prompt + step < got.shape[1] else None
        w = int(want[row, prompt + step]) if prompt + step < want.shape[1] else None
        detail = (
            f"greedy tokens differ at step {step}, row {row} (sequence position {prompt + step}): onnxruntime chose "
            f"{g}, the source model {w}"
        )
        if record.logits is not None and step < len(generated.logits):
            gap = float(np.abs(generated.logits[step][row] - record.logits[step][row]).max())
            detail += f"; logits at that step differ by up to {gap:.3g}"
        return Check(GENERATION, False, detail)
    if record.logits is None:
        return Check(GENERATION, True, f"greedy tokens identical to the recorded source tokens over {where}")
    worst = 0.0
    for step, (mine, theirs) in enumerate(zip(generated.logits, record.logits, strict=False)):
        diff = np.where(mine == theirs, 0.0, np.abs(mine.astype(np.float64) - theirs))  # equal infinities agree
        worst = max(worst, float(diff.max()))
        bad = diff > atol + rtol * row_scale(theirs)
        if bad.any():
            row = int(np.argwhere(bad)[0][0])
            return Check(
                GENERATION,
                False,
                f"tokens agree but logits differ at step {step}, row {row}: max abs error {float(diff.max()):.3g} "
                f"(rtol={rtol:g}, atol={atol:g})",
            )
    return Check(
        GENERATION, True, f"greedy tokens identical to the source over {where}; logits max abs error {worst:.3g}"
    )


def row_scale(logits: np.ndarray) -> np.ndarray:
    """Each row's largest finite magnitude, per row: the scale a logit's error is judged at.

    A token is chosen from a whole row (softmax does not change when the row shifts), so an
    error of 2e-5 on a logit near 0 in a row reaching 4 is float noise, not a different answer;
    element-wise relative tolerance would call it a failure.
    """
    finite = np.where(np.isfinite(logits), np.abs(logits), 0.0)
    return finite.max(axis=-1, keepdims=True)


def _first_difference(got: np.ndarray, want: np.ndarray) -> tuple[int, int] | None:
    """(step, row) of the first token that differs, or None."""
    steps = max(got.shape[1], want.shape[1])
    for step in range(steps):
        for row in range(want.shape[0]):
            g = got[row, step] if step < got.shape[1] else None
            w = want[row, step] if step < want.shape[1] else None
            if g != w:
                return step, row
    return None


def conclude(
    report: ValidationReport,
    spec: GenerationSpec | None,
    replay: Callable[[GreedyRecord], Generated] | None,
    *,
    quantized: str | None,
    framework: str,
    raise_on_failure: bool,
) -> ValidationReport:
    """Finish a validation: add the generation check (when there is something to replay), raise on failure."""
    if spec is not None and replay is not None:
        report.checks.append(check_generation(replay, spec, rtol=report.rtol, atol=report.atol, quantized=quantized))
    if not report.ok and raise_on_failure:
        raise failure(report, framework)
    return report
