"""Mixture-of-experts blocks as onnxruntime's ``com.microsoft.MoE``, in the form its CPU kernel runs.

onnxbridge exports experts in transformers' ``batched_mm`` form (each token's top-k experts'
weights gathered, then multiplied). transformers' own onnxruntime fusions turn that form into
``MoE``, which routes the tokens itself from the router's logits without gathering weights, but
they write the form of onnxruntime's CUDA kernel: the gate and up projections as ``fc1`` and
``fc3`` with ``activation_type="silu"``. onnxruntime 1.32's CPU kernel refuses ``fc3`` ("FC3 is
not implemented for CPU MoE") and takes gated experts only as ``activation_type="swiglu"`` with
gate and up rows interleaved in ``fc1`` (``swiglu_fusion=1``); with ``activation_alpha=1`` and
``activation_beta=0`` that computes ``silu(gate) * up``, what the model computes.

:class:`InterleavedSwiGlu` is that rewrite, a rule of onnxscript's rewriter; :func:`fuse_experts`
runs transformers' fusion and then the rule.
"""

from __future__ import annotations

from typing import Any

import numpy as np

_MOE = ("com.microsoft", "MoE")


def fuse_experts(model: Any) -> int:
    """Fuse ``model``'s (``ir.Model``) ``batched_mm`` experts into ``MoE`` nodes the CPU runs; how many.

    Nothing changes without transformers' fusion (transformers 5.x's
    ``exporters.onnxruntime_fusions``), or where a block is not in the form it matches.
    """
    try:
        from transformers.exporters import onnxruntime_fusions
    except ImportError:
        return 0
    fuse = getattr(onnxruntime_fusions, "_fuse_mixture_of_experts", None)  # its step for MoE blocks
    if fuse is None:
        return 0
    fuse(model)
    from onnxscript.rewriter import pattern

    pattern.RewriteRuleSet([_interleaved_swiglu_class().rule()]).apply_to_model(model)
    moe = [node for node in model.graph if (node.domain, node.op_type) == _MOE]
    if any(len(node.inputs) > 6 and node.inputs[6] is not None for node in moe):
        raise RuntimeError("an MoE node kept its fc3 input, which onnxruntime's CPU kernel refuses")
    return len(moe)


def _interleaved_swiglu_class() -> Any:
    from onnxscript import ir
    from onnxscript.rewriter import pattern

    class InterleavedSwiGlu(pattern.RewriteRuleClassBase):
        """``MoE(fc1=gate, fc3=up, activation_type="silu")`` -> ``MoE(fc1=gate/up interleaved, "swiglu")``."""

        def pattern(self, op: Any, x: Any, router: Any) -> Any:
            return op.MoE(x, router, _domain="com.microsoft", _allow_other_inputs=True, _outputs=["out"])

        def check(self, context: Any, x: Any, router: Any, out: Any) -> Any:
            result = pattern.MatchResult()
            node = out.producer()
            if node.attributes.get_string("activation_type", "relu") != "silu":
                return result.fail("not a gated SiLU expert")
            inputs = list(node.inputs) + [None] * (8 - len(node.inputs))
            gate, up = inputs[2], inputs[6]
            if gate is None or up is None or gate.const_value is None or up.const_value is None:
                return result.fail("no constant fc3 to interleave")
            if gate.const_value.shape != up.const_value.shape or len(gate.const_value.shape) != 3:
                return result.fail("fc1 and fc3 differ in shape")
            biases = (inputs[3], inputs[7])
            if any(b is not None and b.const_value is None for b in biases) or (biases[0] is None) != (
                biases[1] is None
            ):
                return result.fail("biases not both constant")
            return result

        def rewrite(self, op: Any, x: Any, router: Any, out: Any) -> Any:
            node = out.producer()
            inputs = list(node.inputs) + [None] * (8 - len(node.inputs))
            fc1 = op.Constant(
                value=ir.tensor(_interleave(inputs[2].const_value.numpy(), inputs[6].const_value.numpy()))
            )
            bias = inputs[3]
            if bias is not None:
                bias = op.Constant(
                    value=ir.tensor(_interleave(bias.const_value.numpy(), inputs[7].const_value.numpy()))
                )
            return op.MoE(
                x,
                router,
                fc1,
                bias,
                inputs[4],
                inputs[5],
                _domain="com.microsoft",
                k=node.attributes.get_int("k", 1),
                normalize_routing_weights=node.attributes.get_int("normalize_routing_weights", 0),
                use_sparse_mixer=node.attributes.get_int("use_sparse_mixer", 0),
                activation_type="swiglu",
                swiglu_fusion=1,
                activation_alpha=1.0,
                activation_beta=0.0,
            )

    return InterleavedSwiGlu


def _interleave(gate: np.ndarray, up: np.ndarray) -> np.ndarray:
    """Rows ``gate[0], up[0], gate[1], up[1], ...`` along axis 1 (``[experts, 2 * inter, ...]``)."""
    paired = np.empty((gate.shape[0], 2 * gate.shape[1], *gate.shape[2:]), dtype=gate.dtype)
    paired[:, 0::2], paired[:, 1::2] = gate, up
    return paired
