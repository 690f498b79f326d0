"""Where an export's time goes: each phase in ``art.export_seconds``, a note, and the CLI's ``--json``."""

from __future__ import annotations

import pytest

import onnxbridge as ob

torch = pytest.importorskip("torch")


def test_an_export_reports_the_seconds_of_each_phase_and_they_add_up_to_the_total():
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    art = ob.export(model, torch.randn(4, 8), dynamic_axes="batch")
    seconds = art.export_seconds
    assert {"source model run", "torch.onnx.export (dynamo)", "other", "total"} <= set(seconds)
    assert all(value >= 0 for value in seconds.values())
    parts = sum(value for name, value in seconds.items() if name != "total")
    assert parts == pytest.approx(seconds["total"], abs=0.01)
    assert seconds["torch.onnx.export (dynamo)"] > seconds["source model run"]  # the exporter is the work
    note = next(n for n in art.export_notes if n.startswith("export took"))
    assert "torch.onnx.export (dynamo)" in note
    assert "other" in note
