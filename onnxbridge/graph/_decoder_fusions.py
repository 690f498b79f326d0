"""Decoder fusions for graphs of transformers 5 exported by torch.onnx, as rules of onnxscript's rewriter.

onnxscript's ``ort_fusions`` fuses RMS normalization and finds the rotary embeddings and the
attention of these graphs, but two of its rules do not match them, so the attention ends as
``MultiHeadAttention`` with the KV heads expanded and the cache concatenated outside it:

* its cos/sin cache rule expects ``MatMul(inv_freq, position_ids)``; torch.onnx writes the
  rank-1 product as ``Mul(position_ids[..., None], inv_freq)``;
* its ``GroupQueryAttention`` rule expects the causal mask of older transformers exports and
  derives ``seqlens_k`` from ``position_ids``; transformers 5 builds its mask from the cache
  position and the padding, zeroes fully masked rows after attention (``Where``), and pads
  prompts on the left, which ``seqlens_k`` cannot express.

The two rules here, in onnxscript's pattern framework, fill those gaps:

* :class:`MulCosSinCache`: the ``Mul`` form of the rotary angles, rewritten by onnxscript's own
  rule into ``com.microsoft.RotaryEmbedding`` with cos/sin caches read by ``position_ids``;
* :class:`MaskedGroupQueryAttention`: projections -> rotary -> cache ``Concat`` -> KV-head
  expansion -> SDPA becomes one ``GroupQueryAttention`` (KV heads not expanded, the cache
  concatenated inside), with the graph's own mask passed as ``attention_bias`` and every row's
  ``seqlens_k`` the total length minus one, so left padding is masked exactly as transformers
  masks it. Rotary stays outside (``RotaryEmbedding`` on the packed heads), because the
  operator's own rotary reads only the first position of each prompt row, which left padding
  breaks.

:func:`fuse_decoder` runs onnxscript's ``ort_fusions`` steps in their order with these rules
inserted where they belong, after fusing mixture-of-experts blocks into ``MoE``
(:mod:`onnxbridge.graph._expert_fusions`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from onnxbridge.graph import _expert_fusions

_FUSION_DOMAIN = "ai.onnxruntime._fusion"


def fuse_decoder(model: Any, max_positions: int | None = None) -> dict[str, int]:
    """Fuse a decoder's ``ir.Model`` in place; the number of rewrites per rule.

    ``max_positions``: the longest sequence the rotary caches cover (the model's
    ``max_position_embeddings``); ``None`` computes them from ``position_ids`` at run time.
    """
    import onnx_ir as ir
    import onnx_ir.passes.common as common_passes
    from onnxscript.optimizer import optimize
    from onnxscript.rewriter import _fusion_utils, pattern, rewrite
    from onnxscript.rewriter.ort_fusions import _core, cos_sin_cache, gelu, rotary_embedding, sdpa
    from onnxscript.rewriter.ort_fusions import rms_normalization as rms
    from onnxscript.rewriter.ort_fusions import skip_normalization as skip
    from onnxscript.rewriter.ort_fusions.sdpa_via_mha import replace_sdpa_by_mha

    cache_rule = _mul_cos_sin_cache_class().rule("MulCosSinCache", max_positions=max_positions)
    rules = {
        "cos_sin_cache": _fusion_utils.apply_fusion_rules(pattern.RewriteRuleSet([cache_rule], commute=True)),
        "gqa": _fusion_utils.apply_fusion_rules(pattern.RewriteRuleSet([_gqa_class().rule()])),
    }
    experts = _expert_fusions.fuse_experts(model)  # first: transformers' fusion matches the exported form
    _core._pre_optimize(model)
    counts = {
        "moe": experts,
        "rms_normalization": rms.fuse_rms_normalization(model),
        "skip_rms_normalization": skip.fuse_skip_rms_normalization(model),
        "rotary_embedding": rotary_embedding.fuse_rotary_embedding(model),
        "cos_sin_cache": cos_sin_cache.fuse_cos_sin_cache(model) + rules["cos_sin_cache"](model),
        "sdpa": sdpa.fuse_sdpa(model, apply_shape_inference=True),
    }
    counts["group_query_attention"] = rules["gqa"](model)
    if counts["group_query_attention"]:
        counts["past_sizes_from_inputs"] = past_sizes_from_inputs(model)
    common_passes.CommonSubexpressionEliminationPass()(model)  # the layers' shared sizes, once
    counts["gelu"] = gelu.fuse_gelu(model)
    counts["sdpa_via_mha"] = replace_sdpa_by_mha(model)
    optimize(model)  # inline what no rule consumed, drop what is unused
    rewrite(model, _core.ORT_PATTERN_REWRITE_RULES)  # then as optimize_for_ort ends
    ir.passes.Sequential(
        common_passes.LiftConstantsToInitializersPass(lift_all_constants=False, size_limit=1),
        common_passes.RemoveInitializersFromInputsPass(),
        common_passes.ShapeInferencePass(),
    )(model)
    return counts


def past_sizes_from_inputs(model: Any) -> int:
    """Read the batch size and the past's length from ``input_ids`` and ``attention_mask``, not the past.

    transformers' graph takes the past's length from ``Shape(past_key_values.i.key)``; once every
    attention is ``GroupQueryAttention``, that is the only other reader of the past. The mask
    spans past and new tokens, so ``mask width - new tokens`` is the same length, and with it
    the past may be a buffer as long as the whole context, shared with the present (what
    ``past_present_share_buffer`` means to onnxruntime-genai, and what ``generate()`` binds).
    Returns how many ``Shape`` nodes were replaced.
    """
    import onnx_ir as ir

    graph = model.graph
    inputs = {value.name: value for value in graph.inputs}
    ids, mask = inputs.get("input_ids"), inputs.get("attention_mask")
    if ids is None or mask is None:
        return 0
    replaced = 0
    for node in list(graph):
        source = node.inputs[0] if node.op_type == "Shape" and node.domain == "" and node.inputs else None
        if source is None or not (source.name or "").startswith("past_key_values."):
            continue
        span = (node.attributes.get_int("start", 0), node.attributes.get_int("end", -1))
        if span == (0, 1):
            new = [ir.node("Shape", [ids], attributes={"start": 0, "end": 1})]
        elif span == (2, 3):
            width = ir.node("Shape", [mask], attributes={"start": 1, "end": 2})
            tokens = ir.node("Shape", [ids], attributes={"start": 1, "end": 2})
            new = [width, tokens, ir.node("Sub", [width.outputs[0], tokens.outputs[0]])]
        else:
            continue
        graph.insert_before(node, new)
        new[-1].outputs[0].shape, new[-1].outputs[0].type = node.outputs[0].shape, node.outputs[0].type
        ir.convenience.replace_all_uses_with(node.outputs[0], new[-1].outputs[0])
        graph.remove(node, safe=True)
        replaced += 1
    return replaced


def _mul_cos_sin_cache_class() -> Any:
    from onnxscript import ir
    from onnxscript.rewriter import _ir_utils, pattern
    from onnxscript.rewriter.ort_fusions.cos_sin_cache import CosSinCacheFusion

    class MulCosSinCache(CosSinCacheFusion):
        """Rotary angles as ``Mul(Cast(Unsqueeze(position_ids, [-1])), inv_freq)``; onnxscript's rewrite."""

        def __init__(self, name: str, max_positions: int | None = None) -> None:
            super().__init__(name)
            if max_positions:
                self.max_pos_id = max_positions - 1  # constant caches over the model's positions

        def pattern(self, op: Any, x: Any, inv_freq: Any, position_ids: Any, interleaved: Any, num_heads: Any) -> Any:  # type: ignore[override]
            positions = op.Cast(op.Unsqueeze(position_ids, pattern.ANY_VALUE), to=ir.DataType.FLOAT)
            freqs = op.Mul(positions, inv_freq, _outputs=["freqs"])  # [B, S, E]
            emb = op.Concat(freqs, freqs, axis=-1)
            return op.RotaryEmbedding(
                x,
                op.Unsqueeze(op.Cos(emb), [1]),
                op.Unsqueeze(op.Sin(emb), [1]),
                interleaved=interleaved,
                num_heads=num_heads,
                _domain=_FUSION_DOMAIN,
            )

        def check(self, context: Any, inv_freq: Any, position_ids: Any, freqs: Any, **_: Any) -> Any:  # type: ignore[override]
            result = pattern.MatchResult()
            if not _ir_utils.has_rank(position_ids, 2):
                return result.fail("position_ids is not 2-D", position_ids)
            if inv_freq.const_value is None or inv_freq.const_value.numpy().squeeze().ndim != 1:
                return result.fail("inv_freq is not a constant vector", inv_freq)
            if not _ir_utils.has_rank(freqs, 3):
                return result.fail("the angles are not [batch, sequence, dim]", freqs)
            return result

        def rewrite(  # type: ignore[override]
            self, op: Any, x: Any, inv_freq: Any, position_ids: Any, interleaved: Any, num_heads: Any, **_: Any
        ) -> Any:
            return super().rewrite(op, x, inv_freq, position_ids, interleaved, num_heads, freqs=None, dtype=None)

    return MulCosSinCache


