"""Units without a model: dynamic-axes normalisation and provider planning (real onnxruntime)."""

from __future__ import annotations

import onnxruntime as ort
import pytest
from hypothesis import given
from hypothesis import strategies as st

import onnxbridge as ob
from onnxbridge.core._axes import normalize_dynamic_axes
from onnxbridge.running._providers import CPU, plan

pytestmark = pytest.mark.core

RANKS = {"input": 3, "mask": 2}
OUTPUTS = {"output": 2}


@given(axis=st.integers(-3, 2), dim=st.text(min_size=1, max_size=8))
def test_an_axis_within_the_rank_normalises_to_its_positive_index(axis, dim):
    assert normalize_dynamic_axes({"input": {axis: dim}}, RANKS, OUTPUTS) == {"input": {axis % 3: dim}}


@given(axis=st.integers().filter(lambda a: not -3 <= a < 3))
def test_an_axis_beyond_the_rank_is_an_input_error_naming_the_rank(axis):
    with pytest.raises(ob.InputError, match=r"has rank 3"):
        normalize_dynamic_axes({"input": {axis: "batch"}}, RANKS, OUTPUTS)


@given(spec=st.one_of(st.integers(), st.floats(), st.lists(st.integers(), max_size=3), st.booleans()))
def test_a_spec_that_is_not_a_dict_or_a_name_is_an_input_error(spec):
    with pytest.raises(ob.InputError, match="dynamic_axes must be"):
        normalize_dynamic_axes(spec, RANKS, OUTPUTS)


def test_the_list_form_names_each_axis_after_its_tensor():
    assert normalize_dynamic_axes({"mask": [0, -1]}, RANKS) == {"mask": {0: "mask_dim0", 1: "mask_dim1"}}


def test_a_string_marks_axis_0_of_every_input_and_output():
    assert normalize_dynamic_axes("batch", RANKS, OUTPUTS) == {
        "input": {0: "batch"},
        "mask": {0: "batch"},
        "output": {0: "batch"},
    }


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "is empty"),
        ({"nope": {0: "batch"}}, r"'nope', which is not an input or output.*'input', 'mask', 'output'"),
        ({"input": {0: ""}}, "non-empty strings"),
        ({"input": {True: "batch"}}, "axes must be integers"),
        ({"input": "batch"}, "must map axes to names"),
    ],
)
def test_malformed_specs_say_what_is_wrong(spec, message):
    with pytest.raises(ob.InputError, match=message):
        normalize_dynamic_axes(spec, RANKS, OUTPUTS)


def test_none_asks_for_the_best_available_providers_and_ends_with_cpu():
    chosen = plan(None, strict=False)
    assert chosen.providers[-1] == CPU
    assert set(chosen.providers) <= set(ort.get_available_providers())
    assert chosen.skipped == []


def test_an_unavailable_provider_is_skipped_with_the_reason_and_cpu_is_added():
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA; the fallback cannot be observed")
    chosen = plan(["cuda"], strict=False)
    assert chosen.providers == [CPU]
    assert [name for name, _ in chosen.skipped] == ["CUDAExecutionProvider"]
    assert "not available in this onnxruntime build" in chosen.skipped[0][1]
    with pytest.raises(ob.ProviderError, match=r"strict=True.*CUDAExecutionProvider"):
        plan(["cuda"], strict=True)


def test_aliases_options_and_typos():
    assert plan([("cpu", {"arena_extend_strategy": "kSameAsRequested"})], strict=True).providers == [
        (CPU, {"arena_extend_strategy": "kSameAsRequested"})
    ]
    with pytest.raises(ob.ProviderError, match="cpu"):
        plan(["cpux"], strict=False)  # a typo is named, with the closest match
    with pytest.raises(ob.ProviderError, match=r"providers=\[\] names no provider"):
        plan([], strict=False)
