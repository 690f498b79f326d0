"""The entry point of :meth:`onnxbridge.Artifact.quantize`: check the request, pick the recipe, run it.

Running one recipe against its parent is :mod:`~onnxbridge.quantize._run`; ``"auto"`` is
:mod:`~onnxbridge.quantize._auto`. Anything a tool raises inside becomes a
:class:`QuantizationError` naming the package it came from.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from onnxbridge.core._errors import OnnxBridgeError, QuantizationError, first_line
from onnxbridge.core._types import Feeds, Reference
from onnxbridge.graph import _graph
from onnxbridge.quantize import _auto, _data, _run
from onnxbridge.quantize._dynamic import DynamicInt8
from onnxbridge.quantize._fp16 import Fp16
from onnxbridge.quantize._options import QuantizeOptions
from onnxbridge.quantize._recipe import Recipe
from onnxbridge.quantize._static import StaticQdq
from onnxbridge.quantize._types import QuantizationMode
from onnxbridge.quantize._weight_only import WeightOnly

if TYPE_CHECKING:
    import onnx


def quantize(model: onnx.ModelProto, reference: Reference, framework: str, options: QuantizeOptions) -> _run.Result:
    """Implementation of :meth:`onnxbridge.Artifact.quantize`: ``model`` measured against ``reference``.

    Every failure is an :class:`OnnxBridgeError`; anything else a tool raises inside is
    reported as a :class:`QuantizationError` naming the step.
    """
    mode = options.mode
    samples = _data.samples(model, reference, options.calibration)
    exclude = list(options.exclude)
    try:
        if mode is QuantizationMode.AUTO:
            calibrated = options.calibration is not None
            return _auto.search(model, samples, options.tolerance, options.objective, calibrated=calibrated)
        recipe = _recipe(model, reference, framework, samples, options)
        return _run.run(
            model,
            recipe,
            samples,
            exclude,
            options.tolerance,
            allow_slower=options.allow_slower,
            batch_sizes=options.batch_sizes,
        )
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
    model: onnx.ModelProto, reference: Reference, framework: str, samples: list[Feeds], options: QuantizeOptions
) -> Recipe:
    mode, op_types, exclude = options.mode, options.op_types, list(options.exclude)
    per_channel, keep_io_types, method = options.per_channel, options.keep_io_types, options.method
    bits, block_size = options.bits, options.block_size
    channel = True if per_channel is None else per_channel
    if mode is QuantizationMode.FP16:
        return Fp16(keep_io_types)
    if mode is QuantizationMode.DYNAMIC:
        transformer = op_types is None and _run.looks_like_transformer(model)
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
    one_row = bool(_graph.cache_inputs(model))
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

    return _qat.recipe(model, reference, framework, options.train)