def _gqa_class() -> Any:
    from onnxscript import ir
    from onnxscript.rewriter import _ir_utils, pattern

    class MaskedGroupQueryAttention(pattern.RewriteRuleClassBase):
        """Attention with the cache and KV-head expansion around SDPA -> ``GroupQueryAttention``."""

        def __init__(self) -> None:
            super().__init__("MaskedGQA", remove_nodes=False)

        def pattern(
            self,
            op: Any,
            query_BSD: Any,
            key_BSDkv: Any,
            value_BSDkv: Any,
            past_key: Any,
            past_value: Any,
            position_ids: Any,
            cos: Any,
            sin: Any,
            mask: Any,
        ) -> Any:
            query = op.Transpose(op.Reshape(query_BSD, pattern.ANY_VALUE, _outputs=["query_BSHDh"]), perm=[0, 2, 1, 3])
            key = op.Transpose(op.Reshape(key_BSDkv, pattern.ANY_VALUE, _outputs=["key_BSHkvDh"]), perm=[0, 2, 1, 3])
            value = op.Transpose(op.Reshape(value_BSDkv, pattern.ANY_VALUE), perm=[0, 2, 1, 3])
            query = op.RotaryEmbedding(
                query, position_ids, cos, sin, _domain="com.microsoft", _outputs=["query_rotary"]
            )
            key = op.RotaryEmbedding(key, position_ids, cos, sin, _domain="com.microsoft", _outputs=["key_rotary"])
            key_seq = op.Concat(past_key, key, axis=-2)
            value_seq = op.Concat(past_value, value, axis=-2)
            # transformers' repeat_kv: absent when every query head has its own KV head
            key_all = pattern.OrValue(
                [op.Reshape(op.Expand(op.Unsqueeze(key_seq, [2]), pattern.ANY_VALUE), pattern.ANY_VALUE), key_seq]
            )
            value_all = pattern.OrValue(
                [op.Reshape(op.Expand(op.Unsqueeze(value_seq, [2]), pattern.ANY_VALUE), pattern.ANY_VALUE), value_seq]
            )
            attention = op.SDPA(
                query, key_all, value_all, mask, key_format="BHSd", _domain=_FUSION_DOMAIN, _outputs=["sdpa"]
            )
            # transformers 5 zeroes the rows whose every key is masked (left padding's own rows)
            attention = pattern.OrValue([op.Where(pattern.ANY_VALUE, pattern.ANY_VALUE, attention), attention])
            output = op.Reshape(op.Transpose(attention, perm=[0, 2, 1, 3]), pattern.ANY_VALUE)
            return output, key_seq, value_seq

        def check(  # type: ignore[override]
            self,
            context: Any,
            query_BSHDh: Any,
            key_BSHkvDh: Any,
            query_rotary: Any,
            key_rotary: Any,
            mask: Any,
            sdpa: Any,
            **_: Any,
        ) -> Any:
            result = pattern.MatchResult()
            heads, kv_heads = _ir_utils.get_dim(query_BSHDh, 2), _ir_utils.get_dim(key_BSHkvDh, 2)
            if not isinstance(heads, int) or not isinstance(kv_heads, int) or heads % kv_heads:
                return result.fail("head counts unknown or not grouped", [query_BSHDh, key_BSHkvDh])
            rotary = [node.producer().attributes.get_int("interleaved", 0) for node in (query_rotary, key_rotary)]
            if rotary[0] != rotary[1]:
                return result.fail("query and key rotate differently", [query_rotary, key_rotary])
            if mask.dtype != ir.DataType.FLOAT or not _ir_utils.has_rank(mask, 4):
                return result.fail("the mask is not an additive float [B, 1, S, T] bias", mask)
            extra = set(sdpa.producer().attributes) - {"key_format", "scale"}
            if extra:
                return result.fail(f"SDPA attributes {sorted(extra)}", sdpa)
            self._heads, self._kv_heads, self._interleaved = heads, kv_heads, rotary[0]
            self._scale = sdpa.producer().attributes.get_float("scale", None)
            return result

        def rewrite(
            self,
            op: Any,
            query_BSD: Any,
            key_BSDkv: Any,
            value_BSDkv: Any,
            past_key: Any,
            past_value: Any,
            position_ids: Any,
            cos: Any,
            sin: Any,
            mask: Any,
            **_: Any,
        ) -> Any:
            packed = _packed_projection(op, query_BSD, key_BSDkv, value_BSDkv)
            if packed is not None:  # one MatMul for the three projections, as genai's builder writes it
                query_BSD, key_BSDkv, value_BSDkv = packed
            rotary = {"interleaved": self._interleaved, "_domain": "com.microsoft"}
            query = op.RotaryEmbedding(query_BSD, position_ids, cos, sin, num_heads=self._heads, **rotary)
            key = op.RotaryEmbedding(key_BSDkv, position_ids, cos, sin, num_heads=self._kv_heads, **rotary)
            # every row spans the mask's whole width; padding is masked by the bias, as in the source
            # sizes from the mask [B, 1, S, T], which every layer shares, so that they are computed once
            total = op.Cast(op.Shape(mask, start=3, end=4), to=ir.DataType.INT32)
            batch = op.Shape(mask, start=0, end=1)
            seqlens_k = op.Expand(op.Sub(total, _one(op)), batch)
            # every row's new tokens are valid: a batched multi-token step with a past (validation's
            # sample, a prompt continued) is a "chunk" to the operator, which needs their count
            new_tokens = op.Expand(op.Cast(op.Shape(mask, start=2, end=3), to=ir.DataType.INT32), batch)
            options = {"scale": self._scale} if self._scale is not None else {}
            unused = [None] * 5  # head_sink, k_scale, v_scale, q_norm_weight, k_norm_weight
            return op.GroupQueryAttention(
                query,
                key,
                value_BSDkv,
                past_key,
                past_value,
                seqlens_k,
                op.Squeeze(total),
                None,
                None,
                None,
                mask,
                *unused,
                new_tokens,
                num_heads=self._heads,
                kv_num_heads=self._kv_heads,
                **options,
                _domain="com.microsoft",
                _outputs=3,
            )

    return MaskedGroupQueryAttention


