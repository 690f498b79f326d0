"""The report of :meth:`Artifact.validate`: each check, each output compared, noise told from failure.

A value mismatch is a failure, never "succeeded with a warning"; a comparison that passed only
within float summation noise says so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from onnxbridge.core._tables import text_table

__all__ = ["FEW_ROWS", "NOISE_ULPS", "PARITY", "Check", "OutputComparison", "ValidationReport", "float32_noise"]

NOISE_ULPS = 128  # float summation noise allowed, in units in the last place of an output's largest value


def float32_noise(values: Any) -> float:
    """:data:`NOISE_ULPS` float32 ulp of the largest ``|value|`` (0 for none): summation noise at that scale."""
    return float(np.finfo(np.float32).eps) * NOISE_ULPS * float(np.abs(np.asarray(values)).max(initial=0.0))


FEW_ROWS = 32  # fewer distinct input rows than this, from the sample alone, and the report asks for real ones
PARITY = "numeric parity"


@dataclass(frozen=True)
class Check:
    """One validation step and its outcome.

    Attributes:
        name: ``"onnx.checker"``, ``"symbolic axes"`` or ``"numeric parity"``.
        passed: ``True``/``False``, or ``None`` when the step could not run (skipped).
        detail: What was checked, or why it failed or was skipped.
    """

    name: str
    passed: bool | None
    detail: str


@dataclass(frozen=True)
class OutputComparison:
    """onnxruntime vs the source framework for one output on one input case.

    Attributes:
        case: Which inputs, e.g. ``"sample"`` or ``"batch=3"``.
        output: Output name.
        shape: Shape onnxruntime produced.
        reference_shape: Shape the source framework produced.
        max_abs_error: Largest absolute difference.
        max_rel_error: Largest difference relative to the reference's magnitude.
        mismatch_fraction: Fraction of elements outside ``atol + rtol * |reference|``.
        passed: Whether shapes match and every element is within tolerance (or within noise).
        noise: Passed only within float summation noise: some element is outside
            ``atol + rtol * |reference|`` but every one is within that plus the noise band
            (:data:`NOISE_ULPS` units in the last place of the output's float type, times the
            largest ``|reference|`` of the output). A detector's masks and keypoints are noise
            too where float noise in a box moved them by one whole pixel, and no further
            (``checks._detections.placed_within_noise``).
    """

    case: str
    output: str
    shape: tuple[int, ...]
    reference_shape: tuple[int, ...]
    max_abs_error: float
    max_rel_error: float
    mismatch_fraction: float
    passed: bool
    noise: bool = False


@dataclass
class ValidationReport:
    """Everything :meth:`onnxbridge.Artifact.validate` found.

    ``str(report)`` is a readable table. ``report.ok`` is true only when no check
    failed; skipped checks are listed as skipped, not as passed. Comparisons that passed only
    within float summation noise are marked ``noise`` (``report.noise``); ``strict`` reports
    judged by ``rtol``/``atol`` alone.
    """

    rtol: float
    atol: float
    strict: bool = False
    checks: list[Check] = field(default_factory=list)
    comparisons: list[OutputComparison] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    """Cases that could not be compared at all (a run failed, an output was missing)."""
    skipped: list[str] = field(default_factory=list)
    """Resized variants that the source model itself refused (not a failure of the export)."""
    facts: dict[str, str] = field(default_factory=dict)
    """Export facts that matter when reading the figures, e.g. ``{"precision": "float32"}``."""
    distinct_rows: int | None = None
    """How many different input rows (batch entries) the parity cases held, over all cases."""
    sample_only: bool = False
    """The rows came from the export sample alone, and ``samples=`` could add real ones."""

    @property
    def ok(self) -> bool:
        """True when no check failed."""
        return all(c.passed is not False for c in self.checks)

    @property
    def noise(self) -> list[OutputComparison]:
        """Comparisons that passed only within float summation noise (none when ``strict``)."""
        return [c for c in self.comparisons if c.noise]

    @property
    def failures(self) -> list[str]:
        """One line per failed check, per failed output comparison, and per failed run."""
        lines = [f"{c.name}: {c.detail}" for c in self.checks if c.passed is False and c.name != PARITY]
        for comp in self.comparisons:
            if comp.passed:
                continue
            if comp.shape != comp.reference_shape:
                lines.append(
                    f"{PARITY} [{comp.case}] {comp.output}: shape {comp.shape} vs reference {comp.reference_shape}"
                )
            else:
                lines.append(
                    f"{PARITY} [{comp.case}] {comp.output}: max abs error {comp.max_abs_error:.3g}, "
                    f"{comp.mismatch_fraction:.1%} of elements outside rtol={self.rtol:g}, atol={self.atol:g}"
                )
        return lines + [f"{PARITY} {error}" for error in self.errors]

    def summary(self) -> dict[str, Any]:
        """A small JSON-friendly summary (stored in saved models' metadata)."""
        worst = max((c.max_abs_error for c in self.comparisons), default=None)
        return {
            "ok": self.ok,
            "rtol": self.rtol,
            "atol": self.atol,
            "checks": {c.name: _status(c.passed) for c in self.checks},
            "cases": sorted({c.case for c in self.comparisons}),
            "max_abs_error": worst,
            "strict": self.strict,
            **({"noise": [f"[{c.case}] {c.output}" for c in self.noise]} if self.noise else {}),
            **({"skipped": self.skipped} if self.skipped else {}),
            **({"facts": self.facts} if self.facts else {}),
            **({"distinct_rows": self.distinct_rows} if self.distinct_rows is not None else {}),
        }

    def __str__(self) -> str:
        facts = "".join(f", {key}={value}" for key, value in sorted(self.facts.items()))
        band = ", strict" if self.strict else f", noise band {NOISE_ULPS} ulp x max|reference|"
        lines = [
            f"Validation {'PASSED' if self.ok else 'FAILED'} (rtol={self.rtol:g}, atol={self.atol:g}{band}{facts})"
        ]
        for check in self.checks:
            lines.append(f"  [{_status(check.passed):^7}] {check.name}: {check.detail}")
        if self.comparisons:
            header = ("case", "output", "shape", "max abs err", "max rel err", "mismatch", "ok")
            rows = [
                (
                    c.case,
                    c.output,
                    "x".join(map(str, c.shape))
                    + ("" if c.shape == c.reference_shape else " (ref " + "x".join(map(str, c.reference_shape)) + ")"),
                    f"{c.max_abs_error:.3g}",
                    f"{c.max_rel_error:.3g}",
                    f"{c.mismatch_fraction:.2%}",
                    ("noise" if c.noise else "yes") if c.passed else "NO",
                )
                for c in self.comparisons
            ]
            lines += text_table(header, rows)
        lines += [f"  skipped {case}" for case in self.skipped]
        if self.distinct_rows is not None:
            lines.append(f"  compared {self.distinct_rows} distinct input row(s)" + self._rows_hint())
        return "\n".join(lines)

    def _rows_hint(self) -> str:
        if not self.sample_only or self.distinct_rows is None or self.distinct_rows >= FEW_ROWS:
            return ""
        return (
            ": the export sample and copies of it resized. Pass validate(samples=[X]) with real rows (a "
            "held-out set) to check the model where it will be used."
        )

    def to_json(self) -> str:
        """The summary as a JSON string."""
        return json.dumps(self.summary(), sort_keys=True)


def _status(passed: bool | None) -> str:
    return {True: "pass", False: "FAIL", None: "skipped"}[passed]
