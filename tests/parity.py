"""Assertions on what validation compared, not on ``report.ok``.

``validate()`` raises on failure and ``ok`` is true when parity was skipped, so ``assert
art.validate().ok`` cannot fail. These helpers assert that the comparison ran, on how many
cases, and how close it came.
"""

from __future__ import annotations

from onnxbridge import ValidationReport

PARITY = "numeric parity"


def assert_parity(report: ValidationReport | None, *, cases: int = 1, max_abs: float | None = None) -> float:
    """Parity ran, compared at least ``cases`` input cases, and every output agreed; returns the worst error."""
    assert report is not None, "the artifact was not validated"
    parity = [c for c in report.checks if c.name.endswith(PARITY)]
    assert parity, f"no parity check ran:\n{report}"
    assert all(c.passed is True for c in parity), f"parity did not pass (skipped or failed):\n{report}"
    compared = {c.case for c in report.comparisons}
    assert len(compared) >= cases, f"compared {sorted(compared)}, wanted at least {cases} cases:\n{report}"
    assert report.errors == [], report.errors
    assert all(c.passed and c.shape == c.reference_shape for c in report.comparisons), str(report)
    worst = max(c.max_abs_error for c in report.comparisons)
    if max_abs is not None:
        assert worst <= max_abs, f"max abs error {worst:.3g} > {max_abs:g}:\n{report}"
    return worst


def assert_generation(report: ValidationReport | None) -> None:
    """Validation replayed the recorded greedy generation and the tokens matched."""
    assert report is not None, "the artifact was not validated"
    generation = [c for c in report.checks if c.name == "generation"]
    assert generation, f"no generation check ran:\n{report}"
    assert generation[0].passed is True, f"generation did not pass (skipped or failed):\n{report}"
    assert "identical" in generation[0].detail, generation[0].detail
