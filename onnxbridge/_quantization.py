"""Quantization that measures what it did: dynamic, static (QDQ), QAT and fp16.

onnxruntime's quantization tools do the work; onnxbridge chooses defaults that keep
accuracy and speed (per-channel int8 weights, convolutions left in float for dynamic
quantization), measures every result against its float parent, and, given a tolerance,
leaves the most sensitive nodes in float until the result passes, or says it could not.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from onnxbridge._adapter import Exported, Feeds
from onnxbridge._deps import require
from onnxbridge._errors import InputError, OnnxBridgeError, QuantizationError
from onnxbridge._session import as_feeds

if TYPE_CHECKING:
    import onnx

    from onnxbridge._artifact import Artifact

__all__ = ["OutputAccuracy", "QuantizationMode", "QuantizationReport"]


class QuantizationMode(str, enum.Enum):
    """The quantization modes :meth:`Artifact.quantize` offers."""

    DYNAMIC = "dynamic"
    STATIC = "static"
    QAT = "qat"
    FP16 = "fp16"


TOLERANCE_KEYS = ("cosine", "top1", "max_abs")
# Default validation tolerances of a quantized artifact (its parent's are rtol=1e-3, atol=1e-5).
VALIDATION_TOLERANCES = {
    QuantizationMode.FP16: (1e-2, 1e-3),
    QuantizationMode.DYNAMIC: (0.1, 0.1),
    QuantizationMode.STATIC: (0.1, 0.1),
    QuantizationMode.QAT: (0.1, 0.1),
}
_DYNAMIC_OPS = ("MatMul", "Attention", "LSTM")  # Conv stays float: ConvInteger is slower than float conv
_STATIC_OPS = None  # every op type onnxruntime's QDQ quantizer supports
_MAX_REPAIR_CANDIDATES = 48


@dataclass(frozen=True)
class OutputAccuracy:
    """How one output of the quantized model compares with its float parent.

    Attributes:
        output: Output name.
        max_abs_error: Largest absolute difference over all compared inputs.
        cosine: Mean cosine similarity of rows (``None`` for non-float outputs).
        top1: Fraction of rows whose argmax agrees (``None`` unless it looks like class scores).
    """

    output: str
    max_abs_error: float
    cosine: float | None
    top1: float | None


@dataclass
class QuantizationReport:
    """What :meth:`Artifact.quantize` did and measured.

    ``str(report)`` prints a summary table.
    """

    mode: QuantizationMode
    settings: dict[str, Any]
    size_before: int
    size_after: int
    accuracy: list[OutputAccuracy] = field(default_factory=list)
    nodes_left_float: list[str] = field(default_factory=list)
    tolerance: dict[str, float] | None = None
    passed: bool | None = None
    latency_ratio: float | None = None  # quantized / parent, batch 1, CPU
    attempts: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def size_ratio(self) -> float:
        """File size of the quantized model relative to its parent."""
        return self.size_after / self.size_before if self.size_before else float("nan")

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
        }

    def __str__(self) -> str:
        lines = [
            f"Quantization {self.mode.value}: size {self.size_before / 1024:.0f} KiB -> {self.size_after / 1024:.0f} KiB "
            f"({self.size_ratio:.2f}x)"
            + (f", batch-1 latency {self.latency_ratio:.2f}x of the float model" if self.latency_ratio else ""),
            f"  settings: {', '.join(f'{k}={v}' for k, v in self.settings.items())}",
        ]
        if self.tolerance is not None:
            lines.append(f"  tolerance {self.tolerance}: {'met' if self.passed else 'NOT met'}")
        header = ("output", "max abs err", "cosine", "top-1")
        rows = [
            (
                a.output,
                f"{a.max_abs_error:.3g}",
                "-" if a.cosine is None else f"{a.cosine:.5f}",
                "-" if a.top1 is None else f"{a.top1:.2%}",
            )
            for a in self.accuracy
        ]
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        lines += [
            "  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in [header, *rows]
        ]
        left = ", ".join(self.nodes_left_float[:12]) + (" ..." if len(self.nodes_left_float) > 12 else "")
        lines.append(f"  nodes left in float ({len(self.nodes_left_float)}): {left or '-'}")
        lines += [f"  warning: {w}" for w in self.warnings]
        return "\n".join(lines)


# -- entry point ----------------------------------------------------------------------------------
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
) -> Artifact:
    """Implementation of :meth:`onnxbridge.Artifact.quantize`."""
    try:
        mode = QuantizationMode(mode)
    except ValueError as err:
        raise InputError(
            f"Unknown quantization mode {mode!r}. Use one of: {', '.join(m.value for m in QuantizationMode)}."
        ) from err
    tolerance = _check_tolerance(tolerance)
    exclude = list(exclude)
    samples = _samples(artifact, calibration)
    if mode is QuantizationMode.FP16:
        build: Any = _Fp16(keep_io_types)
    elif mode is QuantizationMode.DYNAMIC:
        build = _OrtQuantizer(
            mode, per_channel=True if per_channel is None else per_channel, op_types=list(op_types or _DYNAMIC_OPS)
        )
    elif mode is QuantizationMode.STATIC:
        if calibration is None:
            raise InputError(
                "quantize('static') needs calibration=...: an iterable of samples shaped like the export sample, or "
                "one batched array. A few hundred representative rows are usually enough."
            )
        build = _OrtQuantizer(
            mode,
            per_channel=True if per_channel is None else per_channel,
            op_types=list(op_types) if op_types else None,
            calibration=samples,
            method=method,
        )
    else:
        build = _qat_builder(artifact, train)
    model, left = build(artifact.model, exclude)
    report = QuantizationReport(
        mode, build.settings(exclude), artifact.model.ByteSize(), model.ByteSize(), tolerance=tolerance
    )
    report.accuracy = measure(artifact.model, model, samples)
    report.passed = _meets(report.accuracy, tolerance) if tolerance else None
    if tolerance and not report.passed:
        model, left = _repair(artifact.model, build, exclude, samples, tolerance, report)
    report.nodes_left_float = left
    report.size_after = model.ByteSize()
    report.latency_ratio = _latency_ratio(artifact.model, model, samples[0])
    if report.latency_ratio and report.latency_ratio > 1.05:
        report.warnings.append(
            f"the quantized model ran {report.latency_ratio:.2f}x as long as the float one at batch 1 on this CPU; "
            "keep the float model here, or try another mode"
        )
    return _child(artifact, model, report, getattr(build, "source", None))


def _check_tolerance(tolerance: Mapping[str, float] | None) -> dict[str, float] | None:
    if tolerance is None:
        return None
    unknown = sorted(set(tolerance) - set(TOLERANCE_KEYS))
    if unknown or not tolerance:
        raise InputError(
            f"tolerance keys {unknown or '(none)'} are not known. Use any of {', '.join(TOLERANCE_KEYS)}, e.g. "
            "tolerance={'cosine': 0.99} (mean row cosine to the float model) or {'top1': 0.99}."
        )
    return {k: float(v) for k, v in tolerance.items()}


def _samples(artifact: Artifact, calibration: Any) -> list[Feeds]:
    """Inputs to calibrate and measure on: the calibration data, else the sample and its variants."""
    from onnxbridge import _graph, _validation

    names = artifact.input_names
    dtypes = _graph.input_dtypes(artifact.model)
    if calibration is not None:
        if (
            isinstance(calibration, np.ndarray)
            or _is_tensor(calibration)
            or (type(calibration).__module__.startswith("pandas") and hasattr(calibration, "columns"))
        ):
            batched = as_feeds(calibration, names, "calibration", dtypes)
            rows = len(next(iter(batched.values())))
            step = 16 if _batch_dynamic(artifact) else rows
            return [{k: v[i : i + step] for k, v in batched.items()} for i in range(0, rows, step)]
        items = list(calibration)
        if not items:
            raise InputError("calibration is empty; pass at least one sample.")
        feeds = [as_feeds(item, names, f"calibration[{i}]", dtypes) for i, item in enumerate(items)]
        for i, item in enumerate(feeds):
            missing = sorted(set(names) - set(item))
            if missing:
                raise InputError(
                    f"calibration[{i}] lacks inputs {missing}; each sample must have the model's inputs {names}."
                )
            for name in names:
                want = dtypes.get(name)
                if want is not None and item[name].dtype != want:
                    item[name] = item[name].astype(want)
        return feeds
    if artifact._sample is None:
        raise InputError(
            "This artifact has no export sample to measure the quantized model on; pass calibration=[...] samples."
        )
    sample = {k: v for k, v in artifact._sample.items() if k in names}
    return [feeds for _, feeds in _validation.variants(sample, artifact.dynamic_axes, list(sample))]


def _is_tensor(value: Any) -> bool:
    return type(value).__module__.split(".")[0] in ("torch", "tensorflow") and hasattr(value, "shape")


def _batch_dynamic(artifact: Artifact) -> bool:
    return all(0 in artifact.dynamic_axes.get(name, {}) for name in artifact.input_names)


# -- builders -------------------------------------------------------------------------------------
class _Fp16:
    def __init__(self, keep_io_types: bool) -> None:
        self.keep_io_types = keep_io_types

    def settings(self, exclude: list[str]) -> dict[str, Any]:
        return {"keep_io_types": self.keep_io_types, **({"exclude": exclude} if exclude else {})}

    def candidates(self, model: onnx.ModelProto) -> list[str]:
        return [n.name for n in model.graph.node if n.name]

    def __call__(self, model: onnx.ModelProto, exclude: list[str]) -> tuple[onnx.ModelProto, list[str]]:
        float16 = require("onnxconverter_common.float16", purpose="fp16 conversion", extra="quantization")
        names = set(exclude)
        block = [n.name for n in model.graph.node if n.name in names or n.op_type in names]
        converted = float16.convert_float_to_float16(model, keep_io_types=self.keep_io_types, node_block_list=block)
        return converted, block


class _OrtQuantizer:
    """Runs quantize_dynamic or quantize_static from onnxruntime, after its pre-processing."""

    def __init__(
        self,
        mode: QuantizationMode,
        *,
        per_channel: bool,
        op_types: list[str] | None,
        calibration: list[Feeds] | None = None,
        method: str = "minmax",
    ) -> None:
        self.mode, self.per_channel, self.op_types, self.calibration = mode, per_channel, op_types, calibration
        methods = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}
        if method not in methods:
            raise InputError(f"method={method!r}: expected one of {', '.join(methods)}.")
        self.method = methods[method]

    def settings(self, exclude: list[str]) -> dict[str, Any]:
        settings: dict[str, Any] = {"per_channel": self.per_channel, "weights": "int8"}
        settings["op_types"] = self.op_types or "all supported"
        if self.mode is QuantizationMode.STATIC:
            settings |= {"format": "QDQ", "activations": "uint8", "calibration": self.method}
        if exclude:
            settings["exclude"] = exclude
        return settings

    def candidates(self, model: onnx.ModelProto) -> list[str]:
        """Compute nodes the repair loop may leave in float (quantizing the rest alone gains nothing)."""
        types = set(_COMPUTE_OPS) | {"Gather"}
        if self.op_types:
            types &= set(self.op_types)
        prepared = self._prepare(model)
        return [n.name for n in prepared.graph.node if n.name and n.op_type in types]

    def _prepare(self, model: onnx.ModelProto) -> onnx.ModelProto:
        if not hasattr(self, "_prepared"):
            self._prepared = _preprocess(model, dynamic=self.mode is QuantizationMode.DYNAMIC)
        return self._prepared

    def __call__(self, model: onnx.ModelProto, exclude: list[str]) -> tuple[onnx.ModelProto, list[str]]:
        import onnx
        from onnxruntime import quantization as q

        prepared = self._prepare(model)
        names = set(exclude)
        excluded = [n.name for n in prepared.graph.node if n.name in names or n.op_type in names]
        with tempfile.TemporaryDirectory() as tmp:
            source, target = Path(tmp) / "float.onnx", Path(tmp) / "quantized.onnx"
            onnx.save_model(prepared, str(source))
            if self.mode is QuantizationMode.DYNAMIC:
                q.quantize_dynamic(
                    str(source),
                    str(target),
                    op_types_to_quantize=self.op_types,
                    per_channel=self.per_channel,
                    weight_type=q.QuantType.QInt8,
                    nodes_to_exclude=excluded,
                    extra_options={"MatMulConstBOnly": True},
                )
            else:
                assert self.calibration is not None
                q.quantize_static(
                    str(source),
                    str(target),
                    _Reader(self.calibration),
                    quant_format=q.QuantFormat.QDQ,
                    op_types_to_quantize=self.op_types,
                    per_channel=self.per_channel,
                    activation_type=q.QuantType.QUInt8,
                    weight_type=q.QuantType.QInt8,
                    nodes_to_exclude=excluded,
                    calibrate_method=getattr(q.CalibrationMethod, self.method),
                )
            quantized = onnx.load_model(str(target))
        return quantized, float_nodes(quantized)


class _Reader:
    """onnxruntime's CalibrationDataReader over a list of feeds."""

    def __init__(self, samples: list[Feeds]) -> None:
        self.samples = iter(samples)

    def get_next(self) -> Feeds | None:
        return next(self.samples, None)


