"""From a framework model to an :class:`~onnxbridge.exporting._adapter.Exported`: pick the adapter, run it, honour the opset.

The work behind :func:`onnxbridge.export`, without the :class:`~onnxbridge.Artifact` around
it, so that code inside the package (QAT re-exports its trained model) can export without
depending on the artifact.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from onnxbridge.core._axes import DynamicAxesSpec
from onnxbridge.core._errors import (
    ExportError,
    InputError,
    OnnxBridgeError,
    UnsupportedModelError,
    config_fault,
    first_line,
)
from onnxbridge.core._timing import Phases
from onnxbridge.exporting._adapter import Exported, ExportRequest
from onnxbridge.exporting._registry import default_registry
from onnxbridge.graph import _checker


def export_model(
    model: Any,
    sample: Any = None,
    dynamic_axes: DynamicAxesSpec = None,
    *,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    opset: int | None = None,
    framework: str | None = None,
    **adapter_options: Any,
) -> Exported:
    """:func:`onnxbridge.export` without the Artifact; see there for the arguments and errors."""
    if opset is not None and (isinstance(opset, bool) or not isinstance(opset, int) or opset < 1):
        raise InputError(f"opset={opset!r}: expected a positive int such as 17, or None to choose automatically.")
    for label, names in (("input_names", input_names), ("output_names", output_names)):
        if names is not None and (isinstance(names, str) or not all(isinstance(n, str) and n for n in names)):
            raise InputError(f"{label} must be a list of non-empty strings, got {names!r}.")
        if names is not None and len(set(names)) != len(names):
            raise InputError(f"{label} has duplicates: {list(names)!r}. Names must be unique.")
    if model is None:
        raise InputError(
            "The model passed to export() is None. Pass the trained model object (a torch.nn.Module, a Keras "
            "model, a fitted scikit-learn estimator, ...) or the path of an '.onnx' file; check that the variable "
            "holding it was assigned (a function that trains in place may return None)."
        )
    adapter = default_registry.get(framework) if framework else default_registry.find(model)
    request = ExportRequest(
        sample=sample,
        dynamic_axes=dynamic_axes,
        input_names=list(input_names) if input_names is not None else None,
        output_names=list(output_names) if output_names is not None else None,
        opset=opset,
        options=adapter_options,
    )
    start = time.perf_counter()
    try:
        exported = adapter.export(model, request)
    except OnnxBridgeError:
        raise
    except Exception as err:
        if framework and not adapter.accepts(model):  # a forced adapter choking on a model it does not take
            kind = f"{type(model).__module__}.{type(model).__qualname__}"
            raise UnsupportedModelError(
                f"framework={framework!r} was asked for, but its adapter does not convert a {kind} "
                f"({type(err).__name__}: {err}). Leave framework= out to detect the framework from the model, or "
                f"pass the one it belongs to (supported: {', '.join(default_registry.frameworks())})."
            ) from err
        fault = config_fault(err, model)
        if fault is not None:
            raise fault from err
        raise ExportError(
            f"The {adapter.framework!r} adapter failed on this {type(model).__qualname__}: {type(err).__name__}: "
            f"{first_line(err)}. If the model runs in its framework, this is a gap in the exporter or in "
            "onnxbridge: report it with the traceback (onnxbridge --debug, or err.__cause__)."
        ) from err
    if exported.model is None:  # a third-party adapter's bug, said plainly
        raise ExportError(f"The {adapter.framework!r} adapter returned no ONNX model.")
    if opset is not None:
        with request.phases.timed("opset conversion"):
            _honour_opset(exported, opset)
    exported.phases = request.phases.split(time.perf_counter() - start)
    exported.notes.append(Phases.describe(exported.phases))
    return exported


def _default_opset(model: Any) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def _honour_opset(exported: Exported, requested: int) -> None:
    """Give the user the opset asked for: converted and checked, or refused; never silently another.

    Some exporters have a floor (torch.onnx's dynamo exporter writes opset 18 at least) and
    return a newer opset than asked. ``onnx.version_converter`` converts it down where every
    operator has an equivalent; the converted graph is run on the export sample and compared
    with the source before it is accepted.
    """
    import numpy as np
    from onnx import version_converter

    produced = _default_opset(exported.model)
    if produced == requested:
        return
    try:
        converted = version_converter.convert_version(exported.model, requested)
        _checker.check_model(converted)
        if exported.sample is not None and exported.reference is not None:
            from onnxbridge.running._session import Session

            session = Session(converted, ["cpu"])
            got = session.run({k: v for k, v in exported.sample.items() if k in session.input_names})
            want = exported.reference(exported.sample)
            for name, value in got.items():
                if not np.allclose(value, want[name], rtol=1e-3, atol=1e-5, equal_nan=True):
                    raise ValueError(f"output {name!r} differs from the source after conversion")
    except Exception as err:
        reason = first_line(err) or type(err).__name__
        hint = ", or exporter='torchscript' (opsets 7 to 17)" if exported.framework == "torch" else ""
        raise InputError(
            f"opset={requested} was asked for, but {exported.exporter} produced opset {produced}, and converting "
            f"it down failed: {reason}. Use opset>={produced}{hint}. Nothing was exported."
        ) from err
    exported.model = converted
    checked = " and checked against the source on the export sample" if exported.reference is not None else ""
    exported.notes.append(
        f"{exported.exporter} produced opset {produced}; converted to the requested opset {requested} with "
        f"onnx.version_converter{checked}"
    )
