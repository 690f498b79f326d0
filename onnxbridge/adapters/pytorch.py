"""PyTorch: any ``torch.nn.Module`` (Lightning and Hugging Face models included).

What this adapter does for the user, beyond calling ``torch.onnx.export``:

* exports in eval mode under ``no_grad`` and restores every submodule's own mode;
* turns torch-style ``dynamic_axes`` into ``dynamic_shapes`` for the dynamo exporter
  (which only warns about ``dynamic_axes``), with one ``Dim`` per dimension name;
* grows size-0/1 dynamic dimensions of the sample to 2 before export, because
  ``torch.export`` specialises sizes 0 and 1 and tracing bakes them into reshapes;
* falls back from the dynamo exporter to the TorchScript one (or the other way
  round) and records which ran and why;
* flattens tuple, list, dict and ``ModelOutput`` results into named outputs.
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from onnxbridge.adapters import _torchvision_detection
from onnxbridge.adapters._torch_common import DYNAMO, captured_warnings, choose_opset, inference, summary, to_numpy
from onnxbridge.adapters._torch_onnx_fixes import exact_constant_rules, translations
from onnxbridge.core._axes import DynamicAxes, axes_by_dim, normalize_dynamic_axes
from onnxbridge.core._deps import require
from onnxbridge.core._errors import ExportError, InputError, config_fault
from onnxbridge.core._types import Feeds
from onnxbridge.exporting._adapter import Exported, ExportRequest, check_options
from onnxbridge.graph import _graph

if TYPE_CHECKING:
    import onnx

TORCHSCRIPT = "torchscript"
_EXPORTERS = ("auto", DYNAMO, TORCHSCRIPT)
_OPTIONS = ("exporter", "export_kwargs")


def _torch() -> Any:
    return require("torch", purpose="Exporting a PyTorch model")


class TorchAdapter:
    """Exports ``torch.nn.Module`` models with ``torch.onnx``.

    Options (keyword arguments of :func:`onnxbridge.export`):
        exporter: ``"auto"`` (dynamo, falling back to TorchScript), ``"dynamo"`` or
            ``"torchscript"`` (each falling back to the other).
        export_kwargs: Extra keyword arguments for ``torch.onnx.export``.
    """

    framework = "torch"
    module_roots = ("torch", "lightning", "pytorch_lightning")

    def accepts(self, model: object) -> bool:
        """Any ``torch.nn.Module``."""
        return isinstance(model, _torch().nn.Module)

    def export(self, model: Any, request: ExportRequest) -> Exported:
        """Export with the dynamo exporter, or TorchScript, whichever succeeds first."""
        torch = _torch()
        check_options(request.options, _OPTIONS, "PyTorch")
        if _torchvision_detection.is_detector(model):  # called with a list of images
            return _torchvision_detection.export(torch, model, request)
        exporter = request.options.get("exporter", "auto")
        if exporter not in _EXPORTERS:
            raise InputError(f"exporter={exporter!r}: expected one of {', '.join(map(repr, _EXPORTERS))}.")
        sample = _Sample.from_user(torch, model, request.sample, request.input_names)
        with inference(model), request.phases.timed("source model run"):
            outputs = sample.call(model)
        out_names, out_tensors = _flatten_outputs(outputs, request.output_names)
        axes = normalize_dynamic_axes(
            request.dynamic_axes, sample.ranks(), {n: t.dim() for n, t in zip(out_names, out_tensors, strict=True)}
        )
        grown, growth_notes = sample.grown(axes)
        opset = choose_opset(request.opset)
        notes = list(growth_notes)
        failures: list[tuple[str, BaseException]] = []
        for attempt in _attempts(exporter, notes):
            try:
                timed = request.phases.timed(f"torch.onnx.export ({attempt})")
                with inference(model), captured_warnings(notes, attempt), exact_constant_rules(), timed:
                    proto = _run_exporter(torch, attempt, model, grown, sample, out_names, axes, opset, request)
                _finish(proto, sample, out_names, axes)
                _check_opset(proto, request.opset)
            except Exception as err:  # noqa: BLE001 - every exporter failure is reported together
                failures.append((attempt, err))
                continue
            if failures:
                notes.insert(
                    0,
                    f"exported with the {attempt} exporter after the {failures[0][0]} exporter failed: "
                    f"{summary(failures[0][1])}",
                )
            return Exported(
                model=proto,
                framework="torch",
                framework_version=torch.__version__,
                exporter=f"torch.onnx ({attempt})",
                dynamic_axes={sample.final(n): d for n, d in axes.items()},
                sample=sample.feeds(),
                reference=_Reference(model, sample, out_names),
                reference_outputs={n: to_numpy(t) for n, t in zip(out_names, out_tensors, strict=True)},
                notes=notes,
            )
        raise _export_error(model, failures, opset)


@dataclass
class _Sample:
    """The user's sample as positional args or keyword args, with input names."""

    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    names: list[str]  # names exporters see (forward parameter names, dict keys, "input")
    renames: dict[str, str]  # exporter name -> user's input_names

    @classmethod
    def from_user(cls, torch: Any, model: Any, sample: Any, input_names: Sequence[str] | None) -> _Sample:
        if sample is None:
            raise InputError(
                "Exporting a PyTorch model needs a sample input: a tensor, a tuple of tensors, or a dict of "
                "keyword tensors, shaped like real inputs (e.g. torch.randn(1, 3, 224, 224))."
            )
        try:
            forward = inspect.signature(model.forward)
        except (TypeError, ValueError):  # builtins and some compiled modules have no signature
            forward = None
        params = _parameters(forward)
        if isinstance(sample, Mapping):
            order = {name: i for i, name in enumerate(params)}
            keys = sorted(sample, key=lambda k: order.get(k, len(order)))  # forward's order, as exporters use
            kwargs = {str(k): _as_tensor(torch, sample[k], str(k)) for k in keys}
            args: tuple[Any, ...] = ()
            names = list(kwargs)
        else:
            items = tuple(sample) if isinstance(sample, (tuple, list)) else (sample,)
            args = tuple(_as_tensor(torch, v, f"sample[{i}]") for i, v in enumerate(items))
            kwargs = {}
            if not isinstance(sample, (tuple, list)):
                names = ["input"]
            else:
                positional = [
                    p
                    for p in params
                    if params[p].kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
                ]
                names = (
                    positional[: len(args)]
                    if len(positional) >= len(args)
                    else [f"input_{i}" for i in range(len(args))]
                )
        try:
            if forward is not None:
                forward.bind(*args, **kwargs)
        except TypeError as err:
            raise InputError(
                f"The sample does not match {type(model).__name__}.forward{forward}: {err}. "
                "Pass a tensor for a single input, a tuple in forward's order, or a dict by parameter name."
            ) from err
        renames: dict[str, str] = {}
        if input_names is not None:
            if len(input_names) != len(names):
                raise InputError(
                    f"input_names has {len(input_names)} names but the sample has {len(names)} inputs ({names})."
                )
            renames = {old: new for old, new in zip(names, input_names, strict=True)}
        return cls(args, kwargs, names, renames)

    def tensors(self) -> list[Any]:
        return [*self.args, *self.kwargs.values()]

    def final(self, name: str) -> str:
        """The user-facing name of an input (or output, which passes through)."""
        return self.renames.get(name, name)

    def ranks(self) -> dict[str, int]:
        return {self.final(n): t.dim() for n, t in zip(self.names, self.tensors(), strict=True)}

    def feeds(self) -> Feeds:
        return {self.final(n): to_numpy(t) for n, t in zip(self.names, self.tensors(), strict=True)}

    def call(self, model: Any, tensors: Sequence[Any] | None = None) -> Any:
        values = list(tensors) if tensors is not None else self.tensors()
        args, kwargs = values[: len(self.args)], dict(zip(self.kwargs, values[len(self.args) :], strict=True))
        try:
            return model(*args, **kwargs)
        except Exception as err:
            fault = config_fault(err, model)
            if fault is not None:
                raise fault from err
            raise InputError(
                f"Calling {type(model).__name__} with the sample raised {type(err).__name__}: {err}. "
                "The sample must be a valid input for the model's forward()."
            ) from err

    def grown(self, axes: DynamicAxes) -> tuple[_Sample, list[str]]:
        """A copy whose size-0/1 dynamic dimensions are repeated to size 2."""
        tensors = dict(zip(map(self.final, self.names), self.tensors(), strict=True))
        notes = []
        for dim, members in axes_by_dim(axes, list(tensors)).items():
            sizes = {tensors[n].shape[a] for n, a in members}
            if len(sizes) > 1:
                where = ", ".join(f"{n!r} axis {a} = {tensors[n].shape[a]}" for n, a in members)
                raise InputError(
                    f"Dynamic dimension {dim!r} has different sizes in the sample ({where}). Axes sharing a name "
                    "must have the same size; give them different names if they vary independently."
                )
            size = sizes.pop()
            if size == 0:
                raise InputError(f"The sample is empty along dynamic dimension {dim!r}; give it at least one element.")
            if size == 1:
                for name, axis in members:
                    tensors[name] = tensors[name].repeat_interleave(2, dim=axis)
                notes.append(
                    f"grew dynamic dimension {dim!r} from 1 to 2 for export, so the exporter cannot specialise it to 1"
                )
        values = list(tensors.values())
        return _Sample(
            tuple(values[: len(self.args)]),
            dict(zip(self.kwargs, values[len(self.args) :], strict=True)),
            self.names,
            self.renames,
        ), notes


