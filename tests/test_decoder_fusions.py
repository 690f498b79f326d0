"""Fused decoders: GroupQueryAttention, rotary caches and packed projections, token-exact.

``ob.export(causal_lm)`` fuses where the fused graph gives the source's tokens and keeps the graph
in standard operators as ``art.fallback``; ``fused=False`` exports that graph only, which
``optimize()`` fuses.

Tiny models with random weights (nothing downloaded), default ``use_cache`` and generation config,
judged by transformers' own greedy tokens on left-padded prompts of different lengths, short
ones included.
"""

from __future__ import annotations

import collections
import functools
import gc
import pathlib
import tempfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import onnxbridge as ob
from tests import hf_zoo

transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")
pytest.importorskip("onnxscript")

TINY = hf_zoo.TINY_DECODER
CONFIGS = {
    "llama": lambda: transformers.LlamaConfig(num_key_value_heads=2, **TINY),  # grouped KV heads
    "qwen2": lambda: transformers.Qwen2Config(num_key_value_heads=2, **TINY),  # q/k/v projections with bias
    "mistral-mha": lambda: transformers.MistralConfig(num_key_value_heads=4, sliding_window=None, **TINY),
}


@functools.cache
def fused(arch: str) -> tuple[object, ob.Artifact, ob.Artifact]:
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(CONFIGS[arch]()).eval()
    art = ob.export(model, fused=False)  # standard operators; optimize() fuses them
    return model, art, art.optimize()


@functools.cache
def default_export(arch: str) -> ob.Artifact:
    """``ob.export(model)`` as a user calls it: fused, with its fallback."""
    return ob.export(fused(arch)[0])


def ops(art: ob.Artifact) -> collections.Counter[str]:
    return collections.Counter(n.op_type for n in art.model.graph.node)


def left_padded(lengths: tuple[int, ...], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = np.zeros((len(lengths), max(lengths)), dtype=np.int64)
    mask = np.zeros_like(ids)
    for row, length in enumerate(lengths):
        ids[row, -length:] = rng.integers(3, 128, size=length)
        mask[row, -length:] = 1
    return ids, mask


def hf_tokens(model, ids, mask, new=12):
    with torch.no_grad():
        out = model.generate(
            input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask), max_new_tokens=new, do_sample=False
        )
    return out.numpy()


@pytest.mark.parametrize("arch", list(CONFIGS))
def test_optimize_fuses_a_decoder_to_group_query_attention_that_generates_transformers_tokens(arch):
    model, art, opt = fused(arch)
    layers = TINY["num_hidden_layers"]
    counted = ops(opt)
    assert counted["GroupQueryAttention"] == layers
    assert counted["MultiHeadAttention"] == 0
    producers = {out: n.op_type for n in opt.model.graph.node for out in n.output}
    # the cache is concatenated inside the operator, the KV heads are not expanded around it
    assert {producers[f"present.{i}.{part}"] for i in range(layers) for part in ("key", "value")} == {
        "GroupQueryAttention"
    }
    assert counted["RotaryEmbedding"] == 2 * layers  # cos/sin caches read by position_ids
    assert counted["Split"] == layers  # one MatMul for Q, K and V
    assert counted["SkipSimplifiedLayerNormalization"] == 2 * layers
    assert opt.optimization.fused["GroupQueryAttention"] == layers
    # nothing but the operator reads the past: generate() binds one buffer per layer as past and present
    assert opt.generation.shared_cache is True
    assert art.generation.shared_cache is False
    report = opt.validate(raise_on_failure=False)
    generation = next(c for c in report.checks if c.name == "generation")
    assert generation.passed is True, str(report)
    for lengths in ((5, 11), (1, 7), (3,), (16, 2, 9)):
        ids, mask = left_padded(lengths)
        np.testing.assert_array_equal(opt.generate(ids, mask, max_new_tokens=12), hf_tokens(model, ids, mask))


def test_the_fused_decoder_saves_loads_and_generates_the_same_tokens(tmp_path):
    model, _, opt = fused("llama")
    loaded = ob.load(opt.save(tmp_path / "fused.onnx"))
    assert loaded.generation.shared_cache is True
    assert any("GroupQueryAttention" in note for note in loaded.export_notes)  # what the checker skipped
    ids, mask = left_padded((4, 9))
    np.testing.assert_array_equal(loaded.generate(ids, mask, max_new_tokens=12), hf_tokens(model, ids, mask))


def test_the_fused_decoder_runs_in_onnxruntime_genai_with_past_and_present_sharing_one_buffer(tmp_path):
    og = pytest.importorskip("onnxruntime_genai")
    import json

    model, _, opt = fused("llama")
    folder = opt.save(tmp_path / "genai", layout="genai", tokenizer=None)
    config = json.loads((folder / "genai_config.json").read_text())
    # only GroupQueryAttention reads the past, so genai may hand it one full-length buffer for past and present
    assert config["search"]["past_present_share_buffer"] is True
    runtime = og.Model(str(folder))
    prompt = np.array([[7, 8, 9, 10]], dtype=np.int64)
    params = og.GeneratorParams(runtime)
    params.set_search_options(max_length=16, min_length=16, do_sample=False)
    generator = og.Generator(runtime, params)
    generator.append_tokens(prompt)
    while not generator.is_done():
        generator.generate_next_token()
    with torch.no_grad():
        want = model.generate(torch.from_numpy(prompt), max_new_tokens=12, min_new_tokens=12, do_sample=False)
    assert list(generator.get_sequence(0)) == want[0].tolist()


