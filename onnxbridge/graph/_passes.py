"""Clean-up passes over ``onnx.ModelProto``s, run by onnx-ir's pass manager.

onnxbridge edits protos in place in a few places (quantization's graph rewrites, opset
conversion); what they leave unused is removed here by onnx-ir's own passes, which follow
every subgraph (``If``/``Loop`` bodies) and function, so an initializer that only a subgraph
reads is kept. Each function returns onnx-ir's :class:`~onnx_ir.passes.PassResult` and writes the
result back into the proto it was given only when something changed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import onnx
    import onnx_ir as ir

__all__ = ["remove_unused", "remove_unused_opsets"]


def _run(model: onnx.ModelProto, passes: list[ir.passes.PassBase]) -> ir.passes.PassResult:
    import onnx_ir as ir

    result = ir.passes.PassManager(passes)(ir.from_proto(model))
    if result.modified:
        model.CopyFrom(ir.to_proto(result.model))
    return result


def remove_unused(model: onnx.ModelProto) -> ir.passes.PassResult:
    """Remove nodes, initializers and functions that nothing reads (subgraphs included), in place."""
    from onnx_ir.passes.common import RemoveUnusedFunctionsPass, RemoveUnusedNodesPass

    return _run(model, [RemoveUnusedNodesPass(), RemoveUnusedFunctionsPass()])


def remove_unused_opsets(model: onnx.ModelProto) -> list[str]:
    """Drop opset imports that no node uses, in place; returns them as ``"domain version"``."""
    from onnx_ir.passes.common import RemoveUnusedOpsetsPass

    before = {o.domain: o.version for o in model.opset_import}
    _run(model, [RemoveUnusedOpsetsPass()])
    after = {o.domain for o in model.opset_import}
    return [f"{domain or 'ai.onnx'} {version}" for domain, version in before.items() if domain not in after]
