"""Validation tells float summation noise from wrong answers.

Outputs whose errors stay within a few units in the last place of the output's largest value pass
as ``noise`` (said in the report); ``strict=True`` judges by rtol/atol alone; a model with one
layer's weights off by 1% fails whatever the scale of its outputs.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import numpy_helper

import onnxbridge as ob
from onnxbridge.checks import _validation

torch = pytest.importorskip("torch")

EPS32 = float(np.finfo(np.float32).eps)


def fcn_like(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Segmentation logits up to about 40, off by 1.1e-4 on 0.04% of elements, as fcn_resnet50's were."""
    rng = np.random.default_rng(seed)
    ref = (rng.standard_normal((1, 21, 64, 64)) * 12).clip(-40, 40).astype(np.float32)
    got = ref.copy().reshape(-1)
    near_zero = np.argsort(np.abs(ref.reshape(-1)))[: max(1, got.size * 4 // 10_000)]
    got[near_zero] += 1.1e-4
    return got.reshape(ref.shape), ref


def test_outputs_off_by_summation_noise_pass_as_noise_and_fail_when_strict():
    got, ref = fcn_like()
    loose = _validation.compare("sample", "out", got, ref, 1e-3, 1e-5)
    assert loose.passed
    assert loose.noise
    assert 0 < loose.mismatch_fraction < 0.001  # the elements outside rtol/atol are still counted
    strict = _validation.compare("sample", "out", got, ref, 1e-3, 1e-5, strict=True)
    assert not strict.passed
    assert not strict.noise
    exact = _validation.compare("sample", "out", ref, ref, 1e-3, 1e-5)
    assert exact.passed
    assert not exact.noise  # within rtol/atol is a plain pass


class CancellingSums(torch.nn.Module):
    """A sum of 65536 values near 100, and the same sum taken another way less the first: zero, in exact arithmetic.

    torch and onnxruntime each sum in their own order, so the second output lands a few units in
    the last place of 6.5e6 away from zero, and differently in each: far past atol, well within
    float32 noise for an output whose largest value is 6.5e6.
    """

    def forward(self, x):
        total = x.sum(-1, keepdim=True)
        both = torch.cat([total, total - (x - 100).sum(-1, keepdim=True)], dim=-1)
        return both - torch.tensor([0.0, 100.0 * 65536])


def test_a_model_whose_outputs_differ_by_summation_order_passes_with_noise_reported():
    sample = torch.from_numpy((np.random.default_rng(1).standard_normal((4, 65536)) + 100).astype(np.float32))
    art = ob.export(CancellingSums().eval(), sample, dynamic_axes={"input": {0: "batch"}})
    strict = art.validate(strict=True, raise_on_failure=False)
    if strict.ok:
        pytest.skip("onnxruntime and torch summed in the same order here: no noise to tell apart")
    report = art.validate()  # raises if the noise band did not cover it
    assert report.noise
    assert all(c.passed for c in report.comparisons)
    assert "float summation noise" in str(report)
    assert "noise" in report.summary()
    assert report.summary()["strict"] is False


class SmallCnn(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = torch.nn.Sequential(
            torch.nn.Conv2d(3, 16, 3, padding=1),
            torch.nn.ReLU(),
            torch.nn.Conv2d(16, 16, 3, padding=1),
            torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(1),
            torch.nn.Flatten(),
            torch.nn.Linear(16, 10),
        )

    def forward(self, x):
        return self.body(x) * 40  # outputs in the tens, where a magnitude-scaled band is widest


def test_a_model_with_one_layer_s_weights_off_by_one_percent_fails_validation():
    sample = torch.from_numpy(np.random.default_rng(2).standard_normal((2, 3, 24, 24)).astype(np.float32))
    art = ob.export(SmallCnn().eval(), sample, dynamic_axes={"input": {0: "batch"}})
    art.validate()  # the faithful export passes
    weights = next(t for t in art.model.graph.initializer if len(t.dims) == 4 and t.dims[0] == 16 and t.dims[1] == 16)
    weights.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weights) * 1.01, weights.name))
    onnx.checker.check_model(art.model)
    report = art.validate(raise_on_failure=False)
    assert not report.ok
    assert not report.noise
    assert any(not c.passed for c in report.comparisons)
    with pytest.raises(ob.ValidationError, match="numeric parity"):
        art.validate()


magnitudes = st.floats(min_value=1e-3, max_value=1e4, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(scale=magnitudes, size=st.integers(16, 4096), seed=st.integers(0, 2**16))
def test_noise_passes_and_a_one_in_a_thousand_error_fails_at_any_output_magnitude(scale, size, seed):
    rng = np.random.default_rng(seed)
    ref = (rng.standard_normal(size) * scale).astype(np.float32)
    ref[0] = 0.0  # an element near zero, where rtol allows nothing
    peak = float(np.abs(ref).max())
    noisy = ref + (rng.uniform(-1, 1, size) * 16 * EPS32 * peak).astype(np.float32)
    assert _validation.compare("c", "y", noisy, ref, 1e-3, 1e-5).passed
    wrong = ref.copy()
    wrong[0] = 1e-3 * peak + 2e-5  # past atol at the smallest scales too
    verdict = _validation.compare("c", "y", wrong, ref, 1e-3, 1e-5)
    assert not verdict.passed
    assert not verdict.noise


def test_integer_outputs_get_no_noise_band():
    ref = np.arange(100, dtype=np.int64) * 1000
    got = ref.copy()
    got[3] += 1
    verdict = _validation.compare("c", "labels", got, ref, 1e-3, 1e-5)
    assert not verdict.passed
    assert not verdict.noise
