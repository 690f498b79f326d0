"""The fused decoder that ``ob.export(causal_lm)`` gives by default, kept where it is checked to give the same tokens.

A decoder whose cache is attention keys and values only is fused after export with
:func:`onnxbridge.graph._decoder_fusions.fuse_decoder` (``GroupQueryAttention`` with the cache
inside, packed QKV, rotary caches, RMS norms) when:

* the installed onnxruntime's ``GroupQueryAttention`` takes ``query_seqlens`` (its 17th input,
  onnxruntime 1.32), which the fused graph gives it;
* every attention layer fused, so that one context-long buffer per layer can serve as past and
  present (``generate()`` binds them once); or none did, and mixture-of-experts blocks fused into
  ``MoE`` (the attention then keeps its cache ``Concat``);
* the fused graph, run by ``generate()``, gives the greedy tokens the source gave on the
  recorded prompts (left-padded, of different lengths).

Otherwise the graph of standard operators is kept, and the note says why. When the fused graph
is kept, the graph of standard operators comes with it as the artifact's ``fallback``: older
onnxruntime releases, onnxruntime-web and transformers.js's onnxruntime-node 1.30 (whose
``GroupQueryAttention`` takes 16 inputs) load that one, not the fused one.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from onnxbridge.core._errors import first_line
from onnxbridge.generation._spec import GenerationSpec

QUERY_SEQLENS = 17  # GroupQueryAttention's input count once query_seqlens exists (onnxruntime 1.32)
UNFUSED_HINT = (
    "art.fallback holds the graph in standard operators (older onnxruntime, transformers.js, the browser); "
    "fused=False exports that one only"
)


def fuse(
    proto: Any, spec: GenerationSpec, layers: int, max_positions: int | None, notes: list[str]
) -> tuple[Any, GenerationSpec]:
    """``(graph, spec)``: fused with ``spec.shared_cache`` set, or ``proto`` and ``spec`` as they were."""
    from onnxbridge.checks import _ort_releases
    from onnxbridge.generation import _loop
    from onnxbridge.graph import _decoder_fusions, _graph
    from onnxbridge.running._session import Session

    takes = _ort_releases.contrib_inputs().get(("com.microsoft", "GroupQueryAttention"), 0)
    if spec.record is None or takes < QUERY_SEQLENS:
        notes.append(
            "not fused: this onnxruntime's GroupQueryAttention has no query_seqlens input (onnxruntime 1.32 has); "
            "the graph keeps standard operators"
        )
        return proto, spec
    try:
        import onnx_ir as ir

        work = ir.serde.deserialize_model(proto)
        experts = _decoder_fusions.fuse_decoder(work, max_positions).get("moe", 0)
        fused = ir.serde.serialize_model(work)
        attention = sum(n.op_type == "GroupQueryAttention" for n in fused.graph.node)
        whole = attention == layers and _graph.shares_cache_buffers(fused)
        if not whole and (attention or not experts):  # attention half fused, or nothing worth a second graph
            notes.append(
                f"not fused: {attention} of {layers} attention layers have the shape onnxbridge fuses to "
                "GroupQueryAttention; the graph keeps standard operators (art.optimize() fuses what it can)"
            )
            return proto, spec
        done = dataclasses.replace(spec, shared_cache=whole)
        got = _loop.replay(Session(fused, ["cpu"]), done)(spec.record)
    except Exception as err:  # noqa: BLE001 - a failed fusion leaves the standard graph, said in the notes
        notes.append(f"not fused: {type(err).__name__}: {first_line(err)}; the graph keeps standard operators")
        return proto, spec
    want = spec.record.tokens
    if got.tokens.shape != want.shape or not np.array_equal(got.tokens, want):
        notes.append(
            "not fused: the fused graph's greedy tokens differed from the source's on the recorded prompts; the "
            "graph keeps standard operators"
        )
        return proto, spec
    parts = [
        f"{layers} GroupQueryAttention (cache inside, one buffer per layer shared by past and present), Q, K and V "
        "in one MatMul, rotary cos/sin caches"
        if whole
        else f"attention left as it was ({layers} layers not in the shape onnxbridge fuses to GroupQueryAttention)",
        "RMS norms as SimplifiedLayerNormalization",
    ]
    if experts:
        parts.append(f"{experts} MoE (experts routed by onnxruntime, gate and up interleaved as its CPU kernel takes)")
    notes.append(
        f"fused for onnxruntime: {', '.join(parts)}; its greedy tokens are the source's on the recorded prompts. "
        f"{UNFUSED_HINT}"
    )
    return fused, done
