"""Deploy to the browser: a static page that runs the model with onnxruntime-web in a Web Worker.

The site is plain HTML and two ES modules, no build step: ``index.html``, ``app.js`` (the page),
``worker.js`` (onnxruntime-web, off the page's thread), ``model.onnx`` and ``manifest.json``
(inputs, outputs, dtypes, shapes with symbolic dimensions, class labels, the backend, the
onnxruntime-web version, the pre-processing, the Node.js preflight). ``runtime="cdn"`` loads a
pinned onnxruntime-web from a public CDN; a path to a local ``onnxruntime-web/dist`` folder
copies the runtime into the site so it works offline.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from onnxbridge.checks import _web_check
from onnxbridge.checks._web_check import ORT_WEB_VERSION
from onnxbridge.core._errors import InputError, MissingDependencyError, WebExportError
from onnxbridge.exporting._describe import tensor_info

if TYPE_CHECKING:
    import numpy as np
    import onnx

    from onnxbridge.checks._compat_report import CompatFinding
    from onnxbridge.core._types import Feeds

CDN = "https://cdn.jsdelivr.net/npm/onnxruntime-web@{version}/dist/"
# Per backend, the onnxruntime-web module and the WebAssembly build it loads; each also runs the
# WebAssembly backend, which the page falls back to when the device lacks the requested one.
BACKENDS = {
    "wasm": ("ort.wasm.min.mjs", "ort-wasm-simd-threaded"),
    "webgpu": ("ort.webgpu.min.mjs", "ort-wasm-simd-threaded.asyncify"),
    "webgl": ("ort.all.min.mjs", "ort-wasm-simd-threaded.jsep"),
}
RUNTIME_FILES = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
PAGE_FILES = ("index.html", "app.js", "worker.js")
PAGE_DTYPES = {"float32", "float64", "int32", "int64", "uint8", "int8", "bool"}


@dataclass(frozen=True)
class WebOptions:
    """How the page is built: the keywords of :meth:`Artifact.to_web` (see there for each)."""

    title: str | None = None
    runtime: str = "cdn"
    preprocess: Mapping[str, Any] | None = None
    labels: Sequence[str] | None = None
    backend: str = "wasm"
    preflight: bool | str = "auto"


@dataclass(frozen=True)
class WebModel:
    """The model a page is built for, as plain values.

    Attributes:
        model: The ONNX model.
        facts: ``framework``, ``exporter`` and ``opset``, shown on the page.
        labels: The model's own class names per output, or ``None``.
        properties: The artifact's facts (a quantized model's mode explains preflight differences).
        sample: Inputs for the preflight (default: made up from the declared shapes).
        run: Runs the model in Python onnxruntime on CPU, for the preflight to compare with.
        write: Writes the model file (with its metadata) to the path given.
    """

    model: onnx.ModelProto
    facts: Mapping[str, Any]
    labels: Mapping[str, list[str]] | None
    properties: Mapping[str, str]
    sample: Feeds | None
    run: Callable[[Feeds], Mapping[str, np.ndarray]]
    write: Callable[[Path], Any]


def to_web(source: WebModel, directory: str | os.PathLike[str], options: WebOptions) -> Path:
    """Implementation of :meth:`onnxbridge.Artifact.to_web`."""
    from onnxbridge.graph import _files, _graph

    target = Path(directory)
    model = source.model
    runtime, backend = options.runtime, options.backend
    size = _files.model_bytes(model)
    refused = _web_check.static_findings(model)  # size and operator domains, whatever the preflight
    if refused:
        raise WebExportError(_refusal("onnxruntime-web cannot run this model", refused))
    if backend not in BACKENDS:
        raise InputError(f"backend={backend!r}: expected one of {', '.join(BACKENDS)} (the page falls back to wasm).")
    runtime_info = _runtime(runtime, backend)
    outputs = [_describe(v, None) for v in model.graph.output]
    for output, names in _labels(source.labels, outputs, options.labels).items():
        next(o for o in outputs if o["name"] == output)["labels"] = names
    manifest: dict[str, Any] = {
        "title": options.title or f"{source.facts['framework']} model",
        "model": "model.onnx",
        "model_bytes": size,
        "runtime": runtime_info,
        "inputs": [_describe(v, options.preprocess) for v in _graph.inputs(model)],
        "outputs": outputs,
        "onnxbridge": dict(source.facts),
        "preflight": _preflight(source, options.preflight),
    }
    unsupported = [i["name"] for i in manifest["inputs"] if not i["supported"]]
    if unsupported:
        warnings.warn(
            f"The page cannot fill input(s) {unsupported} (types the page supports: {', '.join(sorted(PAGE_DTYPES))}); "
            "it will say so instead of running.",
            UserWarning,
            stacklevel=3,
        )
    # Write everything into a staging folder beside the target, then move it into place.
    parent = target.resolve().parent
    if not parent.is_dir():
        raise InputError(f"Cannot write the site to {str(target)!r}: folder {str(parent)!r} does not exist.")
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise InputError(f"{str(target)!r} exists and is not an empty folder; choose a new directory for the site.")
    staging = Path(tempfile.mkdtemp(prefix=".onnxbridge-web-", dir=parent))
    try:
        source.write(staging / "model.onnx")
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=2))
        page = resources.files("onnxbridge.deploy.web")
        for name in PAGE_FILES:
            (staging / name).write_text(page.joinpath(name).read_text())
        if runtime_info["kind"] == "local":
            (staging / "ort").mkdir()
            for name in _runtime_files(backend):
                shutil.copy2(Path(runtime) / name, staging / "ort" / name)
        if target.exists():
            target.rmdir()
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _runtime_files(backend: str) -> tuple[str, ...]:
    """The backend's module and build, and the WebAssembly ones it falls back to.

    The fallback is the plain WebAssembly build, not the backend's own: onnxruntime-web's WebGPU
    build leaves out the ``ai.onnx.ml`` operators (scikit-learn models), which the plain one has.
    """
    files: list[str] = []
    for name in dict.fromkeys((backend, "wasm")):
        module, build = BACKENDS[name]
        files += [module, f"{build}.mjs", f"{build}.wasm"]
    return tuple(files)


def _runtime(runtime: str, backend: str = "wasm") -> dict[str, Any]:
    module = BACKENDS[backend][0]
    if runtime == "cdn":
        base = CDN.format(version=ORT_WEB_VERSION)
        return {"kind": "cdn", "version": ORT_WEB_VERSION, "base": base, "module": module, "backend": backend,
                "wasm_module": BACKENDS["wasm"][0]}  # fmt: skip
    folder = Path(runtime)
    missing = [name for name in _runtime_files(backend) if not (folder / name).is_file()]
    if missing:
        raise InputError(
            f"runtime={runtime!r} should be onnxruntime-web's dist folder (e.g. node_modules/onnxruntime-web/dist), "
            f"but it lacks {missing}. Install it with `npm install onnxruntime-web`, or use runtime='cdn'."
        )
    version = ORT_WEB_VERSION
    package = folder.parent / "package.json"
    if package.is_file():
        version = json.loads(package.read_text()).get("version", version)
    return {"kind": "local", "version": version, "base": "./ort/", "module": module, "backend": backend,
            "wasm_module": BACKENDS["wasm"][0]}  # fmt: skip


def _labels(
    own: Mapping[str, list[str]] | None, outputs: list[dict[str, Any]], given: Sequence[str] | None
) -> dict[str, list[str]]:
    """Class names per output: the model's ``own``, or ``given`` for its class columns."""
    known = dict(own or {})
    if given is None:
        return known
    names = [str(name) for name in given]
    columns = [o for o in outputs if o["dtype"].startswith("float") and len(o["shape"]) == 2]
    exact = [o["name"] for o in columns if o["shape"][1] == len(names)]
    loose = [o["name"] for o in columns if not isinstance(o["shape"][1], int)]
    chosen = exact or loose
    if not chosen:
        shapes = ", ".join(f"{o['name']} {o['shape']}" for o in outputs)
        raise InputError(
            f"labels has {len(names)} names, but no output has {len(names)} columns (outputs: {shapes}). Pass one "
            "name per class column of the classifier's [batch, classes] output."
        )
    return {**known, **dict.fromkeys(chosen, names)}


