"""What the user asked of :meth:`Artifact.quantize`, as one value the orchestration and recipes share."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypedDict

from onnxbridge.core._errors import InputError
from onnxbridge.quantize._types import QuantizationMode, check_tolerance

__all__ = ["OBJECTIVES", "QuantizeKwargs", "QuantizeOptions", "parse_mode"]

OBJECTIVES = ("latency", "size")


def parse_mode(mode: str | QuantizationMode) -> QuantizationMode:
    """The mode, or :class:`InputError` listing the modes."""
    try:
        return QuantizationMode(mode)
    except ValueError as err:
        raise InputError(
            f"Unknown quantization mode {mode!r}. Use one of: {', '.join(m.value for m in QuantizationMode)}."
        ) from err


@dataclass(frozen=True)
class QuantizeOptions:
    """The settings of one quantization, checked when made (see :meth:`Artifact.quantize` for each)."""

    mode: QuantizationMode
    calibration: Any = None
    method: str = "minmax"
    per_channel: bool | None = None
    op_types: tuple[str, ...] | None = None
    exclude: tuple[str, ...] = ()
    tolerance: Mapping[str, float] | None = None
    train: Callable[[Any], Any] | None = field(default=None, repr=False)
    keep_io_types: bool = True
    objective: str = "latency"
    allow_slower: bool = False
    bits: int = 8
    block_size: int = 32
    batch_sizes: tuple[int, ...] = ()

    @classmethod
    def of(cls, mode: str | QuantizationMode, **given: Any) -> QuantizeOptions:
        """Options from :meth:`Artifact.quantize`'s keywords: mode parsed, sequences frozen, all checked."""
        unknown = sorted(set(given) - set(cls.__dataclass_fields__) - {"mode"})
        if unknown:
            raise InputError(
                f"quantize() got unknown option(s) {', '.join(unknown)}; it takes "
                f"{', '.join(f for f in cls.__dataclass_fields__ if f != 'mode')} (see Artifact.quantize)."
            )
        op_types: Sequence[str] | None = given.pop("op_types", None)
        exclude = given.pop("exclude", ())
        batch_sizes = given.pop("batch_sizes", ())
        return cls(
            parse_mode(mode),
            op_types=tuple(op_types) if op_types else None,
            exclude=tuple(exclude),
            batch_sizes=tuple(batch_sizes) if isinstance(batch_sizes, Iterable) else (batch_sizes,),
            **given,
        )

    def __post_init__(self) -> None:
        object.__setattr__(self, "tolerance", check_tolerance(self.tolerance))
        if self.objective not in OBJECTIVES:
            raise InputError(f"objective={self.objective!r}: use 'latency' or 'size'.")
        if self.bits not in (4, 8):
            raise InputError(f"bits={self.bits!r}: weight-only quantization takes 8 or 4.")
        size = self.block_size
        if isinstance(size, bool) or not isinstance(size, int) or size < 16 or size & (size - 1):
            raise InputError(
                f"block_size={size!r}: MatMulNBits takes a power of two >= 16 (32 is the usual choice; "
                "smaller blocks are more accurate and larger)."
            )
        wrong = [b for b in self.batch_sizes if isinstance(b, bool) or not isinstance(b, int) or b < 1]
        if wrong:
            raise InputError(
                f"batch_sizes={list(self.batch_sizes)!r}: give the batch sizes you run, as positive integers "
                "(e.g. [1, 32]); the latency is compared with the float model at each."
            )
        if self.mode is QuantizationMode.STATIC and self.calibration is None:
            raise InputError(
                "quantize('static') needs calibration=...: an iterable of samples shaped like the export sample, or "
                "one batched array. A few hundred representative rows are usually enough."
            )


class QuantizeKwargs(TypedDict, total=False):
    """The keyword arguments of :meth:`Artifact.quantize` after the mode, as it documents them."""

    calibration: Any
    method: str
    per_channel: bool | None
    op_types: Sequence[str] | None
    exclude: Iterable[str]
    tolerance: Mapping[str, float] | None
    train: Callable[[Any], Any] | None
    keep_io_types: bool
    objective: str
    allow_slower: bool
    bits: int
    block_size: int
    batch_sizes: Iterable[int]