def _projection(value: Any) -> tuple[Any, np.ndarray, np.ndarray | None] | None:
    """``(x, weight, bias)`` when ``value`` is ``MatMul(x, weight)`` (``+ bias``) with constant weights."""
    node = value.producer()
    bias = None
    if node is not None and node.op_type == "Add" and len(node.inputs) == 2:
        bias = node.inputs[1].const_value
        node = node.inputs[0].producer()
        if bias is None:
            return None
    if node is None or node.op_type != "MatMul" or node.domain != "" or node.inputs[1].const_value is None:
        return None
    weight = node.inputs[1].const_value.numpy()
    return node.inputs[0], weight, None if bias is None else bias.numpy()


def _packed_projection(op: Any, *values: Any) -> tuple[Any, Any, Any] | None:
    """The three projections of one input as one ``MatMul`` (and bias) split three ways, or ``None``."""
    from onnxscript import ir

    found = [_projection(value) for value in values]
    if any(f is None for f in found):
        return None
    parts = [f for f in found if f is not None]
    sources, weights, biases = [f[0] for f in parts], [f[1] for f in parts], [f[2] for f in parts]
    if any(x is not sources[0] for x in sources) or any(w.ndim != 2 for w in weights):
        return None
    given = [b for b in biases if b is not None]
    if given and (len(given) != len(biases) or any(b.ndim != 1 for b in given)):
        return None
    packed = op.MatMul(sources[0], op.Constant(value=ir.tensor(np.concatenate(weights, axis=1))))
    if given:
        packed = op.Add(packed, op.Constant(value=ir.tensor(np.concatenate(given))))
    sizes = op.Constant(value=ir.tensor(np.array([w.shape[1] for w in weights], dtype=np.int64)))
    query, key, value = op.Split(packed, sizes, axis=-1, _outputs=3)
    return query, key, value


def _one(op: Any) -> Any:
    from onnxscript import ir

    return op.Constant(value=ir.tensor(np.array([1], dtype=np.int32)))
