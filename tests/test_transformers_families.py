"""One representative per family of transformers language models, beyond the classic dense decoder.

Mixture-of-experts decoders, base models and decoder embedding models exported with a sample,
and configs whose own ids are wrong. Models come from ``tests/hf_zoo.py`` (default configs
shrunk; random weights, nothing downloaded) and keep their default ``use_cache`` and
``generation_config``.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

import onnxbridge as ob
from tests import hf_zoo
from tests.parity import assert_generation, assert_parity

transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

STEPS = 8


@functools.cache
def moe(model_type: str):
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(hf_zoo.tiny_config(model_type)).eval()
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


@pytest.mark.parametrize("model_type", ["qwen3_moe", pytest.param("mixtral", marks=pytest.mark.slow)])
def test_mixture_of_experts_decoder_exports_validates_and_generates_token_exact(model_type):
    model, art = moe(model_type)
    implementation = model.get_experts_implementation()
    assert_generation(art.validate())
    assert any("batched_mm" in note for note in art.export_notes)
    assert model.get_experts_implementation() == implementation  # the user's setting is restored
    ids, mask = hf_zoo.prompts(hf_zoo.VOCAB, (2, 11), seed=5)  # a short prompt beside a long one
    np.testing.assert_array_equal(art.generate(ids, mask, max_new_tokens=STEPS), _hf_tokens(model, ids, mask))


def test_routed_experts_graph_gathers_the_selected_experts_instead_of_running_all():
    model, art = moe("qwen3_moe")
    experts = model.config.num_experts
    stacked = {t.name for t in art.model.graph.initializer if len(t.dims) == 3 and t.dims[0] == experts}
    assert len(stacked) == 2 * model.config.num_hidden_layers  # gate_up and down weights of every expert, per layer
    consumers = {
        node.op_type for node in art.model.graph.node for name in node.input if name in stacked
    }  # the selected experts' rows are gathered (by each token's top-k ids), never every expert multiplied
    assert consumers
    assert consumers <= {"Gather", "GatherND"}


@functools.cache
def recurrent(model_type: str):
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(hf_zoo.tiny_config(model_type)).eval()
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
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(hf_zoo.tiny_config("deepseek_v32")).eval()
    art = ob.export(model)
    assert "past_key_values.0.indexer" in art.input_names
    assert art.dynamic_axes["past_key_values.0.indexer"] == {0: "batch_size", 1: "past_sequence_length"}
    assert_generation(art.validate())
    ids, mask = hf_zoo.prompts(hf_zoo.VOCAB, (1, 10), seed=4)
    np.testing.assert_array_equal(art.generate(ids, mask, max_new_tokens=STEPS), _hf_tokens(model, ids, mask))


def test_a_per_model_cache_is_refused_naming_its_class_and_the_workaround_works():
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(hf_zoo.tiny_config("minimax")).eval()
    with pytest.raises(ob.ExportError, match="MiniMaxCache") as caught:
        ob.export(model)
    assert "task='feature-extraction'" in str(caught.value)
    ids, mask = hf_zoo.prompts(hf_zoo.VOCAB, (3, 8), seed=1)
    axes = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"}}
    art = ob.export(model, {"input_ids": ids, "attention_mask": mask}, axes, task="feature-extraction")
    assert art.output_names == ["logits"]
    assert_parity(art.validate(), cases=2)


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
