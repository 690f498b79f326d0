"""The vocabulary of quantization and optimization: modes, what was measured, the reports."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from onnxbridge.core._errors import InputError
from onnxbridge.core._tables import text_table

__all__ = [
    "Candidate",
    "OptimizationReport",
    "OutputAccuracy",
    "QuantizationMode",
    "QuantizationReport",
]


class QuantizationMode(str, enum.Enum):
    """The quantization modes :meth:`Artifact.quantize` offers."""

    DYNAMIC = "dynamic"
    STATIC = "static"
    QAT = "qat"
    FP16 = "fp16"
    WEIGHT_ONLY = "weight-only"
    INT4 = "int4"  # weight-only, 4 bits: the usual choice for language models
    INT8_WEIGHT = "int8-weight"  # weight-only, 8 bits
    AUTO = "auto"


TOLERANCE_KEYS = ("cosine", "mean_cosine", "top1", "max_abs")


def check_tolerance(tolerance: Mapping[str, float] | None) -> dict[str, float] | None:
    """The tolerance as floats, or :class:`InputError` naming the keys onnxbridge knows."""
    if tolerance is None:
        return None
    unknown = sorted(set(tolerance) - set(TOLERANCE_KEYS))
    if unknown or not tolerance:
        raise InputError(
            f"tolerance keys {unknown or '(none)'} are not known. Use any of {', '.join(TOLERANCE_KEYS)}, e.g. "
            "tolerance={'cosine': 0.99} (every output row's cosine to the float model) or {'top1': 0.99}."
        )
    try:
        return {k: float(v) for k, v in tolerance.items()}
    except (TypeError, ValueError) as err:
        raise InputError(f"tolerance values must be numbers; got {dict(tolerance)!r}.") from err


@dataclass(frozen=True)
class OutputAccuracy:
    """How one output of the quantized model compares with its float parent.

    Cosines are computed per row (the first axis of each compared output, flattened), per
    sample, so samples of different shapes (dynamic sequence lengths) compare on their own.

    Attributes:
        output: Output name.
        max_abs_error: Largest absolute difference over all compared inputs.
        cosine: Mean row cosine similarity (``None`` for non-float outputs).
        min_cosine: Worst row cosine similarity (``None`` for non-float outputs).
        top1: Fraction of rows whose argmax agrees (``None`` unless it looks like class scores).
    """

    output: str
    max_abs_error: float
    cosine: float | None
    top1: float | None
    min_cosine: float | None = None


@dataclass(frozen=True)
class Candidate:
    """One recipe tried by ``quantize("auto")``, and what it measured.

    Attributes:
        name: The recipe, e.g. ``"dynamic int8 per-channel + int8 embeddings"``.
        min_cosine: Worst row cosine over all float outputs (``None`` if it failed).
        top1: Worst top-1 agreement over class-score outputs (``None`` if none).
        max_abs_error: Largest absolute error over all outputs.
        size_ratio: File size relative to the parent.
        latency_ratio: Latency relative to the parent (batch of the measuring sample, CPU).
        meets: Whether it meets the tolerance.
        error: Why the recipe failed to produce a model, if it did.
    """

    name: str
    min_cosine: float | None
    top1: float | None
    max_abs_error: float | None
    size_ratio: float | None
    latency_ratio: float | None
    meets: bool
    error: str | None = None

    def row(self) -> list[str]:
        """The candidate as table cells."""
        fmt = lambda v, f: "-" if v is None else format(v, f)  # noqa: E731
        return [
            self.name,
            fmt(self.min_cosine, ".4f"),
            "-" if self.top1 is None else f"{self.top1:.2%}",
            fmt(self.max_abs_error, ".3g"),
            "-" if self.size_ratio is None else f"{self.size_ratio:.2f}x",
            "-" if self.latency_ratio is None else f"{self.latency_ratio:.2f}x",
            "yes" if self.meets else ("failed: " + self.error if self.error else "no"),
        ]


CANDIDATE_HEADER = ["recipe", "min cosine", "top-1", "max abs err", "size", "latency", "meets tolerance"]


@dataclass(frozen=True)
class GenerationQuality:
    """How a quantized decoder generates, measured against its float parent.

    Attributes:
        prompts: Prompts generated from (batch 1 each).
        new_tokens: Greedy tokens generated per prompt.
        identical: Prompts whose greedy tokens are all identical to the float model's.
        agreement: Share of new tokens generated before the first difference, over all prompts.
        min_logits_cosine: Worst cosine between the two models' logits over the steps where
            both had generated the same tokens so far.
        mean_logits_cosine: Mean of that cosine.
        tokens_per_second_ratio: Quantized / float tokens per second (median of interleaved
            rounds, batch 1, one thread); above 1 is faster.
    """

    prompts: int
    new_tokens: int
    identical: int
    agreement: float
    min_logits_cosine: float
    mean_logits_cosine: float
    tokens_per_second_ratio: float

    def __str__(self) -> str:
        return (
            f"greedy tokens identical on {self.identical}/{self.prompts} prompts ({self.new_tokens} new tokens each), "
            f"{self.agreement:.0%} of tokens before the first difference; logits cosine min "
            f"{self.min_logits_cosine:.4f}, mean {self.mean_logits_cosine:.4f}; tokens/s {self.tokens_per_second_ratio:.2f}x"
        )


@dataclass
class QuantizationReport:
    """What :meth:`Artifact.quantize` did and measured.

    ``str(report)`` prints a summary table.

    Attributes:
        mode: The mode asked for.
        settings: The recipe's settings (what was quantized and how).
        size_before: Parent file size, in bytes.
        size_after: Result file size, in bytes.
        accuracy: One :class:`OutputAccuracy` per output.
        nodes_left_float: Compute nodes that still run in float.
        tolerance: The tolerance asked for, if any.
        passed: Whether the tolerance is met (``None`` without a tolerance).
        latency_ratio: Result / parent latency on CPU at batch 1, with onnxruntime's default threads.
        latency_ratios: Result / parent latency at every batch measured (batch size -> ratio): 1, the
            measuring sample's, 8, and the ``batch_sizes`` asked for.
        attempts: What the tolerance repair tried, in order.
        warnings: What the user should know (slower than float, float kept, ...).
        candidates: For ``"auto"``: every recipe tried, with its measurements.
        chosen: For ``"auto"``: the name of the recipe returned.
        kept_float: The quantized model was slower than the float one on this CPU, so the
            float model was kept (see ``allow_slower``).
        optimized: What graph optimization ran before quantizing, if any.
        generation: For a text-generation decoder: greedy agreement with the float model,
            logits cosine and tokens/s ratio over a prompt set.
    """

    mode: QuantizationMode
    settings: dict[str, Any]
    size_before: int
    size_after: int
    accuracy: list[OutputAccuracy] = field(default_factory=list)
    nodes_left_float: list[str] = field(default_factory=list)
    tolerance: dict[str, float] | None = None
    passed: bool | None = None
    latency_ratio: float | None = None
    latency_ratios: dict[int, float] = field(default_factory=dict)
    attempts: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    candidates: list[Candidate] = field(default_factory=list)
    chosen: str | None = None
    kept_float: bool = False
    optimized: dict[str, int] | None = None
    generation: GenerationQuality | None = None

    @property
    def size_ratio(self) -> float:
        """File size of the quantized model relative to its parent."""
        return self.size_after / self.size_before if self.size_before else float("nan")

    @property
    def min_cosine(self) -> float | None:
        """The worst row cosine over every float output (``None`` if there is none)."""
        values = [a.min_cosine for a in self.accuracy if a.min_cosine is not None]
        return min(values) if values else None

    def summary(self) -> dict[str, Any]:
        """A JSON-friendly summary (stored in saved models' metadata)."""
        return {
            "mode": self.mode.value,
            "settings": {k: (list(v) if isinstance(v, (tuple, set)) else v) for k, v in self.settings.items()},
            "size_before": self.size_before,
            "size_after": self.size_after,
            "accuracy": [vars(a) for a in self.accuracy],
            "nodes_left_float": self.nodes_left_float,
            "tolerance": self.tolerance,
            "passed": self.passed,
            "latency_ratio": self.latency_ratio,
            "latency_ratios": {str(batch): ratio for batch, ratio in self.latency_ratios.items()},
            **({"chosen": self.chosen} if self.chosen else {}),
            **({"kept_float": True} if self.kept_float else {}),
            **({"generation": vars(self.generation)} if self.generation is not None else {}),
        }

    def table(self) -> str:
        """The candidates of ``quantize("auto")`` as a text table ('' for other modes)."""
        if not self.candidates:
            return ""
        return "\n".join(text_table(CANDIDATE_HEADER, [c.row() for c in self.candidates]))

    def __str__(self) -> str:
        title = f"Quantization {self.mode.value}" + (f" -> {self.chosen}" if self.chosen else "")
        lines = [
            f"{title}: size {self.size_before / 1024:.0f} KiB -> {self.size_after / 1024:.0f} KiB "
            f"({self.size_ratio:.2f}x)"
            + (f", latency {_latencies(self.latency_ratios)} of the float model" if self.latency_ratios else "")
            + (
                f", latency {self.latency_ratio:.2f}x of the float model"
                if self.latency_ratio and not self.latency_ratios
                else ""
            ),
            f"  settings: {', '.join(f'{k}={v}' for k, v in self.settings.items())}",
        ]
        if self.optimized is not None:
            lines.append(f"  optimized first: {_counts(self.optimized)}")
        if self.tolerance is not None:
            lines.append(f"  tolerance {self.tolerance}: {'met' if self.passed else 'NOT met'}")
        rows = [
            [
                a.output,
                f"{a.max_abs_error:.3g}",
                "-" if a.cosine is None else f"{a.cosine:.5f}",
                "-" if a.min_cosine is None else f"{a.min_cosine:.5f}",
                "-" if a.top1 is None else f"{a.top1:.2%}",
            ]
            for a in self.accuracy
        ]
        lines += text_table(["output", "max abs err", "mean cosine", "min cosine", "top-1"], rows)
        left = ", ".join(self.nodes_left_float[:12]) + (" ..." if len(self.nodes_left_float) > 12 else "")
        lines.append(f"  nodes left in float ({len(self.nodes_left_float)}): {left or '-'}")
        if self.generation is not None:
            lines.append(f"  generation: {self.generation}")
        if self.candidates:
            lines.append("  candidates:")
            lines += text_table(CANDIDATE_HEADER, [c.row() for c in self.candidates], indent="    ")
        lines += [f"  warning: {w}" for w in self.warnings]
        return "\n".join(lines)


def _latencies(ratios: dict[int, float]) -> str:
    return ", ".join(f"{ratio:.2f}x at batch {batch}" for batch, ratio in sorted(ratios.items()))


def _counts(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{n} {k}" for k, n in sorted(counts.items()) if n) or "nothing fused"


@dataclass
class OptimizationReport:
    """What :meth:`Artifact.optimize` did and measured.

    Attributes:
        level: The level asked for.
        steps: The optimizers that ran, in order, with what each did.
        fused: Fused operators in the result, counted by type (e.g. ``{"Attention": 6}``).
        ops_before: Node count of the parent.
        ops_after: Node count of the result.
        max_abs_error: Largest absolute output difference from the parent over the samples.
        latency_ratio: Result / parent latency on CPU, one thread.
        onnxruntime_only: The result uses onnxruntime's contrib operators (``com.microsoft``)
            and runs only on onnxruntime.
        warnings: What the user should know.
    """

    level: str
    steps: list[str] = field(default_factory=list)
    fused: dict[str, int] = field(default_factory=dict)
    ops_before: int = 0
    ops_after: int = 0
    max_abs_error: float | None = None
    latency_ratio: float | None = None
    onnxruntime_only: bool = False
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """A JSON-friendly summary (stored in saved models' metadata)."""
        return {k: v for k, v in vars(self).items() if k != "warnings"}

    def __str__(self) -> str:
        lines = [
            f"Optimization ({self.level}): {self.ops_before} -> {self.ops_after} nodes"
            + (f", latency {self.latency_ratio:.2f}x of the parent" if self.latency_ratio else "")
            + ("" if self.max_abs_error is None else f", max abs error {self.max_abs_error:.3g}"),
            f"  fused: {_counts(self.fused)}",
            *[f"  step: {s}" for s in self.steps],
        ]
        if self.onnxruntime_only:
            lines.append("  uses onnxruntime contrib operators (com.microsoft): runs on onnxruntime only")
        lines += [f"  warning: {w}" for w in self.warnings]
        return "\n".join(lines)
