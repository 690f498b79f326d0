"""One representative per family of transformers language models, beyond the classic dense decoder.

Mixture-of-experts decoders, base models and decoder embedding models exported with a sample,
and configs whose own ids are wrong. Models come from ``tests/hf_zoo.py`` (default configs
shrunk; random weights, nothing downloaded) and keep their default ``use_cache`` and
``generation_config``.
"""

from __future__ import annotations

import functools

import numpy as np
import onnx
import pytest

import onnxbridge as ob
from tests import hf_zoo
from tests.parity import assert_generation, assert_parity

transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

STEPS = 8


def tiny_lm(model_type: str):
    """The type's shrunk default config as a causal LM, random weights from seed 0."""
    torch.manual_seed(0)
    return transformers.AutoModelForCausalLM.from_config(hf_zoo.tiny_config(model_type)).eval()


@functools.cache
def moe(model_type: str):
    model = tiny_lm(model_type)
    return model, ob.export(model)


def _hf_tokens(model, ids, mask):
    with torch.no_grad():
        out = model.generate(
            input_ids=torch.from_numpy(ids),
            attention_mask=torch.from_numpy(mask),
            max_new_tokens=STEPS,
            do_sample=False,
        )
    return out.numpy()


@pytest.mark.parametrize(
    ("model_type", "how"),
    [
        ("qwen3_moe", "batched_mm"),
        pytest.param("mixtral", "batched_mm", marks=pytest.mark.slow),
        pytest.param("dbrx", "DbrxExperts) exported in a gathered form", marks=pytest.mark.slow),  # experts loop
    ],
)
def test_mixture_of_experts_decoder_exports_validates_and_generates_token_exact(model_type, how):
    model, art = moe(model_type)
    implementation = model.get_experts_implementation()
    forwards = {type(module): type(module).forward for module in model.modules()}
    assert_generation(art.validate())
    assert any(how in note and "top-k" in note for note in art.export_notes)
    assert model.get_experts_implementation() == implementation  # the user's setting is restored
    assert all(cls.forward is forward for cls, forward in forwards.items())  # and every class's forward
    ids, mask = hf_zoo.prompts(hf_zoo.VOCAB, (2, 11), seed=5)  # a short prompt beside a long one
    np.testing.assert_array_equal(art.generate(ids, mask, max_new_tokens=STEPS), _hf_tokens(model, ids, mask))


def test_routed_experts_graph_gathers_the_selected_experts_instead_of_running_all():
    model, art = moe("qwen3_moe")
    standard = art.fallback.model  # the graph in standard operators; the default one routes in MoE
    experts = model.config.num_experts
    stacked = {t.name for t in standard.graph.initializer if len(t.dims) == 3 and t.dims[0] == experts}
    assert len(stacked) == 2 * model.config.num_hidden_layers  # gate_up and down weights of every expert, per layer
    consumers = {
        node.op_type for node in standard.graph.node for name in node.input if name in stacked
    }  # the selected experts' rows are gathered (by each token's top-k ids), never every expert multiplied
    assert consumers
    assert consumers <= {"Gather", "GatherND"}


def test_experts_fuse_into_onnxruntime_moe_with_gate_and_up_interleaved_as_its_cpu_kernel_takes():
    model, art = moe("qwen3_moe")
    nodes = [n for n in art.model.graph.node if (n.domain, n.op_type) == ("com.microsoft", "MoE")]
    assert len(nodes) == model.config.num_hidden_layers
    for node in nodes:
        attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        assert attributes["activation_type"] == b"swiglu"
        assert attributes["swiglu_fusion"] == 1
        assert attributes["k"] == model.config.num_experts_per_tok
        assert len(node.input) <= 6 or not node.input[6]  # no fc3, which the CPU kernel refuses
    assert "TopK" not in {n.op_type for n in art.model.graph.node}  # onnxruntime routes the tokens itself
    weights = {t.name for t in art.model.graph.initializer if len(t.dims) == 3}
    assert {n.op_type for n in art.model.graph.node for name in n.input if name in weights} == {"MoE"}
    feeds = art.reference.feeds()
    fused, standard = art.session().run(feeds), art.fallback.session().run(feeds)
    np.testing.assert_allclose(fused["logits"], standard["logits"], rtol=1e-4, atol=1e-5)


@functools.cache
def recurrent(model_type: str):
    model = tiny_lm(model_type)
    return model, ob.export(model)