def _preprocess(model: onnx.ModelProto, *, dynamic: bool) -> onnx.ModelProto:
    """Onnxruntime's quantization pre-processing (shape inference, graph optimisation).

    Dynamo-exported graphs carry value_info shapes that the pre-processor's symbolic shape
    inference contradicts ("Inferred shape and existing shape differ"), so they are dropped
    first. For dynamic quantization, Gemm nodes with constant weights become MatMul + Add,
    since onnxruntime's dynamic quantizer handles MatMul but not Gemm.
    """
    import onnx
    from onnxruntime.quantization import quant_pre_process

    work = onnx.ModelProto()
    work.CopyFrom(model)
    del work.graph.value_info[:]
    if dynamic:
        _gemm_to_matmul(work)
    chatty = logging.getLogger("onnxruntime.tools.symbolic_shape_infer")
    level = chatty.level
    chatty.setLevel(logging.ERROR)  # it warns about every broadcast it cannot reason about
    try:
        with tempfile.TemporaryDirectory() as tmp, _working_directory(tmp):
            source, target = Path(tmp) / "in.onnx", Path(tmp) / "out.onnx"
            onnx.save_model(work, str(source))
            for skip_symbolic in (False, True):  # large transformers need the symbolic pass skipped
                try:
                    quant_pre_process(str(source), str(target), skip_symbolic_shape=skip_symbolic)
                    return onnx.load_model(str(target))
                except Exception:  # noqa: BLE001 - try the lighter pass, then none
                    continue
    finally:
        chatty.setLevel(level)
    return work


