"""Exporting real PyTorch models: shapes, names, modes, exporters, and bad input."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from tests.parity import assert_parity

torch = pytest.importorskip("torch")

import onnxbridge as ob  # noqa: E402
from tests import models  # noqa: E402

LSTM_AXES = {"input": {0: "batch", 1: "time"}, "output": {0: "batch"}}
ENCODER_AXES = {"input": {0: "batch", 1: "seq"}, "output": {0: "batch", 1: "seq"}}


def _dims(art: ob.Artifact, name: str) -> list[int | str]:
    values = {v.name: v for v in [*art.model.graph.input, *art.model.graph.output]}
    return [d.dim_param or d.dim_value for d in values[name].type.tensor_type.shape.dim]


@pytest.fixture(scope="module")
def cnn_artifact():
    model = models.DigitsCNN()
    return ob.export(model, torch.randn(1, 1, 8, 8), dynamic_axes="batch")


def test_mlp_exports_with_dynamic_batch_and_validates():
    art = ob.export(models.mlp(), torch.randn(4, 8), dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
    report = art.validate()
    assert report.ok
    assert _dims(art, "input") == ["batch", 8]
    assert _dims(art, "output") == ["batch", 3]
    assert {c.case for c in report.comparisons} == {"sample", "batch=1", "batch=6"}


def test_batch_one_sample_does_not_bake_batch_into_the_graph(cnn_artifact):
    assert _dims(cnn_artifact, "input") == ["batch", 1, 8, 8]
    assert any("grew dynamic dimension 'batch' from 1 to 2" in n for n in cnn_artifact.export_notes)
    out = cnn_artifact.session().run(np.random.rand(5, 1, 8, 8).astype(np.float32))
    assert out["output"].shape == (5, 10)


def test_cnn_validates_at_several_batch_sizes(cnn_artifact):
    report = cnn_artifact.validate()
    assert {c.case for c in report.comparisons} == {"sample", "batch=3"}
    assert all(c.passed for c in report.comparisons)


def test_lstm_forecaster_with_dynamic_batch_and_time_validates():
    art = ob.export(models.Forecaster(), torch.randn(2, 6, 4), dynamic_axes=LSTM_AXES)
    report = art.validate()
    assert report.ok
    assert {"time=1", "time=8", "batch=1", "batch=4"} <= {c.case for c in report.comparisons}


def test_transformer_encoder_exports_with_dynamo_and_varies_sequence_length():
    art = ob.export(models.transformer_encoder(), torch.randn(1, 5, 32), dynamic_axes=ENCODER_AXES)
    assert art.exporter == "torch.onnx (dynamo)"
    assert_parity(art.validate())
    assert _dims(art, "input") == ["batch", "seq", 32]


def test_torchscript_request_falls_back_to_dynamo_and_records_why():
    # nn.TransformerEncoder's eval fast path (aten::_transformer_encoder_layer_fwd) has no TorchScript symbolic.
    art = ob.export(
        models.transformer_encoder(), torch.randn(2, 5, 32), dynamic_axes=ENCODER_AXES, exporter="torchscript"
    )
    assert art.exporter == "torch.onnx (dynamo)"
    assert "torchscript exporter failed" in art.export_notes[0]
    assert "_transformer_encoder_layer_fwd" in art.export_notes[0]


def test_torchscript_exporter_runs_when_asked():
    art = ob.export(models.mlp(), torch.randn(2, 8), dynamic_axes="batch", exporter="torchscript")
    assert art.exporter == "torch.onnx (torchscript)"
    assert_parity(art.validate())


def test_dict_inputs_and_tuple_dict_outputs_are_named_and_flattened():
    model = models.DictModel()
    sample = {"weights": torch.rand(1, 5), "tokens": torch.randint(0, 50, (1, 5))}
    axes = {"tokens": {0: "batch", 1: "seq"}, "weights": {0: "batch", 1: "seq"}}
    art = ob.export(model, sample, axes)
    assert art.input_names == ["tokens", "weights"]  # forward's order, not the dict's
    assert art.output_names == ["output_0", "output_1.hidden", "output_1.norm"]
    report = art.validate()
    assert report.ok
    assert {"seq=1", "seq=7", "batch=3"} <= {c.case for c in report.comparisons}
    out = art.session().run({"tokens": np.array([[1, 2, 3]]), "weights": np.ones((1, 3))})
    assert out["output_1.hidden"].shape == (1, 3, 8)


def test_tuple_sample_takes_forward_parameter_names_and_input_names_override():
    model = models.DictModel()
    sample = (torch.randint(0, 50, (2, 4)), torch.rand(2, 4))
    assert ob.export(model, sample, exporter="torchscript").input_names == ["tokens", "weights"]
    renamed = ob.export(
        model,
        sample,
        input_names=["ids", "w"],
        output_names=["logits", "hidden", "norm"],
        dynamic_axes={"ids": [0], "w": {0: "b"}},
        exporter="torchscript",
    )
    assert renamed.input_names == ["ids", "w"]
    assert renamed.output_names == ["logits", "hidden", "norm"]
    assert renamed.dynamic_axes["ids"] == {0: "ids_dim0"}


def test_model_modes_are_restored_after_export_and_validation():
    model = models.DigitsCNN().train()
    model.features[1].eval()  # a frozen BatchNorm inside a training model
    art = ob.export(model, torch.randn(2, 1, 8, 8), dynamic_axes="batch", exporter="torchscript")
    art.validate()
    assert model.training
    assert model.head.training
    assert not model.features[1].training


def test_hugging_face_model_output_is_flattened_into_named_outputs():
    pytest.importorskip("transformers")
    model = models.bert(vocab=100, hidden=32, heads=2, positions=32)
    sample = {k: torch.from_numpy(v) for k, v in models.bert_inputs(np.random.default_rng(0), 1, 7, 100).items()}
    axes = {name: {0: "batch", 1: "seq"} for name in sample}
    art = ob.export(model, sample, axes)
    assert art.output_names == ["last_hidden_state", "pooler_output"]
    report = art.validate()
    assert report.ok, str(report)


def test_lightning_module_is_exported_as_a_torch_module():
    lightning = pytest.importorskip("lightning")

    class Regressor(lightning.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = models.mlp()

        def forward(self, x):
            return self.net(x)

    art = ob.export(Regressor(), torch.randn(3, 8), dynamic_axes="batch", exporter="torchscript")
    assert art.framework == "torch"
    assert_parity(art.validate())


def test_opset_none_is_supported_by_installed_onnxruntime(cnn_artifact):
    from onnxbridge.running._capabilities import max_opset

    assert 17 <= cnn_artifact.opset <= max_opset()


def test_explicit_opset_is_honoured():
    art = ob.export(models.mlp(), torch.randn(2, 8), opset=17, exporter="torchscript")
    assert art.opset == 17


# -- bad input --------------------------------------------------------------------------------
def test_sample_not_matching_forward_raises_input_error():
    with pytest.raises(ob.InputError, match=r"does not match DictModel.forward"):
        ob.export(models.DictModel(), torch.randint(0, 50, (1, 5)))


def test_sample_that_the_model_cannot_run_raises_input_error():
    with pytest.raises(ob.InputError, match="Calling Sequential with the sample raised"):
        ob.export(models.mlp(), torch.randn(2, 5))


def test_missing_sample_raises_input_error():
    with pytest.raises(ob.InputError, match="needs a sample"):
        ob.export(models.mlp())


def test_dynamic_axes_naming_an_unknown_tensor_lists_the_real_names():
    with pytest.raises(ob.InputError, match=r"'images'.*Inputs and outputs are: 'input', 'output'"):
        ob.export(models.mlp(), torch.randn(2, 8), dynamic_axes={"images": {0: "batch"}})


def test_dynamic_axis_beyond_rank_raises_input_error():
    with pytest.raises(ob.InputError, match="axis 2, but 'input' has rank 2"):
        ob.export(models.mlp(), torch.randn(2, 8), dynamic_axes={"input": {2: "x"}})


def test_unconvertible_operator_names_the_operator_and_opset():
    with pytest.raises(ob.ExportError) as info:
        ob.export(models.Unconvertible(), torch.randn(3, 3))
    message = str(info.value)
    assert "linalg_svd" in message
    assert "opset" in message
    assert "dynamo" in message
    assert "torchscript" in message


def test_opset_newer_than_onnxruntime_is_refused_before_exporting():
    from onnxbridge.running._capabilities import max_opset

    with pytest.raises(ob.ExportError, match="newer than the installed onnxruntime"):
        ob.export(models.mlp(), torch.randn(2, 8), opset=max_opset() + 1)


def test_unknown_adapter_option_is_refused():
    with pytest.raises(ob.InputError, match="Unknown option"):
        ob.export(models.mlp(), torch.randn(2, 8), exporter_name="x")


def test_failed_export_leaves_model_mode_unchanged():
    model = models.Unconvertible().train()
    with pytest.raises(ob.ExportError):
        ob.export(model, torch.randn(3, 3), exporter="torchscript")
    assert model.training


def test_exported_model_is_plain_onnx(cnn_artifact, tmp_path):
    path = cnn_artifact.save(tmp_path / "cnn.onnx")
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)


@pytest.mark.parametrize("opset", [11, 14, 17, 18])
def test_an_explicit_opset_is_honoured(opset):
    art = ob.export(models.mlp(), torch.randn(2, 8), dynamic_axes="batch", opset=opset)
    assert art.opset == opset
    assert_parity(art.validate())
    if opset == 11:  # below what the dynamo exporter reaches (Relu): TorchScript gave it, and the notes say so
        assert art.exporter == "torch.onnx (torchscript)"
        assert any("not the requested 11" in note for note in art.export_notes)


def test_an_opset_onnxruntime_cannot_run_is_refused():
    with pytest.raises(ob.InputError, match=r"opset=5 is older than onnxruntime runs.*from 7 to"):
        ob.export(models.mlp(), torch.randn(2, 8), opset=5)


def test_a_variant_the_source_model_refuses_is_skipped_not_failed():
    # Like wav2vec2's first convolution (kernel 10 over the audio axis): one sample of audio is too short.
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv1d(1, 4, kernel_size=10), torch.nn.ReLU()).eval()
    art = ob.export(
        model, torch.randn(2, 1, 16), dynamic_axes={"input": {0: "batch", 2: "time"}, "output": {0: "batch", 2: "t"}}
    )
    report = art.validate()
    assert report.ok
    assert len(report.skipped) == 1
    assert report.skipped[0].startswith("[time=1]: the source model itself refuses these sizes")
    assert "time=18" in {c.case for c in report.comparisons}  # the grown variant is still compared
    assert "skipped [time=1]" in str(report)


def test_a_tiny_epsilon_survives_the_exporter_s_graph_optimizer():
    """onnxscript's optimizer drops ``x + c`` for ``|c| <= 1e-8``: an RMSNorm would divide a zero row by zero."""

    class RMSNorm(torch.nn.Module):
        def forward(self, x):
            return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-8)

    rows = torch.tensor([[0.0, 0.0, 0.0, 0.0], [1.0, -2.0, 3.0, 0.5]])
    art = ob.export(RMSNorm(), rows, dynamic_axes={"input": {0: "batch"}})
    assert "Add" in {node.op_type for node in art.model.graph.node}
    got = art.session().run({"input": rows.numpy()})
    assert np.isfinite(next(iter(got.values()))).all()
    assert_parity(art.validate(), cases=2)


def test_erfinv_which_torchlib_cannot_translate_exports_to_float32_precision():
    """A normal quantile (``torch.erfinv``), as Gemma 3n's activation sparsity takes one."""

    class Quantile(torch.nn.Module):
        def forward(self, p):
            return torch.erfinv(2 * p - 1) * 2**0.5

    p = torch.linspace(1e-6, 1 - 1e-6, 4001)
    art = ob.export(Quantile(), p, dynamic_axes={"input": {0: "n"}})
    got = next(iter(art.session().run({"input": p.numpy()}).values()))
    want = (torch.erfinv(2 * p - 1).double() * 2**0.5).numpy()  # on the same float32 inputs
    assert (np.abs(got - want) <= 1e-6 + 1e-6 * np.abs(want)).all()
    assert_parity(art.validate(), cases=1)
