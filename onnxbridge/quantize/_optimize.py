"""Graph optimization as its own step, with the maintained fusers.

* ``"basic"``: onnxruntime's offline basic graph optimizations (constant folding, redundant
  node elimination). The result holds standard ONNX operators only and runs anywhere.
* ``"extended"``: onnxscript's ``ort_fusions`` rewriter (Attention, SkipLayerNormalization,
  BiasGelu, rotary embeddings... on dynamo and TorchScript graphs alike), then onnxruntime's
  offline extended optimizations. The result uses onnxruntime contrib operators
  (``com.microsoft``) and runs on onnxruntime only; the report says so.

onnxruntime's own ``transformers.optimizer`` is not used: with transformers 5 (SDPA
attention) it finds no attention in graphs from either torch exporter.
"""

from __future__ import annotations

import collections
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from onnxbridge.core._errors import InferenceError, InputError, first_line
from onnxbridge.core._types import Feeds, SourceFiles
from onnxbridge.graph import _decoder_fusions, _graph
from onnxbridge.quantize import _measure, _passes
from onnxbridge.quantize._types import OptimizationReport

if TYPE_CHECKING:
    import onnx

LEVELS = ("basic", "extended")
CONTRIB_DOMAIN = "com.microsoft"


def optimize(
    model: onnx.ModelProto, samples: Sequence[Feeds], level: str = "extended", *, source: SourceFiles | None = None
) -> tuple[onnx.ModelProto, OptimizationReport]:
    """The optimized model and what was done and measured (against ``model`` on ``samples``).

    ``source``: the source model's settings; a decoder's ``max_position_embeddings`` sizes its
    rotary cos/sin caches (without it they are computed at run time).
    """
    if level not in LEVELS:
        raise InputError(
            f"optimize(level={level!r}): use 'basic' (standard operators, runs anywhere) or 'extended' "
            "(fused transformer operators, onnxruntime only)."
        )
    report = OptimizationReport(level, ops_before=len(model.graph.node))
    work = model
    if level == "extended":
        work = _ort_fusions(work, report, source.setting("max_position_embeddings") if source else None)
    work = _onnxruntime_offline(work, level, report)
    report.ops_after = len(work.graph.node)
    contrib = collections.Counter(n.op_type for n in work.graph.node if n.domain == CONTRIB_DOMAIN)
    before = collections.Counter(n.op_type for n in model.graph.node if n.domain == CONTRIB_DOMAIN)
    report.fused = {op: count - before.get(op, 0) for op, count in sorted(contrib.items()) if count > before.get(op, 0)}
    report.onnxruntime_only = bool(contrib)
    if samples:
        accuracy = _measure.measure(model, work, samples)
        report.max_abs_error = max(a.max_abs_error for a in accuracy)
        report.latency_ratio = _measure.latency_ratio(model, work, samples[0])
    return work, report


def _ort_fusions(model: onnx.ModelProto, report: OptimizationReport, max_positions: int | None) -> onnx.ModelProto:
    try:
        import onnx_ir as ir
        from onnxscript.rewriter import ort_fusions
    except ImportError:
        report.warnings.append(
            'onnxscript is not installed, so transformer fusions were skipped (pip install "onnxbridge[torch]")'
        )
        return model
    decoder = bool(_graph.cache_inputs(model))
    try:
        work = ir.serde.deserialize_model(_passes.copy(model))
        if decoder:  # onnxscript's fusions with onnxbridge's rules for transformers 5 decoders
            counts = _decoder_fusions.fuse_decoder(work, max_positions)
        else:
            work, counts = ort_fusions.optimize_for_ort(work)
        result = ir.serde.serialize_model(work)
    except Exception as err:  # noqa: BLE001 - a rewriter failure leaves the graph as it was
        report.warnings.append(f"onnxscript's ort_fusions failed ({type(err).__name__}: {err}); graph left unfused")
        return model
    done = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()) if n) or "no pattern matched"
    report.steps.append(f"onnxscript ort_fusions{' with the decoder rules' if decoder else ''}: {done}")
    return result


def _onnxruntime_offline(model: onnx.ModelProto, level: str, report: OptimizationReport) -> onnx.ModelProto:
    import onnx
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        if level == "basic"
        else ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    )
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "optimized.onnx"
        options.optimized_model_filepath = str(target)
        try:
            ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        except Exception as err:
            raise InferenceError(
                f"onnxruntime could not load the model to optimize it: {first_line(err)}. "
                "Check it with art.validate() first."
            ) from err
        result = onnx.load_model(str(target))
    report.steps.append(
        f"onnxruntime offline {level} optimizations: {len(model.graph.node)} -> {len(result.graph.node)} nodes"
    )
    del result.metadata_props[:]
    result.metadata_props.extend(model.metadata_props)
    return result