def test_a_decoder_the_rules_do_not_match_is_left_with_its_attention_and_still_validates():
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=128, n_embd=64, n_layer=2, n_head=4, n_positions=128)
    config.bos_token_id = config.eos_token_id = 1
    opt = ob.export(transformers.AutoModelForCausalLM.from_config(config).eval()).optimize()
    assert ops(opt)["GroupQueryAttention"] == 0  # learned positions, no rotary: not this rule's shape
    generation = next(c for c in opt.validate(raise_on_failure=False).checks if c.name == "generation")
    assert generation.passed is True


def test_int4_after_fusion_leaves_matmuls_smaller_than_a_block_in_float():
    from onnx import TensorProto, helper, numpy_helper

    from onnxbridge.quantize._weight_only import matmul_nbits

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 64])
    z = helper.make_tensor_value_info("z", TensorProto.FLOAT, ["n", 64])
    rng = np.random.default_rng(0)
    tiny = numpy_helper.from_array(rng.standard_normal((1, 64)).astype(np.float32), "positions_x_freq")
    big = numpy_helper.from_array(rng.standard_normal((64, 64)).astype(np.float32), "w")
    nodes = [helper.make_node("MatMul", ["x", "positions_x_freq"], ["y"], name="rotary_angles")]
    nodes.append(helper.make_node("MatMul", ["y", "w"], ["z"], name="projection"))
    graph = helper.make_graph(nodes, "g", [x], [y, z], initializer=[tiny, big])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    out = matmul_nbits(model, bits=4, block_size=32)
    assert {n.name: n.op_type for n in out.graph.node} == {"rotary_angles": "MatMul", "projection_Q4": "MatMulNBits"}


def test_compat_names_the_release_whose_group_query_attention_takes_the_fused_graph_s_inputs():
    _, art, opt = fused("llama")
    old = opt.compat("onnxruntime==1.20")
    problems = [f for f in old.findings if "GroupQueryAttention" in f.problem]
    assert problems, str(old)
    assert "takes 9 inputs; this node gives input 17" in problems[0].problem
    assert "onnxruntime 1.32" in problems[0].fix  # the first recorded release with query_seqlens
    assert opt.compat("onnxruntime").ok  # the installed release runs it
    assert art.compat("onnxruntime==1.20").ok  # the unfused export is the one for older runtimes


@settings(max_examples=20, deadline=None)
@given(
    lengths=st.lists(st.integers(min_value=1, max_value=12), min_size=1, max_size=3),
    new=st.integers(min_value=1, max_value=10),
    seed=st.integers(min_value=0, max_value=2**16),
)
def test_shared_buffers_give_the_unfused_graph_s_tokens_for_any_prompts(lengths, new, seed):
    _, art, opt = fused("llama")
    ids, mask = left_padded(tuple(lengths), seed)
    np.testing.assert_array_equal(
        opt.generate(ids, mask, max_new_tokens=new), art.generate(ids, mask, max_new_tokens=new)
    )


def test_export_fuses_a_decoder_by_default_and_keeps_standard_operators_as_its_fallback():
    model, plain, _ = fused("llama")
    art = default_export("llama")
    assert ops(art)["GroupQueryAttention"] == TINY["num_hidden_layers"]
    assert art.generation.shared_cache is True
    assert any(note.startswith("fused for onnxruntime") for note in art.export_notes)
    assert art.fallback is not None
    assert ops(art.fallback)["GroupQueryAttention"] == 0
    assert art.fallback.generation.shared_cache is False
    assert ops(plain)["GroupQueryAttention"] == 0
    assert plain.fallback is None
    ids, mask = left_padded((6, 2))
    want = hf_tokens(model, ids, mask)
    np.testing.assert_array_equal(art.generate(ids, mask, max_new_tokens=12), want)
    np.testing.assert_array_equal(art.fallback.generate(ids, mask, max_new_tokens=12), want)
    with pytest.raises(ob.InputError, match="fused= applies to task='text-generation'"):
        ob.export(model, task="feature-extraction", fused=True)


@pytest.mark.slow
def test_the_fallback_s_weights_wait_in_a_scratch_file_removed_with_the_artifact():
    model, _, _ = fused("llama")
    scratch = pathlib.Path(tempfile.gettempdir())
    before = set(scratch.glob("onnxbridge-scratch-*"))
    art = ob.export(model)
    made = [folder for folder in set(scratch.glob("onnxbridge-scratch-*")) - before if (folder / "model.onnx").exists()]
    assert len(made) == 1
    weights = sum(p.numel() * 4 for p in model.parameters())
    assert (made[0] / "model.onnx.data").stat().st_size >= 0.9 * weights  # the weights went to the file
    art.fallback.validate()  # raises unless the graph read back from the file matches the source
    del art
    gc.collect()
    assert not made[0].exists()


def test_compat_checks_the_fallback_where_the_fused_graph_fails_an_older_onnxruntime():
    report = default_export("llama").compat("onnxruntime==1.20")
    assert not report.ok
    assert any("art.fallback" in finding.fix for finding in report.findings)
    assert report.fallback is not None
    assert report.fallback.ok
    assert any("art.fallback" in note and "passes onnxruntime==1.20" in note for note in report.notes)
    assert report.summary()["fallback"]["ok"] is True


def test_a_fused_file_without_its_fallback_is_refused_for_transformers_js_whose_onnxruntime_cannot_load_it(
    tmp_path,
):
    _, _, opt = fused("llama")
    opt.save(tmp_path / "fused.onnx")
    loaded = ob.load(tmp_path / "fused.onnx")
    assert loaded.fallback is None
    with pytest.raises(ob.UnsupportedSettingError, match=r"transformers\.js runs onnxruntime 1\.30"):
        loaded.save(tmp_path / "web", layout="transformers.js")
    assert not (tmp_path / "web").exists()