def _parameters(forward: inspect.Signature | None) -> dict[str, inspect.Parameter]:
    if forward is None:
        return {}
    return {
        k: p
        for k, p in forward.parameters.items()
        if p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    }


def _as_tensor(torch: Any, value: Any, where: str) -> Any:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value)
    raise InputError(
        f"{where} is a {type(value).__name__}; PyTorch samples must be tensors (or numpy arrays). "
        "Fold constant arguments into the model, e.g. with functools.partial or a wrapper module."
    )


def _flatten_outputs(outputs: Any, names: Sequence[str] | None) -> tuple[list[str], list[Any]]:
    torch = _torch()
    flat: list[tuple[str, Any]] = []

    def walk(value: Any, prefix: str | None) -> None:
        if isinstance(value, torch.Tensor):
            flat.append((prefix or "output", value))
        elif value is None:
            return
        elif isinstance(value, Mapping):  # dicts and Hugging Face ModelOutput
            for key, item in value.items():
                walk(item, str(key) if prefix is None else f"{prefix}.{key}")
        elif isinstance(value, (tuple, list)):
            for i, item in enumerate(value):
                walk(item, f"{prefix or 'output'}_{i}")
        else:
            raise InputError(
                f"The model returned a {type(value).__name__} at {prefix or 'the top level'}; ONNX outputs must be "
                "tensors (tuples, lists and dicts of tensors are flattened). Return tensors from forward()."
            )

    walk(outputs, None)
    if not flat:
        raise InputError("The model returned no tensors; an ONNX model needs at least one output.")
    if names is not None:
        if len(names) != len(flat):
            raise InputError(
                f"output_names has {len(names)} names but the model returns {len(flat)} tensors "
                f"({', '.join(n for n, _ in flat)})."
            )
        return list(names), [t for _, t in flat]
    return [n for n, _ in flat], [t for _, t in flat]


