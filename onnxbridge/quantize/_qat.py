"""Quantization-aware training for PyTorch-sourced artifacts.

The scheme matches what onnxruntime runs fast: uint8 asymmetric activations and int8
symmetric per-channel weights. torch 2.13's default QAT qconfig uses fused
``FusedMovingAvgObsFakeQuantize`` modules that neither torch exporter converts
(``aten::fused_moving_avg_obs_fake_quant``); plain ``FakeQuantize`` modules, with their
observers disabled after training, export through the TorchScript exporter to
QuantizeLinear/DequantizeLinear pairs that onnxruntime runs with exact parity.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from onnxbridge.core._errors import InputError, QuantizationError
from onnxbridge.core._types import Reference
from onnxbridge.quantize._passes import float_nodes, fold_weight_quantization, has_qdq
from onnxbridge.quantize._types import QuantizationMode

if TYPE_CHECKING:
    import onnx


def recipe(model: onnx.ModelProto, reference: Reference, framework: str, train: Callable[[Any], Any] | None) -> Any:
    """The recipe for ``quantize("qat")`` of ``model``, exported from ``framework``, whose source ``reference`` holds."""
    if train is None:
        if has_qdq(model):
            return _AsTrained()
        raise InputError(
            "quantize('qat') needs train=callable: onnxbridge hands your function a copy of the model with "
            "fake-quantization inserted, your function fine-tunes it, and the result is exported. Without training, "
            "use quantize('static', calibration=...)."
        )
    if framework != "torch":
        raise InputError(
            f"quantize('qat') trains PyTorch models; this artifact comes from {framework!r}. Use "
            "quantize('static', calibration=...) instead, or export a model that already holds QDQ nodes from "
            "quantization-aware training in its framework and call quantize('qat') without train."
        )
    run = reference.run
    source = getattr(run, "model", None)
    sample = getattr(run, "sample", None)
    if source is None or sample is None:
        raise InputError(
            "quantize('qat') needs the source PyTorch model, which a loaded artifact does not have. Export the "
            "model again in this process, then call quantize('qat', train=...)."
        )
    return _TorchQat(model, reference, source, sample, train)


class _AsTrained:
    """An artifact whose graph already has QDQ from training elsewhere: nothing to change."""

    mode = QuantizationMode.QAT
    name = "QDQ from training"

    def settings(self, exclude: list[str]) -> dict[str, Any]:
        return {"source": "QDQ already in the graph"}

    def candidates(self, model: onnx.ModelProto) -> list[str]:
        return []

    def __call__(self, model: onnx.ModelProto, exclude: list[str]) -> tuple[onnx.ModelProto, list[str]]:
        return model, []


class _TorchQat:
    """Fake-quantize a copy of the PyTorch source, let the caller train it, export it as QDQ."""

    mode = QuantizationMode.QAT
    name = "quantization-aware training"

    def __init__(
        self, exported: onnx.ModelProto, reference: Reference, model: Any, sample: Any, train: Callable[[Any], Any]
    ) -> None:
        self.exported, self.reference = exported, reference
        self.model, self.sample, self.train = model, sample, train
        self._result: onnx.ModelProto | None = None
        self.fused: list[list[str]] = []
        self.source: Reference | None = None  # the trained fake-quant model: validate()'s ground truth

    def settings(self, exclude: list[str]) -> dict[str, Any]:
        return {
            "activations": "uint8 asymmetric (FakeQuantize, MovingAverageMinMaxObserver)",
            "weights": "int8 symmetric per-channel",
            "format": "QDQ",
            "exporter": "torchscript",
            **({"fused before training": self.fused} if self.fused else {}),
        }

    def candidates(self, model: onnx.ModelProto) -> list[str]:
        return []  # a trained model cannot be partly re-trained node by node

    def __call__(self, model: onnx.ModelProto, exclude: list[str]) -> tuple[onnx.ModelProto, list[str]]:
        if self._result is None:
            self._result = self._train_and_export()
        return self._result, float_nodes(self._result)

    def _train_and_export(self) -> onnx.ModelProto:
        import torch
        from torch.ao import quantization as tq

        from onnxbridge.exporting._dispatch import export_model

        qmodel = copy.deepcopy(self.model)
        activation = tq.FakeQuantize.with_args(
            observer=tq.MovingAverageMinMaxObserver,
            quant_min=0,
            quant_max=255,
            dtype=torch.quint8,
            qscheme=torch.per_tensor_affine,
        )
        weight = tq.FakeQuantize.with_args(
            observer=tq.MovingAveragePerChannelMinMaxObserver,
            quant_min=-128,
            quant_max=127,
            dtype=torch.qint8,
            qscheme=torch.per_channel_symmetric,
            ch_axis=0,
        )
        qmodel.qconfig = tq.QConfig(activation=activation, weight=weight)
        qmodel.train()
        self.fused = fuse_conv_bn(qmodel)
        tq.prepare_qat(qmodel, inplace=True)
        try:
            self.train(qmodel)
        except Exception as err:
            raise QuantizationError(f"The train function raised {type(err).__name__}: {err}") from err
        qmodel.apply(tq.disable_observer)
        qmodel.eval()
        fold_trained_bn(qmodel)
        graph = self.exported.graph
        initializers = {i.name for i in graph.initializer}
        opset = next((o.version for o in self.exported.opset_import if o.domain in ("", "ai.onnx")), 0)
        inputs = dict(zip(self.sample.names, self.sample.tensors(), strict=True))
        sample = inputs if self.sample.kwargs else tuple(inputs.values())
        if not self.sample.kwargs and len(inputs) == 1:
            sample = next(iter(inputs.values()))
        exported = export_model(
            qmodel,
            sample,
            dynamic_axes={k: v for k, v in self.reference.dynamic_axes.items()},
            input_names=[v.name for v in graph.input if v.name not in initializers],
            output_names=[o.name for o in graph.output],
            opset=max(opset, 13),  # per-channel QuantizeLinear needs opset 13
            exporter="torchscript",
        )
        fold_weight_quantization(exported.model)
        self.source = Reference.of(
            exported.sample, exported.reference, exported.reference_outputs, exported.dynamic_axes
        )
        if not has_qdq(exported.model):
            raise QuantizationError(
                "The QAT model exported without QuantizeLinear/DequantizeLinear nodes; the model may have no layers "
                "that torch's eager QAT swaps (Linear, Conv)."
            )
        return exported.model


def fuse_conv_bn(model: Any) -> list[list[str]]:
    """Fuse Conv + BatchNorm (+ ReLU) and Conv/Linear + ReLU that follow each other in ``nn.Sequential``s.

    Without it, eager-mode QAT trains a convolution whose BatchNorm runs in float between two
    QDQ pairs, and the exported graph keeps a BatchNormalization that onnxruntime cannot fold
    into an integer kernel. ``fuse_modules_qat`` needs module names; sequential containers give
    them without tracing the model. Returns the groups fused.
    """
    from torch import nn
    from torch.ao import quantization as tq

    convs = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
    norms = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
    groups: list[list[str]] = []
    for prefix, module in model.named_modules():
        if not isinstance(module, nn.Sequential):
            continue
        children = list(module.named_children())
        i = 0
        while i < len(children):
            kinds = [type(m) for _, m in children[i : i + 3]]
            size = 0
            if len(kinds) >= 2 and issubclass(kinds[0], convs) and issubclass(kinds[1], norms):
                size = 3 if len(kinds) == 3 and kinds[2] is nn.ReLU else 2
            elif len(kinds) >= 2 and issubclass(kinds[0], (*convs, nn.Linear)) and kinds[1] is nn.ReLU:
                size = 2
            if size:
                groups.append([f"{prefix}.{name}" if prefix else name for name, _ in children[i : i + size]])
            i += size or 1
    if groups:
        tq.fuse_modules_qat(model, groups, inplace=True)
    return groups


def fold_trained_bn(model: Any) -> int:
    """Replace trained ConvBn(ReLU) QAT modules by plain QAT convolutions computing the same.

    In eval mode torch's fused module fake-quantizes ``w * gamma / std`` and then undoes the
    scale and applies BatchNorm with its running statistics, which exports as Conv, Div, Add and
    BatchNormalization. A QAT convolution holding the folded weight ``w * gamma / std`` and bias
    ``(b - mean) * gamma / std + beta``, with the same trained weight fake-quantization, computes
    the same and exports as one QDQ Conv. Returns how many modules were replaced.
    """
    import torch
    from torch import nn
    from torch.ao.nn.intrinsic import qat as nniqat
    from torch.ao.nn.qat import Conv1d, Conv2d, Conv3d

    plain = {nniqat.ConvBn1d: Conv1d, nniqat.ConvBn2d: Conv2d, nniqat.ConvBn3d: Conv3d}
    with_relu = {nniqat.ConvBnReLU1d: Conv1d, nniqat.ConvBnReLU2d: Conv2d, nniqat.ConvBnReLU3d: Conv3d}
    replaced = 0
    for name, module in list(model.named_modules()):
        kind = type(module)
        if kind not in plain and kind not in with_relu:
            continue
        bn = module.bn
        scale = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach()
        shape = [-1] + [1] * (module.weight.dim() - 1)
        bias = module.bias.detach() if module.bias is not None else torch.zeros_like(bn.running_mean)
        conv = (plain.get(kind) or with_relu[kind])(
            module.in_channels,
            module.out_channels,
            module.kernel_size,
            stride=module.stride,
            padding=module.padding,
            dilation=module.dilation,
            groups=module.groups,
            bias=True,
            padding_mode=module.padding_mode,
            qconfig=module.qconfig,
        )
        with torch.no_grad():
            conv.weight.copy_(module.weight.detach() * scale.reshape(shape))
            conv.bias.copy_((bias - bn.running_mean) * scale + bn.bias.detach())  # type: ignore[union-attr]
        conv.weight_fake_quant = module.weight_fake_quant
        parts: list[nn.Module] = [conv]
        if kind in with_relu:
            parts.append(nn.ReLU())
        if hasattr(module, "activation_post_process"):
            parts.append(module.activation_post_process)  # called by a forward hook on the fused module
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, nn.Sequential(*parts).eval())
        replaced += 1
    return replaced
