"""Encoder-decoder models (BART, T5, Whisper): two graphs that generate the tokens transformers generates.

Tiny configs, random weights, default ``use_cache``; each model exported once per session.
"""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest

import onnxbridge as ob
from tests.parity import assert_generation

transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

SMALL = {
    "vocab_size": 128,
    "d_model": 64,
    "encoder_layers": 2,
    "decoder_layers": 2,
    "encoder_attention_heads": 4,
    "decoder_attention_heads": 4,
    "encoder_ffn_dim": 128,
    "decoder_ffn_dim": 128,
}
MODELS = {
    "bart": lambda: transformers.BartForConditionalGeneration(
        transformers.BartConfig(max_position_embeddings=64, eos_token_id=127, **SMALL)  # forced EOS 2 kept
    ),
    "t5": lambda: transformers.T5ForConditionalGeneration(
        transformers.T5Config(
            vocab_size=128,
            d_model=64,
            d_kv=16,
            d_ff=128,
            num_layers=2,
            num_decoder_layers=2,
            num_heads=4,
            decoder_start_token_id=0,  # as t5-small's config has it
        )
    ),
    "whisper": lambda: transformers.WhisperForConditionalGeneration(
        transformers.WhisperConfig(
            num_mel_bins=16,
            max_source_positions=30,
            max_target_positions=64,
            decoder_start_token_id=1,
            bos_token_id=1,
            eos_token_id=2,
            pad_token_id=2,
            suppress_tokens=[5, 6],  # generation must honour the model's suppressed tokens
            begin_suppress_tokens=[7],
            **SMALL,
        )
    ),
}


@functools.cache
def exported(name: str):
    torch.manual_seed(0)
    model = MODELS[name]().eval()
    return model, ob.export(model)


def text_batch():
    ids = np.random.default_rng(0).integers(3, 120, (2, 9))
    mask = np.ones_like(ids)
    mask[0, 6:] = 0  # the first input is shorter
    return ids, mask


@pytest.mark.parametrize("name", ["bart", "t5"])
def test_text_encoder_decoder_exports_two_graphs_that_generate_like_transformers(name):
    model, art = exported(name)
    assert isinstance(art, ob.EncoderDecoderArtifact)
    assert art.properties["task"] == "text2text-generation"
    assert art.encoder.input_names == ["input_ids", "attention_mask"]
    assert "present.1.encoder.value" in art.encoder.output_names
    assert art.decoder.input_names[:3] == ["decoder_input_ids", "encoder_attention_mask", "encoder_hidden_states"]
    assert "past_key_values.0.decoder.key" in art.decoder.input_names
    assert art.decoder.dynamic_axes["past_key_values.0.decoder.key"] == {
        0: "batch_size",
        2: "past_decoder_sequence_length",
    }
    report = art.validate()
    assert next(c for c in report.checks if c.name == "generation").passed is True, str(report)
    assert any(c.name == "encoder: numeric parity" and c.passed for c in report.checks)
    ids, mask = text_batch()
    got = art.generate(ids, mask, max_new_tokens=16)
    with torch.no_grad():
        want = model.generate(
            input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask), max_new_tokens=16, do_sample=False
        ).numpy()
    np.testing.assert_array_equal(got, want)


def test_whisper_exports_and_generates_like_transformers_with_its_suppressed_tokens():
    model, art = exported("whisper")
    assert art.properties["task"] == "automatic-speech-recognition"
    assert art.encoder.input_names == ["input_features"]
    assert art.generation.settings.suppress_tokens == (5, 6)
    assert_generation(art.validate())
    features = np.random.default_rng(1).standard_normal((2, 16, 60)).astype(np.float32)
    got = art.generate(features, max_new_tokens=16)
    with torch.no_grad():
        want = model.generate(input_features=torch.from_numpy(features), max_new_tokens=16).numpy()
    assert (got[:, 0] == 1).all()  # the decoder start token, which transformers' Whisper leaves out
    np.testing.assert_array_equal(got[:, 1:], want)
    assert not np.isin(got[:, 1:], [5, 6]).any()


def test_encoder_decoder_saves_as_a_folder_that_loads_validates_and_generates(tmp_path):
    _, art = exported("t5")
    folder = art.save(tmp_path / "t5")
    assert sorted(p.name for p in folder.iterdir()) == [
        "decoder.onnx",
        "encoder.onnx",
        "generation.npz",
        "onnxbridge.json",
    ]
    loaded = ob.load(folder)
    assert isinstance(loaded, ob.EncoderDecoderArtifact)
    generation = next(c for c in loaded.validate().checks if c.name == "generation")
    assert generation.passed is True
    assert "recorded" in generation.detail
    ids, mask = text_batch()
    np.testing.assert_array_equal(
        loaded.generate(ids, mask, max_new_tokens=6), art.generate(ids, mask, max_new_tokens=6)
    )
    art.save(folder)  # replacing an export folder is allowed
    assert ob.load(folder).encoder.input_names == ["input_ids", "attention_mask"]