@pytest.mark.parametrize("model_type", ["falcon_mamba", pytest.param("jamba", marks=pytest.mark.slow)])
def test_state_space_and_hybrid_decoders_carry_their_states_and_generate_token_exact(model_type):
    model, art = recurrent(model_type)
    states = [name for name in art.input_names if name.endswith((".conv", ".recurrent"))]
    assert states  # conv and recurrent states are named graph inputs...
    assert all(name.replace("past_key_values", "present") in art.output_names for name in states)  # ...and outputs
    assert all(art.dynamic_axes[name] == {0: "batch_size"} for name in states)  # fixed size past the batch
    assert_generation(art.validate())
    ids, mask = hf_zoo.prompts(hf_zoo.VOCAB, (1, 4, 12), seed=6)  # one-token, short and long prompts, left-padded
    np.testing.assert_array_equal(art.generate(ids, mask, max_new_tokens=STEPS), _hf_tokens(model, ids, mask))


def test_a_saved_state_space_decoder_loads_validates_and_generates(tmp_path):
    _, art = recurrent("falcon_mamba")
    art.save(tmp_path / "ssm.onnx")
    loaded = ob.load(tmp_path / "ssm.onnx")
    assert_generation(loaded.validate())  # the recorded tokens, replayed from the file
    ids, mask = hf_zoo.prompts(hf_zoo.VOCAB, (3, 6), seed=2)
    np.testing.assert_array_equal(
        loaded.generate(ids, mask, max_new_tokens=4), art.generate(ids, mask, max_new_tokens=4)
    )


def test_an_encoder_configured_without_is_decoder_is_refused_as_the_model_s_fault():
    config = hf_zoo.tiny_config("bert", is_decoder=False)
    model = transformers.BertLMHeadModel(config).eval()
    with pytest.raises(ob.ModelConfigError, match="is_decoder=False") as caught:
        ob.export(model)
    assert "is_decoder=True" in str(caught.value)
    config.is_decoder = True  # what the message says to do
    decoder = transformers.BertLMHeadModel(config).eval()
    ids, mask = hf_zoo.prompts(hf_zoo.VOCAB, (2, 7), seed=3)
    art = ob.export(decoder)
    assert_generation(art.validate())
    np.testing.assert_array_equal(art.generate(ids, mask, max_new_tokens=STEPS), _hf_tokens(decoder, ids, mask))


BASES = {
    "llama": lambda: transformers.LlamaModel(hf_zoo.tiny_config("llama")),
    "gpt2": lambda: transformers.GPT2Model(hf_zoo.tiny_config("gpt2")),
    "qwen2": lambda: transformers.Qwen2Model(hf_zoo.tiny_config("qwen2")),
}


@pytest.mark.parametrize("name", BASES)
def test_base_decoder_with_a_sample_and_dynamic_axes_exports_forward_without_its_cache(name):
    torch.manual_seed(0)
    model = BASES[name]().train()
    ids, mask = hf_zoo.prompts(hf_zoo.VOCAB, (3, 7))
    sample = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}
    axes = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"}}
    art = ob.export(model, sample, dynamic_axes=axes)
    assert model.training  # the user's model is left as it was
    assert model.config.use_cache
    assert art.output_names == ["last_hidden_state"]
    assert any("without the KV cache" in note and "AutoModelForCausalLM" in note for note in art.export_notes)
    short, short_mask = hf_zoo.prompts(hf_zoo.VOCAB, (1, 2, 13), seed=2)
    assert_parity(art.validate(samples=[{"input_ids": short, "attention_mask": short_mask}]), cases=2)


def test_encoder_decoder_base_model_exports_without_its_cache():
    torch.manual_seed(0)
    model = transformers.BartModel(hf_zoo.tiny_config("bart")).eval()
    ids, mask = hf_zoo.prompts(hf_zoo.VOCAB, (4, 6))
    sample = {"input_ids": ids, "attention_mask": mask, "decoder_input_ids": ids[:, :3]}
    axes = {
        "input_ids": {0: "batch", 1: "sequence"},
        "attention_mask": {0: "batch", 1: "sequence"},
        "decoder_input_ids": {0: "batch", 1: "decoder_sequence"},
    }
    art = ob.export(model, sample, dynamic_axes=axes)
    assert "last_hidden_state" in art.output_names
    assert any("text2text-generation" in note for note in art.export_notes)
    assert_parity(art.validate(), cases=2)


