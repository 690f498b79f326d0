"""Which nodes suffer most from int8: measured, not guessed.

Two measures. :func:`matmul_errors` is local and cheap (one run of the float model): each
MatMul's product recomputed with int8 activations (per tensor, as onnxruntime's dynamic
kernels do) and int8 weights (per channel), relative to the float product. It is what the
transformer default uses to pick the MatMuls to protect. Its ranking agrees only loosely
with the effect on the model's outputs (Spearman 0.28 on all-MiniLM-L6-v2: errors that
propagate through later layers count more), so the tolerance repair uses :func:`rank`,
which quantizes the whole model with only one node in int8 at a time and compares outputs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from onnxbridge._adapter import Feeds
from onnxbridge.quantize import _measure, _passes

if TYPE_CHECKING:
    import onnx

_MAX_SLOW = 48  # nodes measured by whole-model runs at most


def matmul_errors(model: onnx.ModelProto, samples: Sequence[Feeds], nodes: Sequence[str]) -> dict[str, float]:
    """Relative error (Frobenius) of each named MatMul's product under dynamic int8."""
    import onnx
    from onnx import numpy_helper

    initializers = {i.name: i for i in model.graph.initializer}
    targets = {
        n.name: n
        for n in model.graph.node
        if n.name in set(nodes) and n.op_type == "MatMul" and n.input[1] in initializers
    }
    if not targets:
        return {}
    probe = _passes.copy(model)
    exposed = sorted({n.input[0] for n in targets.values()} - {o.name for o in probe.graph.output})
    probe.graph.output.extend(onnx.ValueInfoProto(name=name) for name in exposed)
    session = _measure.session(probe)
    names = [o.name for o in probe.graph.output]
    values: dict[str, list[np.ndarray]] = {}
    for feeds in samples:
        outs = session.run({k: v for k, v in feeds.items() if k in session.input_names})
        for name in exposed:
            values.setdefault(name, []).append(np.asarray(outs[name]))
    del names
    errors = {}
    for name, node in targets.items():
        weight = numpy_helper.to_array(initializers[node.input[1]]).astype(np.float32)
        if weight.ndim != 2:
            continue
        w_scale = np.maximum(np.abs(weight).max(axis=0, keepdims=True), 1e-12) / 127.0
        w_q = np.clip(np.rint(weight / w_scale), -127, 127) * w_scale
        num = den = 0.0
        for x in values[node.input[0]]:
            x = x.reshape(-1, x.shape[-1]).astype(np.float32)
            lo, hi = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
            scale = (hi - lo) / 255.0 or 1.0
            zero = np.rint(-lo / scale)
            x_q = (np.clip(np.rint(x / scale) + zero, 0, 255) - zero) * scale
            exact = x @ weight
            num += float(np.square(x_q @ w_q - exact).sum())
            den += float(np.square(exact).sum())
        errors[name] = float(np.sqrt(num / den)) if den > 0 else 0.0
    return errors


def rank(
    parent: onnx.ModelProto,
    samples: Sequence[Feeds],
    candidates: Sequence[str],
    quantize_only: Callable[[str], onnx.ModelProto],
) -> list[str]:
    """Candidates, most sensitive first, measured on the whole model.

    A node's figure is the worst cosine shortfall (else max error) of the model with only that
    node quantized (``quantize_only``), measured against ``parent``. Past the first 48 candidates, the rest keep their graph order.
    """
    measured = [
        (_measure.score(_measure.measure(parent, quantize_only(name), samples)), name)
        for name in candidates[:_MAX_SLOW]
    ]
    return [name for _, name in sorted(measured, reverse=True)] + list(candidates[_MAX_SLOW:])
