"""Decoder language models exported with their KV cache: validated by greedy tokens, generating like transformers.

Every model is built from a tiny config with random weights (nothing is downloaded) and keeps
its default ``use_cache``. Each architecture is exported once per session.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import onnxbridge as ob
from tests import hf_zoo
from tests.parity import assert_generation, assert_parity

transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

TINY = hf_zoo.TINY_DECODER
CONFIGS = {
    "llama": lambda: transformers.LlamaConfig(num_key_value_heads=2, **TINY),
    "qwen2": lambda: transformers.Qwen2Config(num_key_value_heads=2, **TINY),  # grouped-query attention
    "phi": lambda: transformers.PhiConfig(**TINY),  # partial rotary embeddings
    "gemma": lambda: transformers.GemmaConfig(num_key_value_heads=1, head_dim=16, **TINY),  # multi-query
    "gpt2": lambda: transformers.GPT2Config(  # its default special tokens (50256) lie outside a tiny vocabulary
        vocab_size=128, n_embd=64, n_layer=2, n_head=4, n_positions=128, bos_token_id=1, eos_token_id=2
    ),
    "opt": lambda: transformers.OPTConfig(
        vocab_size=128, hidden_size=64, ffn_dim=128, num_hidden_layers=2, num_attention_heads=4, word_embed_proj_dim=64
    ),
    "bloom": lambda: transformers.BloomConfig(vocab_size=128, hidden_size=64, n_layer=2, n_head=4),  # ALiBi
    "gpt_neo": lambda: transformers.GPTNeoConfig(  # alternating global and local (sliding-window) attention
        vocab_size=128,
        hidden_size=64,
        num_layers=2,
        num_heads=4,
        attention_types=[[["global", "local"], 1]],
        window_size=32,
        max_position_embeddings=128,
        bos_token_id=1,
        eos_token_id=2,
    ),
}


@functools.cache
def decoder(arch: str):
    """(model, artifact): the model is in train mode at export, to check that export restores it."""
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(CONFIGS[arch]())
    model.train()
    art = ob.export(model, task="text-generation")
    assert model.training, "export must leave the model in the mode it was in"
    return model.eval(), art


def left_padded(lengths=(5, 11), vocab=128, seed=0):
    rng = np.random.default_rng(seed)
    ids = np.zeros((len(lengths), max(lengths)), dtype=np.int64)
    mask = np.zeros_like(ids)
    for row, length in enumerate(lengths):
        ids[row, -length:] = rng.integers(3, vocab, size=length)
        mask[row, -length:] = 1
    return ids, mask


def hf_generate(model, ids, mask, **kwargs):
    with torch.no_grad():
        out = model.generate(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask), **kwargs)
    return out.numpy()


SLOW_ARCHS = {"gpt_neo"}  # its export alone takes ~18 s; the full tier covers it


@pytest.mark.parametrize("arch", [pytest.param(a, marks=pytest.mark.slow) if a in SLOW_ARCHS else a for a in CONFIGS])
def test_decoder_exports_with_its_cache_validates_and_generates_the_tokens_transformers_generates(arch):
    model, art = decoder(arch)
    assert art.input_names[:2] == ["input_ids", "attention_mask"]
    assert "past_key_values.0.key" in art.input_names
    assert "past_key_values.1.value" in art.input_names
    assert "present.1.value" in art.output_names
    assert art.dynamic_axes["past_key_values.0.key"] == {0: "batch_size", 2: "past_sequence_length"}
    assert art.dynamic_axes["attention_mask"][1] == "past_sequence_length + sequence_length"
    report = art.validate()
    generation = next(c for c in report.checks if c.name == "generation")
    assert generation.passed is True, str(report)
    ids, mask = left_padded()
    got = art.generate(ids, mask, max_new_tokens=16)
    want = hf_generate(model, ids, mask, max_new_tokens=16, do_sample=False)
    np.testing.assert_array_equal(got, want)


@pytest.mark.slow
def test_sliding_window_decoder_matches_within_its_window_and_refuses_longer_sequences():
    torch.manual_seed(0)
    model = transformers.MistralForCausalLM(
        transformers.MistralConfig(num_key_value_heads=2, sliding_window=24, **TINY)
    )
    art = ob.export(model.eval())
    assert art.generation.max_length == 24
    assert any("window 24" in note for note in art.export_notes)
    assert_generation(art.validate())
    ids, mask = left_padded((5, 11))
    got = art.generate(ids, mask, max_new_tokens=13)
    np.testing.assert_array_equal(got, hf_generate(model, ids, mask, max_new_tokens=13, do_sample=False))
    with pytest.raises(ob.InputError, match="sliding attention window"):
        art.generate(ids, mask, max_new_tokens=14)


def test_saved_decoder_loads_generates_and_validates_against_the_recorded_tokens(tmp_path):
    _, art = decoder("llama")
    art.save(tmp_path / "llama.onnx")
    loaded = ob.load(tmp_path / "llama.onnx")
    assert loaded.generation is not None
    assert loaded.generation.record is not None
    report = loaded.validate()
    generation = next(c for c in report.checks if c.name == "generation")
    assert generation.passed is True
    assert "recorded" in generation.detail
    ids, mask = left_padded((3, 7), seed=4)
    np.testing.assert_array_equal(
        loaded.generate(ids, mask, max_new_tokens=6), art.generate(ids, mask, max_new_tokens=6)
    )


def test_generation_check_names_the_step_and_row_where_tokens_differ():
    _, art = decoder("llama")
    record = art.generation.record
    spoiled = ob.Artifact(
        ob.Exported(model=art.model, framework="transformers", framework_version="x", exporter="x", dynamic_axes={})
    )
    tokens = record.tokens.copy()
    prompt = record.input_ids.shape[1]
    tokens[1, prompt + 2] = (tokens[1, prompt + 2] + 1) % 128
    spoiled.generation = type(art.generation)(
        "text-generation",
        art.generation.eos_token_id,
        art.generation.pad_token_id,
        type(record)(record.input_ids, record.attention_mask, tokens),
    )
    report = spoiled.validate(raise_on_failure=False)
    generation = next(c for c in report.checks if c.name == "generation")
    assert generation.passed is False
    assert "step 2, row 1" in generation.detail


def test_generation_check_judges_a_logit_s_error_at_its_row_s_scale():
    """2e-5 on a logit near 0 beside logits of 4 is float noise; an error near rtol x the row's scale is not."""
    _, art = decoder("llama")
    record = art.generation.record

    def check(shift: float):
        logits = [step.copy() for step in record.logits]
        row = logits[0][0]
        row[int(np.argmin(np.abs(row)))] += shift  # the logit nearest 0: never the chosen token
        spoiled = ob.Artifact(
            ob.Exported(model=art.model, framework="transformers", framework_version="x", exporter="x", dynamic_axes={})
        )
        spoiled.generation = dataclasses.replace(art.generation, record=dataclasses.replace(record, logits=logits))
        report = spoiled.validate(raise_on_failure=False)
        return next(c for c in report.checks if c.name == "generation")

    scale = float(np.abs(record.logits[0][0]).max())
    assert check(0.3e-3 * scale).passed is True  # element by element (rtol x |~0|) this would have failed
    failed = check(3e-3 * scale)
    assert failed.passed is False
    assert "step 0, row 0" in failed.detail