def test_decoder_embedding_model_gives_the_source_s_pooled_embeddings_at_any_length():
    """A decoder used for embeddings (Qwen3-Embedding, gte-Qwen): last-token pooling of the base model."""
    torch.manual_seed(0)
    model = transformers.AutoModel.from_config(hf_zoo.tiny_config("qwen3")).eval()
    ids, mask = hf_zoo.prompts(hf_zoo.VOCAB, (2, 9))
    axes = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"}}
    art = ob.export(model, {"input_ids": ids, "attention_mask": mask}, dynamic_axes=axes, task="feature-extraction")
    probe, probe_mask = hf_zoo.prompts(hf_zoo.VOCAB, (1, 5, 17), seed=7)
    hidden = art.session().run({"input_ids": probe, "attention_mask": probe_mask})["last_hidden_state"]
    with torch.no_grad():
        want = model(input_ids=torch.from_numpy(probe), attention_mask=torch.from_numpy(probe_mask)).last_hidden_state
    pooled, pooled_want = hidden[:, -1], want.numpy()[:, -1]  # left padding: the last token is every row's own
    cosine = (pooled * pooled_want).sum(-1) / np.linalg.norm(pooled, axis=-1) / np.linalg.norm(pooled_want, axis=-1)
    assert cosine.min() > 0.9999


def test_an_eos_id_outside_the_vocabulary_is_named_as_the_model_s_fault():
    config = transformers.GPT2Config(vocab_size=128, n_embd=32, n_layer=1, n_head=2)  # default EOS 50256
    model = transformers.GPT2LMHeadModel(config).eval()
    with pytest.raises(ob.ModelConfigError, match=r"eos_token_id=50256 lies outside its vocabulary of 128") as caught:
        ob.export(model)
    assert "model's fault" in str(caught.value)
    model.generation_config.eos_token_id = model.config.eos_token_id = 2  # what the message says to do
    model.generation_config.bos_token_id = model.config.bos_token_id = 1
    assert_generation(ob.export(model).validate())


def test_an_indexed_cache_exports_its_indexer_keys_and_generates_token_exact():
    model = tiny_lm("deepseek_v32")
    art = ob.export(model)
    assert "past_key_values.0.indexer" in art.input_names
    assert art.dynamic_axes["past_key_values.0.indexer"] == {0: "batch_size", 1: "past_sequence_length"}
    assert_generation(art.validate())
    ids, mask = hf_zoo.prompts(hf_zoo.VOCAB, (1, 10), seed=4)
    np.testing.assert_array_equal(art.generate(ids, mask, max_new_tokens=STEPS), _hf_tokens(model, ids, mask))


def test_a_per_model_cache_class_carries_its_linear_attention_states_and_generates_token_exact():
    """MiniMax keeps its lightning-attention states in its own MiniMaxCache, beside the attention layers' keys."""
    model = tiny_lm("minimax")
    art = ob.export(model)
    states = [name for name in art.input_names if name.endswith(".recurrent")]
    keys = [name for name in art.input_names if name.endswith(".key")]
    assert states  # a linear-attention layer...
    assert keys  # ...and an attention layer
    assert all(art.dynamic_axes[name] == {0: "batch_size"} for name in states)
    assert_generation(art.validate())
    ids, mask = hf_zoo.prompts(hf_zoo.VOCAB, (1, 5, 11), seed=1)
    np.testing.assert_array_equal(art.generate(ids, mask, max_new_tokens=STEPS), _hf_tokens(model, ids, mask))


@pytest.mark.slow
def test_a_cache_layer_kind_onnxbridge_cannot_flatten_is_refused_naming_it_and_the_workaround():
    model = tiny_lm("deepseek_v4")
    with pytest.raises(ob.ExportError, match="DeepseekV4CSACache") as caught:
        ob.export(model)
    assert "task='feature-extraction'" in str(caught.value)


@pytest.mark.parametrize("model_type", ["openai-gpt", pytest.param("xlnet", marks=pytest.mark.slow)])
def test_a_decoder_that_keeps_no_cache_generates_by_running_the_whole_sequence_each_step(model_type):
    """GPT-1 and XLNet keep no cache; transformers' generate() recomputes the prefix, and so does the graph."""
    model = tiny_lm(model_type)
    art = ob.export(model)
    assert not any(name.startswith("past_key_values") for name in art.input_names)
    assert art.dynamic_axes["input_ids"] == {0: "batch_size", 1: "sequence_length"}
    assert any("without a cache" in note and "O(n^2)" in note for note in art.export_notes)
    assert_generation(art.validate())
    ids, mask = hf_zoo.prompts(hf_zoo.VOCAB, (1, 4, 10), seed=8)  # a one-token prompt beside longer ones
    np.testing.assert_array_equal(art.generate(ids, mask, max_new_tokens=STEPS), _hf_tokens(model, ids, mask))


