"""The entry point of :meth:`onnxbridge.Artifact.quantize`: check the request, pick the recipe, run it.

Running one recipe against its parent is :mod:`~onnxbridge.quantize._run`; ``"auto"`` is
:mod:`~onnxbridge.quantize._auto`. Anything a tool raises inside becomes a
:class:`QuantizationError` naming the package it came from.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from onnxbridge._adapter import Feeds
from onnxbridge._errors import InputError, OnnxBridgeError, QuantizationError, first_line
from onnxbridge.quantize import _auto, _data, _run
from onnxbridge.quantize._dynamic import DynamicInt8
from onnxbridge.quantize._fp16 import Fp16
from onnxbridge.quantize._recipe import Recipe
from onnxbridge.quantize._static import StaticQdq
from onnxbridge.quantize._types import QuantizationMode, check_tolerance
from onnxbridge.quantize._weight_only import WeightOnly

if TYPE_CHECKING:
    from onnxbridge._artifact import Artifact

OBJECTIVES = ("latency", "size")


def parse_mode(mode: str | QuantizationMode) -> QuantizationMode:
    """The mode, or :class:`InputError` listing the modes."""
    try:
        return QuantizationMode(mode)
    except ValueError as err:
        raise InputError(
            f"Unknown quantization mode {mode!r}. Use one of: {', '.join(m.value for m in QuantizationMode)}."
        ) from err


def quantize(
    artifact: Artifact,
    mode: str | QuantizationMode,
    *,
    calibration: Any = None,
    method: str = "minmax",
    per_channel: bool | None = None,
    op_types: Sequence[str] | None = None,
    exclude: Iterable[str] = (),
    tolerance: Mapping[str, float] | None = None,
    train: Callable[[Any], Any] | None = None,
    keep_io_types: bool = True,
    objective: str = "latency",
    allow_slower: bool = False,
    bits: int = 8,
    block_size: int = 32,
) -> _run.Result:
    """Implementation of :meth:`onnxbridge.Artifact.quantize`.

    Every failure is an :class:`OnnxBridgeError`; anything else a tool raises inside is
    reported as a :class:`QuantizationError` naming the step.
    """
    mode = parse_mode(mode)
    tolerance = check_tolerance(tolerance)
    if objective not in OBJECTIVES:
        raise InputError(f"objective={objective!r}: use 'latency' or 'size'.")
    if bits not in (4, 8):
        raise InputError(f"bits={bits!r}: weight-only quantization takes 8 or 4.")
    if (
        isinstance(block_size, bool)
        or not isinstance(block_size, int)
        or block_size < 16
        or block_size & (block_size - 1)
    ):
        raise InputError(
            f"block_size={block_size!r}: MatMulNBits takes a power of two >= 16 (32 is the usual choice; "
            "smaller blocks are more accurate and larger)."
        )
    if mode is QuantizationMode.STATIC and calibration is None:
        raise InputError(
            "quantize('static') needs calibration=...: an iterable of samples shaped like the export sample, or "
            "one batched array. A few hundred representative rows are usually enough."
        )
    parent = artifact.model
    samples = _data.samples(parent, artifact.reference, calibration)
    exclude = list(exclude)
    try:
        if mode is QuantizationMode.AUTO:
            return _auto.search(parent, samples, tolerance, objective, calibrated=calibration is not None)
        recipe = _recipe(
            artifact, mode, samples, exclude, method, per_channel, op_types, train, keep_io_types, bits, block_size
        )
        return _run.run(parent, recipe, samples, exclude, tolerance, allow_slower=allow_slower)
    except OnnxBridgeError:
        raise
    except Exception as err:
        message = first_line(err).rstrip(".") or "(no message)"
        raise QuantizationError(
            f"{mode.value} quantization failed in {_failing_package(err)}: {type(err).__name__}: {message}. Try "
            "another mode (quantize('auto') compares them all), or exclude= the nodes or operator types involved."
        ) from err


def _failing_package(err: BaseException) -> str:
    """The top-level package of the innermost frame that raised ``err`` (e.g. ``onnxruntime``)."""
    import traceback

    frames = traceback.extract_tb(err.__traceback__)
    for frame in reversed(frames):
        parts = frame.filename.replace("\\", "/").split("/")
        if "site-packages" in parts and parts.index("site-packages") + 1 < len(parts):
            return parts[parts.index("site-packages") + 1]
    return "onnxbridge"


def _recipe(
    artifact: Artifact,
    mode: QuantizationMode,
    samples: list[Feeds],
    exclude: list[str],
    method: str,
    per_channel: bool | None,
    op_types: Sequence[str] | None,
    train: Callable[[Any], Any] | None,
    keep_io_types: bool,
    bits: int,
    block_size: int,
) -> Recipe:
    channel = True if per_channel is None else per_channel
    if mode is QuantizationMode.FP16:
        return Fp16(keep_io_types)
    if mode is QuantizationMode.DYNAMIC:
        transformer = op_types is None and _run.looks_like_transformer(artifact.model)
        return DynamicInt8(
            per_channel=channel,
            op_types=list(op_types) if op_types else None,
            embeddings=transformer,
            protect="float" if transformer else None,
            keep_float=exclude,
        )
    if mode is QuantizationMode.STATIC:
        return StaticQdq(samples, per_channel=channel, op_types=list(op_types) if op_types else None, method=method)
    # A decoder with a cache runs one token per row at a time, where int8 compute inside MatMulNBits is fastest.
    one_row = any(name.startswith("past_key_values.") for name in artifact.input_names)
    if mode is QuantizationMode.WEIGHT_ONLY:
        return WeightOnly(bits=bits, block_size=block_size, embeddings=True, one_row=one_row)
    if mode in (QuantizationMode.INT4, QuantizationMode.INT8_WEIGHT):
        return WeightOnly(
            bits=4 if mode is QuantizationMode.INT4 else 8,
            block_size=block_size,
            embeddings=True,
            mode=mode,
            one_row=one_row,
        )
    from onnxbridge.quantize import _qat

    return _qat.recipe(artifact, train)