def test_generation_stops_at_eos_and_pads_finished_rows_like_transformers():
    model, art = decoder("llama")
    ids, mask = left_padded()
    greedy = art.generate(ids, mask, max_new_tokens=8)
    eos = int(greedy[0, ids.shape[1] + 2])  # row 0 ends at its third new token
    got = art.generate(ids, mask, max_new_tokens=8, eos_token_id=eos, pad_token_id=0)
    want = hf_generate(model, ids, mask, max_new_tokens=8, do_sample=False, eos_token_id=eos, pad_token_id=0)
    np.testing.assert_array_equal(got, want)
    assert got[0, ids.shape[1] + 2] == eos
    assert (got[0, ids.shape[1] + 3 :] == 0).all()


def test_sampling_is_reproducible_by_seed_and_stays_in_the_top_k():
    model, art = decoder("llama")
    ids, mask = left_padded()
    first = art.generate(ids, mask, max_new_tokens=10, do_sample=True, top_k=5, temperature=0.8, seed=7)
    again = art.generate(ids, mask, max_new_tokens=10, do_sample=True, top_k=5, temperature=0.8, seed=7)
    np.testing.assert_array_equal(first, again)
    with torch.no_grad():  # teacher-force the sampled sequence through the source model
        full = torch.from_numpy(np.concatenate([mask, np.ones((2, 10), dtype=np.int64)], axis=1))
        logits = model(input_ids=torch.from_numpy(first), attention_mask=full).logits.numpy()
    for step in range(10):
        position = ids.shape[1] + step
        top5 = np.argsort(logits[:, position - 1], axis=-1)[:, -5:]
        assert all(first[row, position] in top5[row] for row in range(2)), f"step {step}"