_CWD_LOCK = threading.Lock()


@contextlib.contextmanager
def _working_directory(path: str) -> Iterator[None]:
    """Run with ``path`` as the working directory.

    onnxruntime 1.31's symbolic shape inference, when it gives up, saves
    ``sym_shape_infer_temp.onnx`` and uuid-named ``.data`` files into the current directory
    (tools/symbolic_shape_infer.py, ``infer_shapes``); they land in the temporary folder instead.
    """
    with _CWD_LOCK:
        previous = os.getcwd()
        os.chdir(path)
        try:
            yield
        finally:
            os.chdir(previous)


def _gemm_to_matmul(model: onnx.ModelProto) -> None:
    from onnx import helper, numpy_helper

    initializers = {i.name: i for i in model.graph.initializer}
    rebuilt = []
    for node in model.graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        plain = attrs.get("alpha", 1.0) == 1.0 and attrs.get("beta", 1.0) == 1.0 and not attrs.get("transA", 0)
        if node.op_type != "Gemm" or not plain or node.input[1] not in initializers:
            rebuilt.append(node)
            continue
        weight = numpy_helper.to_array(initializers[node.input[1]])
        if attrs.get("transB", 0):
            weight = weight.T.copy()
        name = f"{node.input[1]}_matmul"
        model.graph.initializer.append(numpy_helper.from_array(weight, name))
        product = f"{node.output[0]}_matmul" if len(node.input) > 2 and node.input[2] else node.output[0]
        rebuilt.append(helper.make_node("MatMul", [node.input[0], name], [product], name=f"{node.name}_MatMul"))
        if product != node.output[0]:
            rebuilt.append(helper.make_node("Add", [product, node.input[2]], [node.output[0]], name=f"{node.name}_Add"))
    del model.graph.node[:]
    model.graph.node.extend(rebuilt)
    _drop_unused_initializers(model)


