"""Execution providers: short names, preference order, and honest fallback.

onnxruntime only emits a ``UserWarning`` when asked for a provider that is not
available (and merely logs one whose libraries fail to load), then runs on CPU.
onnxbridge resolves the request itself, warns once per skipped provider with the
reason, and reads back what is really active.
"""

from __future__ import annotations

import difflib
import importlib.metadata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from onnxbridge.core._errors import ProviderError

ProviderSpec: TypeAlias = "str | tuple[str, dict[str, Any]]"
"""A provider name or alias, optionally with onnxruntime provider options."""

CPU = "CPUExecutionProvider"

ALIASES: dict[str, str] = {
    "cpu": CPU,
    "cuda": "CUDAExecutionProvider",
    "gpu": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "trt": "TensorrtExecutionProvider",
    "tensorrt-rtx": "NvTensorRTRTXExecutionProvider",
    "rocm": "ROCMExecutionProvider",
    "migraphx": "MIGraphXExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "dnnl": "DnnlExecutionProvider",
    "onednn": "DnnlExecutionProvider",
    "dml": "DmlExecutionProvider",
    "directml": "DmlExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "qnn": "QNNExecutionProvider",
    "nnapi": "NnapiExecutionProvider",
    "xnnpack": "XnnpackExecutionProvider",
    "webgpu": "WebGpuExecutionProvider",
    "cann": "CANNExecutionProvider",
    "acl": "ACLExecutionProvider",
    "vitisai": "VitisAIExecutionProvider",
    "azure": "AzureExecutionProvider",
}

# providers=None picks the first available of these, then CPU. TensorRT is left out
# on purpose: it builds engines on first run (minutes for large models), which
# nobody should get without asking. Azure is not a local accelerator.
AUTO_PREFERENCE = (
    "CUDAExecutionProvider",
    "ROCMExecutionProvider",
    "MIGraphXExecutionProvider",
    "DmlExecutionProvider",
    "CoreMLExecutionProvider",
    "OpenVINOExecutionProvider",
)

_INSTALL_HINTS = {
    "CUDAExecutionProvider": "install onnxruntime-gpu (and uninstall onnxruntime) with matching CUDA/cuDNN",
    "TensorrtExecutionProvider": "install onnxruntime-gpu with TensorRT libraries on the library path",
    "OpenVINOExecutionProvider": "install onnxruntime-openvino",
    "DmlExecutionProvider": "install onnxruntime-directml (Windows)",
    "QNNExecutionProvider": "install onnxruntime-qnn",
}


@dataclass(frozen=True)
class ProviderPlan:
    """The providers to hand onnxruntime, and those skipped with why."""

    providers: list[str | tuple[str, dict[str, Any]]]
    skipped: list[tuple[str, str]]


def canonical_name(name: str, known: Sequence[str]) -> str:
    """Full onnxruntime name for an alias or full name; :class:`ProviderError` if unknown."""
    if name in known:
        return name
    key = name.lower().replace("_", "-").removesuffix("executionprovider")
    if key in ALIASES:
        return ALIASES[key]
    by_lower = {k.lower(): k for k in known}
    if name.lower() in by_lower:
        return by_lower[name.lower()]
    guess = difflib.get_close_matches(name.lower(), list(ALIASES) + list(known), n=1)
    suggestion = f" Did you mean {guess[0]!r}?" if guess else ""
    raise ProviderError(
        f"Unknown execution provider {name!r}.{suggestion} Use a short name "
        f"({', '.join(sorted(set(ALIASES)))}) or a full onnxruntime name such as "
        "'CUDAExecutionProvider'."
    )


def plan(requested: Sequence[ProviderSpec] | str | None, *, strict: bool) -> ProviderPlan:
    """Resolve a provider request against what this onnxruntime build offers."""
    import onnxruntime as ort

    known = list(ort.get_all_providers())
    available = set(ort.get_available_providers())
    if requested is None:
        auto = [p for p in AUTO_PREFERENCE if p in available]
        return ProviderPlan([*auto, CPU], [])
    if isinstance(requested, str):
        requested = [requested]
    if not requested:
        raise ProviderError("providers=[] names no provider. Pass None for the best available, or e.g. ['cpu'].")
    chosen: list[str | tuple[str, dict[str, Any]]] = []
    skipped: list[tuple[str, str]] = []
    for spec in requested:
        name, options = (spec[0], dict(spec[1])) if isinstance(spec, tuple) else (spec, None)
        full = canonical_name(name, known)
        if full in available:
            chosen.append((full, options) if options is not None else full)
            continue
        reason = (
            f"not available in this onnxruntime build ({_distribution()}; available: {', '.join(sorted(available))})"
        )
        if full in _INSTALL_HINTS:
            reason += f"; to use it, {_INSTALL_HINTS[full]}"
        skipped.append((full, reason))
    if strict and skipped:
        raise ProviderError(
            "strict=True and these requested providers cannot be used: "
            + "; ".join(f"{name}: {why}" for name, why in skipped)
            + ". Request only available providers, or pass strict=False to fall back."
        )
    if not strict and CPU not in [_name_of(p) for p in chosen]:
        chosen.append(CPU)
    return ProviderPlan(chosen, skipped)


def _name_of(spec: str | tuple[str, dict[str, Any]]) -> str:
    return spec[0] if isinstance(spec, tuple) else spec


def names(specs: Sequence[str | tuple[str, dict[str, Any]]]) -> list[str]:
    """Provider names of a list of provider specs."""
    return [_name_of(s) for s in specs]


def _distribution() -> str:
    for dist in ("onnxruntime-gpu", "onnxruntime", "onnxruntime-openvino", "onnxruntime-directml", "onnxruntime-qnn"):
        try:
            return f"{dist} {importlib.metadata.version(dist)}"
        except importlib.metadata.PackageNotFoundError:
            continue
    return "onnxruntime"