def test_top_k_one_and_a_tiny_top_p_sample_the_greedy_tokens():
    _, art = decoder("llama")
    ids, mask = left_padded()
    greedy = art.generate(ids, mask, max_new_tokens=6)
    np.testing.assert_array_equal(art.generate(ids, mask, max_new_tokens=6, do_sample=True, top_k=1, seed=1), greedy)
    np.testing.assert_array_equal(art.generate(ids, mask, max_new_tokens=6, do_sample=True, top_p=1e-9, seed=1), greedy)


@settings(max_examples=40, deadline=None)
@given(
    max_new_tokens=st.one_of(st.integers(-3, 3), st.floats(allow_nan=True), st.none()),
    temperature=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-2, 2)),
    top_k=st.one_of(st.none(), st.integers(-2, 3), st.booleans()),
    top_p=st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)),
)
def test_generation_settings_are_checked_before_anything_runs(max_new_tokens, temperature, top_k, top_p):
    _, art = decoder("llama")
    ids = np.array([[5, 6, 7]])
    valid = (
        isinstance(max_new_tokens, int)
        and max_new_tokens >= 0
        and temperature == temperature
        and 0 < temperature < float("inf")
        and (top_k is None or (not isinstance(top_k, bool) and top_k >= 0))
        and (top_p is None or 0 < top_p <= 1)
    )
    if valid:
        out = art.generate(
            ids,
            max_new_tokens=max_new_tokens,
            do_sample=True,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            seed=0,
        )
        assert out.shape[0] == 1
        assert 3 <= out.shape[1] <= 3 + max_new_tokens
    else:
        with pytest.raises(ob.InputError):
            art.generate(
                ids, max_new_tokens=max_new_tokens, do_sample=True, temperature=temperature, top_k=top_k, top_p=top_p
            )


@pytest.mark.parametrize(
    ("ids", "mask", "expected"),
    [
        (np.array([[5, 6, 7]]), np.array([[1, 1, 0]]), "right padding"),
        (np.array([[5, 6, 7]]), np.array([[1, 1]]), "must match input_ids"),
        (np.array([[5.0, 6.0]]), None, "integers"),
        (np.array([[-1, 6]]), None, "negative"),
        (np.zeros((1, 0), dtype=np.int64), None, "at least one token"),
        (np.array([[5, 6]]), np.array([[0, 0]]), "all padding"),
    ],
)
def test_bad_prompts_are_refused_with_what_to_do(ids, mask, expected):
    _, art = decoder("llama")
    with pytest.raises(ob.InputError, match=expected):
        art.generate(ids, mask)


def test_generate_on_a_model_without_a_cache_says_how_to_export_one(tmp_path):
    model = transformers.BertModel(
        transformers.BertConfig(
            vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64
        )
    ).eval()
    art = ob.export(model)
    with pytest.raises(ob.InputError, match="task='text-generation'"):
        art.generate(np.array([[1, 2, 3]]))


def test_unknown_and_impossible_tasks_are_refused_listing_the_model_s_tasks():
    model = transformers.BertForSequenceClassification(
        transformers.BertConfig(
            vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64
        )
    )
    with pytest.raises(ob.InputError, match="text-classification") as unknown:
        ob.export(model, task="summarize")
    assert "not a task onnxbridge knows" in str(unknown.value)
    with pytest.raises(ob.InputError, match="cannot do task='text-generation'") as impossible:
        ob.export(model, task="text-generation")
    assert "text-classification, feature-extraction" in str(impossible.value)