def _drop_unused_initializers(model: onnx.ModelProto) -> None:
    used = {name for node in model.graph.node for name in node.input}
    used |= {o.name for o in model.graph.output}
    kept = [i for i in model.graph.initializer if i.name in used]
    if len(kept) != len(model.graph.initializer):
        del model.graph.initializer[:]
        model.graph.initializer.extend(kept)


def fold_weight_quantization(model: onnx.ModelProto) -> int:
    """Store weights that go through QuantizeLinear as integer initializers.

    Quantization-aware training exports float weights followed by QuantizeLinear and
    DequantizeLinear; folding the QuantizeLinear of constant weights keeps the same
    computation and stores int8 weights, a quarter of the float size. Returns how many
    weights were folded.
    """
    from onnx import numpy_helper

    initializers = {i.name: i for i in model.graph.initializer}
    consumers: dict[str, int] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers[name] = consumers.get(name, 0) + 1
    folded, kept_nodes = 0, []
    for node in model.graph.node:
        inputs = list(node.input)
        constant = node.op_type == "QuantizeLinear" and all(n in initializers for n in inputs if n)
        if not constant or consumers.get(inputs[0], 0) != 1:
            kept_nodes.append(node)
            continue
        weight = numpy_helper.to_array(initializers[inputs[0]]).astype(np.float64)
        scale = numpy_helper.to_array(initializers[inputs[1]]).astype(np.float64)
        zero = numpy_helper.to_array(initializers[inputs[2]]) if len(inputs) > 2 and inputs[2] else np.uint8(0)
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        if scale.ndim == 1 and weight.ndim > 1:  # per-channel along `axis`
            shape = [1] * weight.ndim
            shape[axis] = -1
            scale, zero_b = scale.reshape(shape), np.asarray(zero).reshape(shape)
        else:
            zero_b = np.asarray(zero)
        info = np.iinfo(np.asarray(zero).dtype)
        values = np.clip(np.rint(weight / scale) + zero_b.astype(np.float64), info.min, info.max)
        model.graph.initializer.append(numpy_helper.from_array(values.astype(np.asarray(zero).dtype), node.output[0]))
        folded += 1
    if folded:
        del model.graph.node[:]
        model.graph.node.extend(kept_nodes)
        _drop_unused_initializers(model)
    return folded


