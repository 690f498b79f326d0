"""generate() applies the model's generation_config as transformers does, setting by setting.

Each case sets one setting on a copy of the model's generation config, chosen from the plain
greedy tokens so that it changes them (checked against transformers), then compares onnxbridge's
tokens with ``model.generate()``'s. Settings the loop does not apply are refused by name.
"""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import onnxbridge as ob
from onnxbridge.generation._spec import ModelSettings
from tests.parity import assert_generation

transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

from tests.test_generation import CONFIGS, decoder, hf_generate, left_padded  # noqa: E402

STEPS = 8


def _with_settings(art, config, **tokens):
    """A copy of ``art`` whose generation settings are read from ``config``, as export reads them."""
    changed = copy.copy(art)
    changed.generation = dataclasses.replace(
        art.generation, settings=ModelSettings.from_generation_config(config), **tokens
    )
    return changed


def _greedy(model, ids, mask, **kwargs):
    return hf_generate(model, ids, mask, max_new_tokens=STEPS, do_sample=False, num_beams=1, **kwargs)


def _cases(plain, prompt):
    """Settings that bite: built from the plain greedy tokens ``plain`` (prompt length ``prompt``)."""
    first = [int(t) for t in plain[:, prompt]]
    third = int(plain[0, prompt + 2])
    return {
        "repetition_penalty": ({"repetition_penalty": 3.0}, {}),
        "no_repeat_ngram_size": ({"no_repeat_ngram_size": 1}, {}),
        "bad_words_ids": ({"bad_words_ids": [[first[0]], [first[1], int(plain[1, prompt + 1])]]}, {}),
        "min_length": (
            {"min_length": prompt + 6, "eos_token_id": third},
            {"eos_token_id": (third,), "pad_token_id": third},
        ),
        "min_new_tokens": (
            {"min_new_tokens": 5, "eos_token_id": third},
            {"eos_token_id": (third,), "pad_token_id": third},
        ),
        "forced_eos_token_id": ({"forced_eos_token_id": 9}, {}),
        "suppress_tokens": ({"suppress_tokens": sorted(set(first))}, {}),
        "begin_suppress_tokens": ({"begin_suppress_tokens": sorted(set(first))}, {}),
        "eos_token_id list": (
            {"eos_token_id": [third, int(plain[1, prompt + 3])], "pad_token_id": 0},
            {"eos_token_id": (third, int(plain[1, prompt + 3])), "pad_token_id": 0},
        ),
    }


CASES = [
    "repetition_penalty",
    "no_repeat_ngram_size",
    "bad_words_ids",
    "min_length",
    "min_new_tokens",
    "forced_eos_token_id",
    "suppress_tokens",
    "begin_suppress_tokens",
    "eos_token_id list",
]


@pytest.mark.parametrize("case", CASES)
def test_each_generation_config_setting_gives_the_tokens_transformers_gives(case):
    model, art = decoder("llama")
    ids, mask = left_padded((4, 9), seed=3)
    plain = _greedy(model, ids, mask)
    settings, tokens = _cases(plain, ids.shape[1])[case]
    config = copy.deepcopy(model.generation_config)
    config.update(**settings)
    want = _greedy(model, ids, mask, generation_config=config)
    assert want.shape != plain.shape or not np.array_equal(want, plain), f"{case} does not change the tokens here"
    got = _with_settings(art, config, **tokens).generate(ids, mask, max_new_tokens=STEPS)
    np.testing.assert_array_equal(got, want)


def test_forced_bos_applies_to_a_one_token_prompt_as_in_transformers():
    model, art = decoder("llama")
    ids, mask = np.array([[17], [40]]), np.ones((2, 1), dtype=np.int64)
    config = copy.deepcopy(model.generation_config)
    config.update(forced_bos_token_id=11, begin_suppress_tokens=[int(_greedy(model, ids, mask)[0, 2])])
    want = _greedy(model, ids, mask, generation_config=config)
    assert (want[:, 1] == 11).all()
    np.testing.assert_array_equal(_with_settings(art, config).generate(ids, mask, max_new_tokens=STEPS), want)


def test_the_call_s_own_settings_override_the_model_s():
    model, art = decoder("llama")
    ids, mask = left_padded((4, 9), seed=3)
    config = copy.deepcopy(model.generation_config)
    config.update(repetition_penalty=3.0, no_repeat_ngram_size=2)
    changed = _with_settings(art, config)
    got = changed.generate(ids, mask, max_new_tokens=STEPS, repetition_penalty=1.0, no_repeat_ngram_size=0)
    np.testing.assert_array_equal(got, _greedy(model, ids, mask))
    got = changed.generate(ids, mask, max_new_tokens=STEPS, min_new_tokens=3, repetition_penalty=1.5)
    want = _greedy(model, ids, mask, generation_config=config, min_new_tokens=3, repetition_penalty=1.5)
    np.testing.assert_array_equal(got, want)