@functools.cache
def _has_onnxscript() -> bool:
    return importlib.util.find_spec("onnxscript") is not None


def _attempts(exporter: str, notes: list[str]) -> list[str]:
    has_onnxscript = _has_onnxscript()
    order = [TORCHSCRIPT, DYNAMO] if exporter == TORCHSCRIPT else [DYNAMO, TORCHSCRIPT]
    if not has_onnxscript:
        if exporter == DYNAMO:
            require("onnxscript", purpose="The dynamo ONNX exporter", extra="torch")
        notes.append(
            "onnxscript is not installed, so the dynamo exporter was not tried; "
            'pip install "onnxbridge[torch]" to get it'
        )
        order = [TORCHSCRIPT]
    return order


def _run_exporter(
    torch: Any,
    attempt: str,
    model: Any,
    sample: _Sample,
    original: _Sample,
    out_names: list[str],
    axes: DynamicAxes,
    opset: int,
    request: ExportRequest,
) -> onnx.ModelProto:
    import onnx

    extra = dict(request.options.get("export_kwargs", {}))
    by_exporter_name = {original.final(n): n for n in original.names}
    input_axes = {by_exporter_name[n]: d for n, d in axes.items() if n in by_exporter_name}
    if attempt == DYNAMO:
        table = {**translations(), **extra.pop("custom_translation_table", {})}
        program = torch.onnx.export(
            model,
            sample.args,
            kwargs=sample.kwargs or None,
            dynamo=True,
            verbose=False,
            input_names=list(sample.names) if sample.args else None,
            output_names=out_names,
            opset_version=opset,
            dynamic_shapes=_dynamic_shapes(torch, sample, input_axes) if input_axes else None,
            custom_translation_table=table or None,
            **extra,
        )
        return program.model_proto
    buffer = io.BytesIO()
    torchscript_axes = {n: d for n, d in axes.items() if n in out_names} | input_axes
    torch.onnx.export(
        model,
        sample.args,
        buffer,
        kwargs=sample.kwargs or None,
        dynamo=False,
        input_names=list(sample.names),
        output_names=out_names,
        opset_version=min(opset, _torchscript_max_opset()),
        dynamic_axes=torchscript_axes or None,
        **extra,
    )
    return onnx.load_from_string(buffer.getvalue())


