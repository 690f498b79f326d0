"""transformers models without a sample: the task from the model's class, inputs from its config."""

from __future__ import annotations

import numpy as np
import pytest

import onnxbridge as ob
from tests.parity import assert_parity

transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")


def _small(config_class, **extra):
    return config_class(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, **extra)


def test_bert_exports_without_a_sample_with_dynamic_batch_and_sequence_axes():
    torch.manual_seed(0)
    model = transformers.BertModel(_small(transformers.BertConfig, vocab_size=100)).eval()
    art = ob.export(model)
    assert art.framework == "transformers"
    assert art.properties["task"] == "feature-extraction"
    assert art.input_names == ["input_ids", "attention_mask", "token_type_ids"]
    assert all(art.dynamic_axes[n] == {0: "batch_size", 1: "sequence_length"} for n in art.input_names)
    assert any("inputs built from the config" in note for note in art.export_notes)
    report = art.validate()
    assert "sequence_length=1" in report.checks[2].detail
    assert "batch_size=1" in report.checks[2].detail
    session = art.session()
    for batch, length in ((1, 3), (4, 17)):  # sizes the made-up sample never had
        ids = np.random.default_rng(length).integers(0, 100, (batch, length))
        feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
        with torch.no_grad():
            want = model(**{k: torch.from_numpy(v) for k, v in feeds.items()}).last_hidden_state.numpy()
        np.testing.assert_allclose(session.run(feeds)["last_hidden_state"], want, rtol=1e-4, atol=1e-5)


def test_vit_classifier_exports_without_a_sample_at_its_configured_image_size():
    config = _small(transformers.ViTConfig, image_size=32, patch_size=8, num_labels=5)
    model = transformers.ViTForImageClassification(config).eval()
    art = ob.export(model)
    assert art.properties["task"] == "image-classification"
    assert art.input_names == ["pixel_values"]
    assert art.dynamic_axes["pixel_values"] == {0: "batch_size"}
    assert_parity(art.validate())
    pixels = np.random.default_rng(0).standard_normal((3, 3, 32, 32)).astype(np.float32)
    assert art.session().run({"pixel_values": pixels})["logits"].shape == (3, 5)


def test_wav2vec2_exports_without_a_sample_and_runs_on_other_lengths():
    config = transformers.Wav2Vec2Config(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(16, 16),
        conv_stride=(5, 4),
        conv_kernel=(10, 4),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
    )
    torch.manual_seed(0)
    model = transformers.Wav2Vec2Model(config).eval()
    art = ob.export(model)
    assert art.input_names == ["input_values"]
    assert art.dynamic_axes["input_values"] == {0: "batch_size", 1: "sequence_length"}
    assert_parity(art.validate())
    audio = 0.1 * np.random.default_rng(1).standard_normal((1, 7000)).astype(np.float32)
    with torch.no_grad():
        want = model(torch.from_numpy(audio)).last_hidden_state.numpy()
    np.testing.assert_allclose(art.session().run({"input_values": audio})["last_hidden_state"], want, atol=1e-4)


def test_a_user_sample_still_wins_over_the_made_up_one():
    model = transformers.BertModel(_small(transformers.BertConfig, vocab_size=100)).eval()
    sample = {"input_ids": torch.randint(0, 100, (3, 6))}
    art = ob.export(model, sample, {"input_ids": {0: "batch", 1: "seq"}})
    assert art.input_names == ["input_ids"]
    assert not any("built from the config" in note for note in art.export_notes)
    assert_parity(art.validate())
