"""Validation finds real problems, lists every one, and never calls a mismatch a pass.

Framework-free: the source models are the numpy toy framework of tests/numpy_models.py.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest

import onnxbridge as ob
from tests.numpy_models import NumpyMLP
from tests.onnx_models import unary
from tests.parity import assert_parity

pytestmark = [pytest.mark.core, pytest.mark.usefixtures("numpy_framework")]
X = np.random.default_rng(0).normal(size=(2, 8)).astype(np.float32)


def test_report_is_a_readable_table_with_per_output_figures():
    art = ob.export(NumpyMLP(), X, dynamic_axes="batch")
    report = art.validate()
    text = str(report)
    assert text.startswith("Validation PASSED")
    for column in ("case", "output", "shape", "max abs err", "max rel err", "mismatch"):
        assert column in text
    comparison = report.comparisons[0]
    assert comparison.shape == comparison.reference_shape == (2, 3)
    assert comparison.max_abs_error < 1e-5
    assert comparison.mismatch_fraction == 0.0
    assert art.validation is report


def test_a_graph_that_bakes_a_size_fails_numeric_parity_on_other_sizes():
    art = ob.export(NumpyMLP(bake_batch=True), np.ones((4, 8), np.float32), dynamic_axes="batch")
    with pytest.raises(ob.ValidationError) as info:
        art.validate()
    report = info.value.report
    assert not report.ok
    failed = {c.case for c in report.comparisons if not c.passed}
    assert failed == {"batch=1", "batch=6"}  # the sample itself agrees; other sizes do not
    assert "batch=1" in str(info.value)
    assert "batch=6" in str(info.value)


def test_all_failures_are_listed_not_only_the_first():
    model = NumpyMLP()
    art = ob.export(model, X, dynamic_axes="batch")
    model.weights["b2"] = model.weights["b2"] + 1.0  # the source drifts after export: every case differs
    report = art.validate(raise_on_failure=False)
    assert not report.ok
    failing = {(c.case, c.output) for c in report.comparisons if not c.passed}
    assert failing == {("sample", "output"), ("batch=1", "output"), ("batch=4", "output")}
    assert len(report.failures) == len(failing)


def test_tolerances_are_applied():
    art = ob.export(NumpyMLP(), X)  # float32 graph against a float64 source: small, nonzero errors
    exact = art.validate(rtol=0, atol=0, strict=True, raise_on_failure=False)
    assert not exact.ok
    assert 0 < exact.comparisons[0].max_abs_error < 1e-5
    rounding = art.validate(rtol=0, atol=0, raise_on_failure=False)  # float32 rounding is within the noise band
    assert {c.noise for c in rounding.comparisons} == {True}
    assert_parity(art.validate(rtol=1e-2, atol=1e-3))


def test_caller_samples_are_compared_too():
    art = ob.export(NumpyMLP(), X, dynamic_axes="batch")
    report = art.validate(samples=[np.random.rand(7, 8), {"input": np.ones((1, 8), np.float32)}])
    assert {"samples[0]", "samples[1]"} <= {c.case for c in report.comparisons}
    assert next(c for c in report.comparisons if c.case == "samples[0]").shape == (7, 3)


def test_declared_axis_that_the_graph_fixes_fails_the_symbolic_axes_check():
    art = ob.export(unary("Relu", [2, 3]))
    art.dynamic_axes = {"x": {0: "batch"}}
    report = art.validate(raise_on_failure=False)
    check = next(c for c in report.checks if c.name == "symbolic axes")
    assert check.passed is False
    assert "fixed to 2" in check.detail
    assert isinstance(art.model, onnx.ModelProto)


def test_loaded_artifact_without_source_skips_parity_and_says_so(tmp_path):
    art = ob.export(NumpyMLP(), X)
    art.save(tmp_path / "m.onnx", reference=False)
    report = ob.load(tmp_path / "m.onnx").validate()
    parity = next(c for c in report.checks if c.name == "numeric parity")
    assert parity.passed is None
    assert "no source model" in parity.detail
    assert "skipped" in str(report)


def test_loaded_artifact_checks_against_recorded_reference_outputs(tmp_path):
    art = ob.export(NumpyMLP(), X, dynamic_axes="batch")
    art.save(tmp_path / "m.onnx")
    loaded = ob.load(tmp_path / "m.onnx")
    assert not loaded.has_source
    assert loaded.framework == "numpy_mlp"
    report = loaded.validate()
    assert [c.case for c in report.comparisons] == ["recorded sample"]
    assert report.comparisons[0].passed


def test_samples_on_a_loaded_artifact_are_refused(tmp_path):
    art = ob.export(NumpyMLP(), X)
    art.save(tmp_path / "m.onnx")
    with pytest.raises(ob.InputError, match="needs the source model"):
        ob.load(tmp_path / "m.onnx").validate(samples=[np.ones((1, 8), np.float32)])


def test_a_quantized_artifact_is_validated_with_its_modes_tolerances():
    art = ob.export(NumpyMLP(), X, dynamic_axes="batch")
    child = art.quantize("dynamic", allow_slower=True)
    report = child.validate()
    assert (report.rtol, report.atol) == (0.1, 0.1)
    assert report.facts["tolerances"] == "dynamic defaults"