def test_saving_over_a_folder_that_is_not_an_export_is_refused_and_leaves_it_alone(tmp_path):
    _, art = exported("t5")
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    with pytest.raises(ob.ModelFileError, match="not an onnxbridge export folder"):
        art.save(folder)
    assert [p.name for p in folder.iterdir()] == ["notes.txt"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".onnxbridge")]


def test_two_graphs_have_no_single_session_and_say_what_to_use():
    _, art = exported("bart")
    with pytest.raises(ob.InputError, match="sessions"):
        art.session()
    sessions = art.sessions(providers=["cpu"])
    assert set(sessions) == {"encoder", "decoder"}
    ids, mask = text_batch()
    np.testing.assert_array_equal(
        art.generate(ids, mask, max_new_tokens=4, sessions=sessions), art.generate(ids, mask, max_new_tokens=4)
    )


def test_weight_only_encoder_decoder_quantizes_both_graphs_and_reports_agreement():
    _, art = exported("bart")
    q = art.quantize("int8-weight")
    assert isinstance(q, ob.EncoderDecoderArtifact)
    assert q.parent is art
    for role in ("encoder", "decoder"):
        assert q.components[role].quantization.mode.value == "int8-weight"
        assert any(n.op_type == "MatMulNBits" for n in q.components[role].model.graph.node)
    generation = next(c for c in q.validate().checks if c.name == "generation")
    assert generation.passed is None
    assert "int8-weight model: greedy tokens" in generation.detail


def test_a_pair_is_two_artifacts_not_one():
    _, art = exported("t5")
    assert not isinstance(art, ob.Artifact)
    assert all(isinstance(part, ob.Artifact) for part in art.components.values())
    assert art.framework == art.decoder.framework == "transformers"


def test_pair_with_opset_converts_both_graphs_and_validates_generation_end_to_end():
    _, art = exported("t5")
    old = art.with_opset(17)
    assert isinstance(old, ob.EncoderDecoderArtifact)
    assert old.parent is art
    assert old.encoder.opset == old.decoder.opset == 17
    assert_generation(old.validation)
    assert any(c.name == "encoder: numeric parity" and c.passed for c in old.validation.checks)
    ids, mask = text_batch()
    np.testing.assert_array_equal(old.generate(ids, mask, max_new_tokens=8), art.generate(ids, mask, max_new_tokens=8))
    with pytest.raises(ob.InputError, match=r"pair\.encoder\.with_opset"):
        art.with_opset(17, samples=[ids])


def test_pair_compat_checks_both_graphs_and_its_fix_works():
    _, art = exported("t5")
    report = art.compat("onnxruntime==1.17")
    assert not report.ok  # exported at an opset newer than 1.17 loads
    roles = {f.problem.split(":")[0] for f in report.findings}
    assert roles == {"encoder", "decoder"}, report
    fix = next(f.fix for f in report.findings if "with_opset(" in f.fix)
    assert fix.startswith("pair.with_opset(")
    opset = int(fix.split("with_opset(")[1].split(")")[0])
    fixed = art.with_opset(opset)  # what the report proposes, for both graphs at once
    assert_generation(fixed.validation)
    assert fixed.compat("onnxruntime==1.17").ok


def test_pair_optimize_optimizes_both_graphs_and_keeps_generation():
    _, art = exported("bart")
    fast = art.optimize("basic")
    assert isinstance(fast, ob.EncoderDecoderArtifact)
    assert fast.encoder.optimization is not None
    assert fast.decoder.optimization is not None
    assert_generation(fast.validate())


def test_pair_refuses_one_graph_operations_with_what_to_call_instead(tmp_path):
    _, art = exported("bart")
    with pytest.raises(ob.InputError, match=r"pair\.encoder\.to_web"):
        art.to_web(tmp_path / "site")
    with pytest.raises(ob.InputError, match=r"pair\.encoder\.validate\(samples"):
        art.validate(samples=[np.zeros((1, 4), np.int64)])
    assert not (tmp_path / "site").exists()


def test_inspect_of_a_saved_pair_reports_both_graphs(tmp_path):
    from typer.testing import CliRunner

    from onnxbridge.cli._app import app

    _, art = exported("t5")
    folder = art.save(tmp_path / "t5")
    result = CliRunner().invoke(app, ["inspect", str(folder), "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["kind"] == "encoder-decoder"
    assert info["graphs"]["encoder"]["inputs"][0]["name"] == "input_ids"
    assert info["graphs"]["decoder"]["onnxbridge"]["framework"] == "transformers"
    result = CliRunner().invoke(app, ["run", str(folder), "--input", "input_ids=x.npy"])
    assert result.exit_code == 2
    assert "decoder.onnx" in result.output