def test_a_model_whose_forward_loops_over_the_sequence_is_refused_and_exports_at_a_fixed_length():
    """RWKV keeps its state outside transformers' caches and scans in Python: no graph takes any length."""
    model = tiny_lm("rwkv")
    with pytest.raises(ob.ExportError, match="loops over the sequence in Python") as caught:
        ob.export(model)
    assert "task='feature-extraction') with no dynamic_axes" in str(caught.value)
    ids, _ = hf_zoo.prompts(hf_zoo.VOCAB, (6, 6), seed=2)
    art = ob.export(model, {"input_ids": ids}, task="feature-extraction")  # what the message says: one fixed length
    assert art.dynamic_axes == {}
    assert_parity(art.validate(), cases=1)


def test_complex_rotary_embeddings_export_through_their_real_view():
    """Llama 4 rotates queries and keys as complex numbers (``freqs_cis[:, :, None, :]``)."""
    model = tiny_lm("llama4_text")
    art = ob.export(model)
    assert_generation(art.validate())
    ids, mask = hf_zoo.prompts(hf_zoo.VOCAB, (2, 9), seed=3)
    np.testing.assert_array_equal(art.generate(ids, mask, max_new_tokens=STEPS), _hf_tokens(model, ids, mask))


def test_an_encoder_decoder_pair_without_cross_attention_is_refused_as_the_model_s_fault():
    bert = hf_zoo.tiny_config("bert")
    model = transformers.EncoderDecoderModel(transformers.EncoderDecoderConfig(encoder=bert, decoder=bert)).eval()
    model.config.decoder_start_token_id, model.config.pad_token_id = 101, 0
    with pytest.raises(
        ob.ModelConfigError, match="add_cross_attention=False: its decoder ignores the encoder"
    ) as caught:
        ob.export(model)
    assert "from_encoder_decoder_configs" in str(caught.value)


@pytest.mark.slow
@pytest.mark.parametrize("model_type", ["encoder-decoder", "switch_transformers"])
def test_encoder_decoder_pairs_and_routed_seq2seq_models_generate_token_exact(model_type):
    """A BERT pair built as from_encoder_decoder_pretrained builds it; Switch's encoder output carries router logits."""
    torch.manual_seed(0)
    model = transformers.AutoModelForSeq2SeqLM.from_config(hf_zoo.tiny_config(model_type)).eval()
    art = ob.export(model)
    assert_generation(art.validate())
    ids, mask = hf_zoo.prompts(hf_zoo.VOCAB, (3, 9), seed=4)
    got = art.generate(ids, mask, max_new_tokens=STEPS)
    with torch.no_grad():
        want = model.generate(
            input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask), max_new_tokens=STEPS
        ).numpy()
    np.testing.assert_array_equal(got[:, -want.shape[1] :], want)


def test_a_config_attribute_the_model_s_code_reads_but_its_config_lacks_is_named_as_the_model_s_fault():
    class TinyConfig:
        hidden = 4

    class Model(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.config = TinyConfig()
            self.linear = torch.nn.Linear(4, 4)

        def forward(self, x):
            return self.linear(x) * self.config.scale  # the config class has no `scale`

    model = Model()
    with pytest.raises(ob.ModelConfigError, match="'scale' from its TinyConfig") as caught:
        ob.export(model, torch.randn(2, 4))
    assert "model.config.scale" in str(caught.value)
    model.config.scale = 2.0  # what the message says to do
    assert_parity(ob.export(model, torch.randn(2, 4)).validate(), cases=1)


def test_a_decoder_whose_code_branches_on_the_past_s_length_gets_a_graph_for_the_prompt(tmp_path):
    """GIT widens its mask over image tokens only once there is a past: one traced graph is wrong for the prompt."""
    model = tiny_lm("git")
    art = ob.export(model)
    branches = [node for node in art.model.graph.node if node.op_type == "If"]
    assert len(branches) == 1  # the prompt's graph and the step's, chosen by the past's length
    assert any("takes another path on the prompt" in note for note in art.export_notes)
    assert_generation(art.validate())
    ids, mask = hf_zoo.prompts(hf_zoo.VOCAB, (1, 4, 10), seed=9)  # padded rows are where the paths differ
    want = _hf_tokens(model, ids, mask)
    np.testing.assert_array_equal(art.generate(ids, mask, max_new_tokens=STEPS), want)
    art.save(tmp_path / "git.onnx")  # the branches' own weights and constants survive a file
    np.testing.assert_array_equal(ob.load(tmp_path / "git.onnx").generate(ids, mask, max_new_tokens=STEPS), want)