def _check_opset(proto: onnx.ModelProto, requested: int | None) -> None:
    """Count an exporter that returns another opset than the one asked for as failed.

    The dynamo exporter writes opset 18 at least and converts down only where it can; the next
    exporter (TorchScript, opsets 7 to 17) is tried then.
    """
    produced = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)
    if requested is not None and produced != requested:
        raise ExportError(f"it produced opset {produced}, not the requested {requested}")


def _torchscript_max_opset() -> int:
    from torch.onnx import _constants

    return int(getattr(_constants, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", 17))


def _dynamic_shapes(torch: Any, sample: _Sample, axes: DynamicAxes) -> Any:
    """torch.export ``dynamic_shapes`` with one ``Dim`` per dimension name."""
    dims: dict[str, Any] = {}

    def dim(name: str) -> Any:
        if name not in dims:
            ident = re.sub(r"\W", "_", name)
            ident = ident if ident and not ident[0].isdigit() else f"d_{ident}"
            dims[name] = torch.export.Dim(
                f"{ident}_{len(dims)}" if ident in {d.__name__ for d in dims.values()} else ident
            )
        return dims[name]

    specs = {n: ({a: dim(d) for a, d in axes[n].items()} if n in axes else None) for n in sample.names}
    if sample.args:
        return tuple(specs[n] for n in sample.names)
    return specs


def _finish(proto: onnx.ModelProto, sample: _Sample, out_names: list[str], axes: DynamicAxes) -> None:
    """Give inputs their user names, name the dynamic dims, refuse axes the exporter fixed."""
    graph_outputs = [o.name for o in proto.graph.output]
    if len(graph_outputs) != len(out_names):
        raise ExportError(
            f"the exporter produced {len(graph_outputs)} outputs ({graph_outputs}) where the model returns "
            f"{len(out_names)} ({out_names})"
        )
    mapping = {old: new for old, new in zip(graph_outputs, out_names, strict=True) if old != new}
    mapping |= {old: new for old, new in sample.renames.items() if old != new}
    _graph.rename_values(proto.graph, mapping)
    present = {v.name for v in _graph.signature(proto)}
    fixed = _graph.declare_axes(proto, {n: d for n, d in axes.items() if n in present})
    if fixed:
        raise ExportError("the exporter fixed dynamic axes: " + "; ".join(fixed))


class _Reference:
    """Runs the source module on flat numpy inputs, for validation."""

    def __init__(self, model: Any, sample: _Sample, out_names: list[str]) -> None:
        self.model, self.sample, self.out_names = model, sample, out_names
        template = sample.tensors()
        self.placement = [(t.dtype, t.device) for t in template]

    def __call__(self, feeds: Feeds) -> Feeds:
        torch = _torch()
        tensors = [
            torch.as_tensor(feeds[self.sample.final(n)], dtype=dtype, device=device)
            for n, (dtype, device) in zip(self.sample.names, self.placement, strict=True)
        ]
        with inference(self.model):
            outputs = self.sample.call(self.model, tensors)
        _, flat = _flatten_outputs(outputs, self.out_names)
        return {n: to_numpy(t) for n, t in zip(self.out_names, flat, strict=True)}


def _operators(failures: list[tuple[str, BaseException]]) -> list[str]:
    found: list[str] = []
    for _, err in failures:
        text = str(err)
        for pattern in (r"op='([\w.:]+)'", r"operator '([\w.:]+)'", r"aten::(\w+)"):
            for name in re.findall(pattern, text):
                name = name if "::" in name or "." in name else f"aten::{name}"
                if name not in found:
                    found.append(name)
    return found


def _export_error(model: Any, failures: list[tuple[str, BaseException]], opset: int) -> ExportError:
    lines = "\n".join(f"  - {attempt}: {summary(err)}" for attempt, err in failures)
    ops = _operators(failures)
    if ops:
        advice = (
            f"Operator(s) with no ONNX conversion at opset {opset}: {', '.join(ops)}. Try another opset "
            "(opset=...), replace that operation in the model, or register a conversion (dynamo: "
            "export_kwargs={'custom_translation_table': {...}}; TorchScript: torch.onnx.register_custom_op_symbolic)."
        )
    else:
        advice = "Try exporter='torchscript' or 'dynamo' alone to see its full error, or another opset (opset=...)."
    error = ExportError(
        f"Exporting {type(model).__name__} to ONNX (opset {opset}) failed with every exporter tried:\n{lines}\n{advice}"
    )
    error.__cause__ = failures[-1][1]
    return error