@pytest.fixture(scope="module")
def configured():
    """A decoder whose generation_config sets several rules and asks for beam search, exported with them."""
    torch.manual_seed(1)
    model = transformers.LlamaForCausalLM(CONFIGS["llama"]()).eval()
    model.generation_config.update(
        repetition_penalty=1.8, no_repeat_ngram_size=3, suppress_tokens=[5, 6], forced_eos_token_id=4, num_beams=3
    )
    return model, ob.export(model)


def test_settings_in_the_model_s_generation_config_are_exported_validated_and_saved(configured, tmp_path):
    model, art = configured
    settings = art.generation.settings
    assert (settings.repetition_penalty, settings.no_repeat_ngram_size) == (1.8, 3)
    assert (settings.suppress_tokens, settings.forced_eos_token_id) == ((5, 6), (4,))
    assert settings.unsupported == {"num_beams": 3}
    assert_generation(art.validate())  # the recorded tokens had the rules applied; the replay applies them too
    ids, mask = left_padded((3, 10), seed=8)
    got = art.generate(ids, mask, max_new_tokens=STEPS, num_beams=1)
    np.testing.assert_array_equal(got, _greedy(model, ids, mask))  # the model's rules, greedily
    assert (got[:, -1] == 4).all()
    art.save(tmp_path / "m.onnx")
    loaded = ob.load(tmp_path / "m.onnx")
    assert loaded.generation.settings == settings
    np.testing.assert_array_equal(loaded.generate(ids, mask, max_new_tokens=STEPS, num_beams=1), got)


def test_a_setting_generate_cannot_apply_is_refused_by_name_never_ignored(configured):
    _, art = configured
    ids = np.array([[7, 8, 9]])
    with pytest.raises(ob.UnsupportedSettingError, match=r"num_beams=3") as caught:
        art.generate(ids, max_new_tokens=4)
    assert "num_beams=1" in str(caught.value)
    with pytest.raises(ob.InputError, match="greedy search or sampling"):
        art.generate(ids, max_new_tokens=4, num_beams=2)


def test_sampling_only_settings_are_refused_when_sampling_and_harmless_when_greedy():
    model, art = decoder("llama")
    config = copy.deepcopy(model.generation_config)
    config.update(typical_p=0.5)
    changed = _with_settings(art, config)
    ids, mask = left_padded((4, 9), seed=3)
    np.testing.assert_array_equal(changed.generate(ids, mask, max_new_tokens=STEPS), _greedy(model, ids, mask))
    with pytest.raises(ob.UnsupportedSettingError, match=r"typical_p=0\.5"):
        changed.generate(ids, mask, max_new_tokens=STEPS, do_sample=True, seed=0)


def test_sampling_defaults_come_from_the_model_s_generation_config():
    model, art = decoder("llama")
    config = copy.deepcopy(model.generation_config)
    config.update(do_sample=True, top_k=1)  # sampling among one token is greedy: the defaults must be read
    changed = _with_settings(art, config)
    assert changed.generation.settings.do_sample is True
    ids, mask = left_padded((4, 9), seed=3)
    np.testing.assert_array_equal(changed.generate(ids, mask, max_new_tokens=STEPS, seed=3), _greedy(model, ids, mask))


@settings(max_examples=25, deadline=None)
@given(
    temperature=st.floats(0.3, 2.0),
    top_k=st.one_of(st.none(), st.integers(1, 40)),
    top_p=st.one_of(st.none(), st.floats(0.05, 1.0)),
    penalty=st.floats(0.5, 3.0),
    seed=st.integers(0, 2**16),
)
def test_sampled_tokens_are_drawn_from_the_distribution_transformers_draws_from(
    temperature, top_k, top_p, penalty, seed
):
    """Draws use numpy's generator (reproducible by seed), so they are compared as distributions."""
    from onnxbridge.generation import _decoding, _processing

    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(2, 50)).astype(np.float32) * 3
    sequences = rng.integers(0, 50, size=(2, 6))
    rules = ModelSettings(repetition_penalty=penalty)
    context = _processing.Context(4, 12, None, ())
    ours = _decoding.probabilities(_processing.process(logits, sequences, rules, context), temperature, top_k, top_p)
    processors = transformers.LogitsProcessorList(
        [transformers.RepetitionPenaltyLogitsProcessor(penalty), transformers.TemperatureLogitsWarper(temperature)]
        + ([transformers.TopKLogitsWarper(top_k)] if top_k else [])
        + ([transformers.TopPLogitsWarper(top_p)] if top_p is not None and top_p < 1 else [])
    )
    scores = processors(torch.from_numpy(sequences), torch.from_numpy(logits.copy()))
    want = torch.softmax(scores.double(), dim=-1).numpy()
    np.testing.assert_allclose(ours, want, atol=1e-6)


def test_a_misspelt_generation_option_is_refused_naming_the_options():
    _, art = decoder("llama")
    with pytest.raises(ob.InputError, match="unknown option") as caught:
        art.generate(np.array([[5, 6, 7]]), max_new_token=4)
    assert "max_new_tokens" in str(caught.value)