def _preflight(source: WebModel, wanted: bool | str) -> dict[str, Any]:
    """Run the model under Node.js with onnxruntime-web first; a WebExportError names what it cannot run."""
    if wanted not in (True, False, "auto"):
        raise InputError(f"preflight={wanted!r}: expected True, False or 'auto' (run it when Node.js is found).")
    if wanted is False:
        return {"ran": False, "why": "preflight=False"}
    try:
        _web_check.runtime()
    except MissingDependencyError as err:
        if wanted is True:
            raise
        warnings.warn(f"Not checked under Node.js before writing the site: {err}", UserWarning, stacklevel=4)
        return {"ran": False, "why": "Node.js or onnxruntime-web not found (ONNXBRIDGE_ORT_WEB_DIST)"}
    report = _web_check.compat(source.model, properties=source.properties, sample=source.sample, run=source.run)
    if not report.ok:
        raise WebExportError(_refusal("onnxruntime-web cannot run this model, checked under Node.js", report.findings))
    return {"ran": True, "target": report.target, "checked": report.checked}


def _refusal(why: str, findings: Sequence[CompatFinding]) -> str:
    problems = "; ".join(
        f"{f.problem}" + (f" ({f.op_type}, node {', '.join(f.nodes[:3])})" if f.op_type else "") + f": {f.fix}"
        for f in findings
    )
    return f"{why}: {problems}. Nothing was written."


def _describe(value: Any, preprocess: Mapping[str, Any] | None) -> dict[str, Any]:
    info = tensor_info(value)
    info["supported"] = info["dtype"] in PAGE_DTYPES
    info["image"] = _image_layout(info["shape"], info["dtype"], preprocess) if info["supported"] else None
    return info


def _image_layout(shape: list[Any], dtype: str, preprocess: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """``[N, C, H, W]`` or ``[N, H, W, C]`` with C in 1/3 and fixed H, W: an image input."""
    if len(shape) != 4 or dtype != "float32":
        return None
    layout = None
    if shape[1] in (1, 3) and isinstance(shape[2], int) and isinstance(shape[3], int):
        layout, channels, height, width = "NCHW", shape[1], shape[2], shape[3]
    elif shape[3] in (1, 3) and isinstance(shape[1], int) and isinstance(shape[2], int):
        layout, channels, height, width = "NHWC", shape[3], shape[1], shape[2]
    if layout is None:
        return None
    settings = dict(preprocess or {})
    unknown = sorted(set(settings) - {"scale", "mean", "std", "invert"})
    if unknown:
        raise InputError(f"preprocess keys {unknown} are not known; use scale, mean, std and invert.")
    return {
        "layout": layout,
        "channels": channels,
        "height": height,
        "width": width,
        "scale": float(settings.get("scale", 1 / 255)),
        "mean": _per_channel(settings.get("mean", 0.0), channels),
        "std": _per_channel(settings.get("std", 1.0), channels),
        "invert": bool(settings.get("invert", False)),
    }


def _per_channel(value: Any, channels: int) -> list[float]:
    values = [float(v) for v in value] if isinstance(value, (list, tuple)) else [float(value)] * channels
    if len(values) != channels:
        raise InputError(f"preprocess gives {len(values)} values for an image with {channels} channel(s).")
    return values