_COMPUTE_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul", "Attention", "LSTM", "GRU")


def float_nodes(model: onnx.ModelProto) -> list[str]:
    """Heavy compute nodes that still run in float: none of their inputs is dequantized."""
    dequantized = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    return [
        f"{n.name} ({n.op_type})"
        for n in model.graph.node
        if n.op_type in _COMPUTE_OPS and not any(i in dequantized for i in n.input)
    ]


def _qat_builder(artifact: Artifact, train: Callable[[Any], Any] | None) -> Any:
    from onnxbridge import _qat

    return _qat.builder(artifact, train)


# -- measuring ------------------------------------------------------------------------------------
def _run(model: onnx.ModelProto, samples: list[Feeds]) -> list[dict[str, np.ndarray]]:
    from onnxbridge._session import Session

    session = Session(model.SerializeToString(), ["cpu"])
    return [session.run({k: v for k, v in feeds.items() if k in session.input_names}) for feeds in samples]


def measure(parent: onnx.ModelProto, child: onnx.ModelProto, samples: list[Feeds]) -> list[OutputAccuracy]:
    """Compare every output of ``child`` with ``parent`` over ``samples``."""
    expected, got = _run(parent, samples), _run(child, samples)
    accuracy = []
    for name in expected[0]:
        refs = [e[name] for e in expected]
        outs = [g[name] for g in got]
        max_abs = max(
            float(np.max(np.abs(o.astype(np.float64) - r.astype(np.float64)))) if r.size else 0.0
            for o, r in zip(outs, refs, strict=True)
        )
        cosine = top1 = None
        if refs[0].dtype.kind == "f":
            rows_r = np.concatenate([r.reshape(len(r), -1) if r.ndim > 1 else r.reshape(1, -1) for r in refs])
            rows_o = np.concatenate([o.reshape(len(o), -1) if o.ndim > 1 else o.reshape(1, -1) for o in outs])
            a, b = rows_o.astype(np.float64), rows_r.astype(np.float64)
            norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
            cos = np.where(norms > 0, (a * b).sum(axis=1) / np.maximum(norms, 1e-30), 1.0)
            cosine = float(cos.mean())
            if refs[0].ndim == 2 and refs[0].shape[1] > 1:  # [batch, classes]: looks like class scores
                top1 = float(np.mean(a.argmax(axis=1) == b.argmax(axis=1)))
        accuracy.append(OutputAccuracy(name, max_abs, cosine, top1))
    return accuracy


def _meets(accuracy: list[OutputAccuracy], tolerance: Mapping[str, float]) -> bool:
    for acc in accuracy:
        if "cosine" in tolerance and acc.cosine is not None and acc.cosine < tolerance["cosine"]:
            return False
        if "top1" in tolerance and acc.top1 is not None and acc.top1 < tolerance["top1"]:
            return False
        if "max_abs" in tolerance and acc.max_abs_error > tolerance["max_abs"]:
            return False
    return True


