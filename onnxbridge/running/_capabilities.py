"""What the installed onnxruntime can load, found by asking it.

onnxruntime has no public "max opset" API, and a model stamped with an opset it does
not know fails at load time. Rather than keep a version table that goes stale, we
probe: build a one-node model per opset and see whether onnxruntime accepts it.
The answer is cached for the process.
"""

from __future__ import annotations

import functools
from types import ModuleType

from onnxbridge.core._deps import require
from onnxbridge.core._errors import ExportError, InputError


def onnxruntime() -> ModuleType:
    """The ``onnxruntime`` module, imported on first use."""
    return require("onnxruntime", purpose="Running an ONNX model")


@functools.cache
def max_opset(domain: str = "") -> int:
    """Newest opset of ``domain`` that both onnx and the installed onnxruntime support.

    Args:
        domain: ``""`` for the default ONNX domain, or e.g. ``"ai.onnx.ml"``.
    """
    import onnx
    from onnx import TensorProto, helper

    ort = onnxruntime()
    newest = onnx.defs.onnx_opset_version() if domain == "" else _newest_opset_in(domain)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "probe", [x], [y])
    for version in range(newest, 0, -1):
        opsets = (
            [helper.make_opsetid("", version)]
            if domain == ""
            else [
                helper.make_opsetid("", 17),
                helper.make_opsetid(domain, version),
            ]
        )
        model = helper.make_model(graph, opset_imports=opsets)
        model.ir_version = 8  # old enough for any onnxruntime that can run these opsets
        try:
            ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        except Exception:  # noqa: BLE001 - any refusal means "not this opset"
            continue
        return version
    raise RuntimeError(f"onnxruntime accepts no opset of domain {domain!r}")  # pragma: no cover


def _newest_opset_in(domain: str) -> int:
    import onnx

    versions = [s.since_version for s in onnx.defs.get_all_schemas_with_history() if s.domain == domain]
    return max(versions, default=1)


MIN_OPSET = 7  # onnxruntime has no CPU kernels for several core operators (Gemm, ...) before it


def choose_opset(requested: int | None, *, preferred: int, converter: str, converter_max: int | None = None) -> int:
    """The opset to export at: the user's if both sides support it, else ``preferred`` capped.

    Args:
        requested: The user's ``opset=``, or ``None``.
        preferred: The converter's own choice (its default, or its newest).
        converter: The converter's name, for messages.
        converter_max: Newest opset the converter supports, when it says.

    Raises:
        ExportError: ``requested`` is newer than onnxruntime or the converter supports.
    """
    runtime_max = max_opset()
    if requested is None:
        return min(preferred, runtime_max)
    if requested < MIN_OPSET:
        raise InputError(
            f"opset={requested} is older than onnxruntime runs (its CPU kernels start at opset {MIN_OPSET}), so "
            f"the model could not be validated or run. Use an opset from {MIN_OPSET} to {runtime_max}."
        )
    if requested > runtime_max:
        raise ExportError(
            f"opset={requested} is newer than the installed onnxruntime supports (up to {runtime_max}), so the "
            f"model could not be validated or run here. Use opset<={runtime_max}, or upgrade onnxruntime."
        )
    if converter_max is not None and requested > converter_max:
        raise ExportError(
            f"opset={requested} is newer than {converter} supports (up to {converter_max}). Use opset<={converter_max}."
        )
    return requested