def test_generation_exports_refuse_axes_and_names_they_set_themselves():
    model = transformers.LlamaForCausalLM(CONFIGS["llama"]())
    with pytest.raises(ob.InputError, match="does not take dynamic_axes"):
        ob.export(model, dynamic_axes="batch")


def test_a_cache_kind_onnxbridge_cannot_flatten_is_refused_naming_it_and_the_workaround():
    class OddCache:
        pass

    class OddLlama(transformers.LlamaForCausalLM):
        def forward(self, input_ids=None, attention_mask=None, **kwargs):
            out = super().forward(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
            if out.past_key_values is not None:
                out.past_key_values = OddCache()
            return out

    model = OddLlama(CONFIGS["llama"]()).eval()
    with pytest.raises(ob.ExportError, match="OddCache") as caught:
        ob.export(model, task="text-generation")
    assert "task='feature-extraction'" in str(caught.value)
    assert "O(n^2)" in str(caught.value)
    assert model.config.use_cache  # the workaround the message gives works as it is
    ids = torch.randint(0, 128, (2, 6))
    art = ob.export(model, {"input_ids": ids}, {"input_ids": {0: "batch", 1: "sequence"}}, task="feature-extraction")
    assert art.output_names == ["logits"]
    assert_parity(art.validate(), cases=2)


# -- weight-only quantization of a decoder that has learned something -------------------------


@functools.cache
def counting_decoder():
    """A tiny Llama trained for a few seconds to continue counting (next = previous + 1 mod 128).

    Random weights give near-flat logits, where any rounding flips the greedy token; a model with
    confident predictions is what users quantize.
    """
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(CONFIGS["llama"]())
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(150):
        start = torch.randint(0, 128, (32, 1))
        batch = (start + torch.arange(24)) % 128
        loss = model(input_ids=batch, labels=batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    return model, ob.export(model, task="text-generation")


def _weight_bytes(model):
    from onnx import numpy_helper

    return sum(numpy_helper.to_array(t).nbytes for t in model.graph.initializer)


@pytest.mark.slow
def test_int4_and_int8_weight_decoders_are_smaller_and_keep_greedy_tokens():
    _, art = counting_decoder()
    ids = np.array([[10, 11, 12, 13], [0, 0, 70, 71]])
    mask = np.array([[1, 1, 1, 1], [0, 0, 1, 1]])
    greedy = art.generate(ids, mask, max_new_tokens=8)
    assert (greedy[0, 4:] == np.arange(14, 22)).all(), "the model learned to count"
    sizes = {}
    for mode, bits in (("int4", 4), ("int8-weight", 8)):
        q = art.quantize(mode)
        report = q.quantization
        assert report.mode.value == mode
        assert f"int{bits} block-wise" in report.settings["weights"]
        weights = {t.name for t in art.model.graph.initializer if len(t.dims) == 2}
        matmuls = sum(n.op_type == "MatMul" and n.input[1] in weights for n in art.model.graph.node)
        assert matmuls >= 11  # per layer Q/K/V (packed in the fused graph), O, gate, up, down; and the LM head
        assert sum(n.op_type == "MatMulNBits" for n in q.model.graph.node) == matmuls  # every one of them
        sizes[mode] = _weight_bytes(q.model) / _weight_bytes(art.model)
        assert report.size_ratio < 1
        quality = report.generation
        assert quality is not None
        assert quality.prompts >= 4
        assert quality.identical == quality.prompts, str(report)
        assert quality.min_logits_cosine > 0.99
        np.testing.assert_array_equal(q.generate(ids, mask, max_new_tokens=8), greedy)
    # Weights only: the dynamo exporter's per-node metadata (stack traces) dominates a tiny file. The fused
    # graph's rotary cos/sin caches (float, a few percent of this tiny model) stay as they are.
    assert sizes["int4"] < 0.27, sizes
    assert sizes["int8-weight"] < 0.4, sizes