def _score(accuracy: list[OutputAccuracy]) -> float:
    """Lower is better: the worst cosine shortfall, else the worst absolute error."""
    cosines = [1.0 - a.cosine for a in accuracy if a.cosine is not None]
    return max(cosines) if cosines else max(a.max_abs_error for a in accuracy)


def _repair(
    parent: onnx.ModelProto,
    build: Any,
    exclude: list[str],
    samples: list[Feeds],
    tolerance: Mapping[str, float],
    report: QuantizationReport,
) -> tuple[onnx.ModelProto, list[str]]:
    """Leave the most sensitive nodes in float, one at a time, until the tolerance is met."""
    candidates = [c for c in build.candidates(parent) if c not in exclude][:_MAX_REPAIR_CANDIDATES]
    sensitivity = []
    for name in candidates:  # how much worse is the model when only this node is quantized?
        others = [c for c in candidates if c != name]
        model, _ = build(parent, [*exclude, *others])
        sensitivity.append((_score(measure(parent, model, samples)), name))
    order = [name for _, name in sorted(sensitivity, reverse=True)]
    kept: list[str] = []
    for name in order[:-1]:  # with every candidate in float nothing is quantized: not a success
        kept.append(name)
        model, left = build(parent, [*exclude, *kept])
        report.accuracy = measure(parent, model, samples)
        report.attempts.append(f"left {name} in float: {_summary(report.accuracy)}")
        if _meets(report.accuracy, tolerance):
            report.passed = True
            return model, left
    report.passed = False
    raise QuantizationError(
        f"{report.mode.value} quantization could not meet tolerance {dict(tolerance)}: it left the "
        f"{max(len(order) - 1, 0)} most sensitive of {len(order)} quantizable nodes in float, one by one, and no "
        f"result that still quantizes anything passed (last: {_summary(report.accuracy)}). Try another mode "
        "(static with calibration data, or fp16), or a looser tolerance.",
        report,
    )


def _summary(accuracy: list[OutputAccuracy]) -> str:
    parts = []
    for a in accuracy:
        bits = [f"max abs {a.max_abs_error:.3g}"]
        if a.cosine is not None:
            bits.append(f"cosine {a.cosine:.4f}")
        if a.top1 is not None:
            bits.append(f"top-1 {a.top1:.2%}")
        parts.append(f"{a.output}: {', '.join(bits)}")
    return "; ".join(parts)


def _latency_ratio(parent: onnx.ModelProto, child: onnx.ModelProto, sample: Feeds) -> float | None:
    """Median over interleaved rounds of child/parent batch-1 latency on CPU, one thread."""
    import onnxruntime as ort

    from onnxbridge._session import Session

    one = {k: v[:1] if v.ndim else v for k, v in sample.items()}
    sessions = []
    for model in (parent, child):
        options = ort.SessionOptions()
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        sessions.append(Session(model.SerializeToString(), ["cpu"], threads=1, options=options))
    feeds = [{k: v for k, v in one.items() if k in s.input_names} for s in sessions]
    try:
        for s, f in zip(sessions, feeds, strict=True):
            s.run(f)
    except OnnxBridgeError:
        return None
    ratios = []
    for _ in range(7):
        times = []
        for s, f in zip(sessions, feeds, strict=True):
            start = time.perf_counter()
            for _ in range(20):
                s.run(f)
            times.append(time.perf_counter() - start)
        ratios.append(times[1] / times[0])
    return statistics.median(ratios)


def _child(
    parent: Artifact, model: onnx.ModelProto, report: QuantizationReport, source: Artifact | None = None
) -> Artifact:
    """The quantized artifact. ``source`` replaces the parent as ground truth (QAT's trained model)."""
    from onnxbridge._artifact import Artifact

    truth = source if source is not None else parent
    exported = Exported(
        model=model,
        framework=parent.framework,
        framework_version=parent.framework_version,
        exporter=parent.exporter,
        dynamic_axes=parent.dynamic_axes,
        sample=truth._sample,
        reference=truth._reference,
        reference_outputs=truth._reference_outputs,
        notes=list(parent.export_notes),
        properties={**parent.properties, "quantization": report.mode.value},
    )
    child = Artifact(exported)
    child.parent = parent
    child.quantization = report
    return child
