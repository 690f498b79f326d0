"""Deploy to the browser: a static page that runs the model with onnxruntime-web.

The site is plain HTML and one ES module, no build step: ``index.html``, ``app.js``,
``model.onnx`` and ``manifest.json`` (inputs, outputs, dtypes, shapes with symbolic
dimensions, the onnxruntime-web version, the pre-processing). ``runtime="cdn"`` loads a
pinned onnxruntime-web from a public CDN; a path to a local ``onnxruntime-web/dist``
folder copies the runtime into the site so it works offline.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from onnxbridge._describe import tensor_info
from onnxbridge._errors import InputError, WebExportError

if TYPE_CHECKING:
    from onnxbridge._artifact import Artifact

ORT_WEB_VERSION = "1.30.0"
CDN = "https://cdn.jsdelivr.net/npm/onnxruntime-web@{version}/dist/"
# The files the page needs from onnxruntime-web's dist folder (WebAssembly backend, ES module).
RUNTIME_FILES = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
WASM_LIMIT = 2**31  # bytes a 32-bit WebAssembly heap can give the model, at most
PAGE_DTYPES = {"float32", "float64", "int32", "int64", "uint8", "int8", "bool"}
WEB_DOMAINS = {"", "ai.onnx", "ai.onnx.ml", "com.microsoft"}


def to_web(
    artifact: Artifact,
    directory: str | os.PathLike[str],
    *,
    title: str | None = None,
    runtime: str = "cdn",
    preprocess: Mapping[str, Any] | None = None,
) -> Path:
    """Implementation of :meth:`onnxbridge.Artifact.to_web`."""
    from onnxbridge import _graph, _serialization

    target = Path(directory)
    model = artifact.model
    size = _serialization.model_bytes(model)
    if size >= WASM_LIMIT:
        raise WebExportError(
            f"The model is {size / 2**30:.1f} GiB; a browser's WebAssembly memory holds at most 2 GiB, model "
            "included. Quantize it (art.quantize('dynamic') or 'fp16') or serve it from a server instead."
        )
    domains = sorted({n.domain for n in model.graph.node} - WEB_DOMAINS)
    if domains:
        raise WebExportError(
            f"The model uses operators from domain(s) {domains}, which onnxruntime-web does not implement. "
            "Re-export without custom operators."
        )
    runtime_info = _runtime(runtime)
    manifest: dict[str, Any] = {
        "title": title or f"{artifact.framework} model",
        "model": "model.onnx",
        "runtime": runtime_info,
        "inputs": [_describe(v, preprocess) for v in _graph.inputs(model)],
        "outputs": [_describe(v, None) for v in model.graph.output],
        "onnxbridge": {"framework": artifact.framework, "exporter": artifact.exporter, "opset": artifact.opset},
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
        artifact.save(staging / "model.onnx", external_data=False)
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=2))
        page = resources.files("onnxbridge.web")
        for name in ("index.html", "app.js"):
            (staging / name).write_text(page.joinpath(name).read_text())
        if runtime_info["kind"] == "local":
            (staging / "ort").mkdir()
            for name in RUNTIME_FILES:
                shutil.copy2(Path(runtime) / name, staging / "ort" / name)
        if target.exists():
            target.rmdir()
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _runtime(runtime: str) -> dict[str, Any]:
    if runtime == "cdn":
        return {"kind": "cdn", "version": ORT_WEB_VERSION, "base": CDN.format(version=ORT_WEB_VERSION)}
    folder = Path(runtime)
    missing = [name for name in RUNTIME_FILES if not (folder / name).is_file()]
    if missing:
        raise InputError(
            f"runtime={runtime!r} should be onnxruntime-web's dist folder (e.g. node_modules/onnxruntime-web/dist), "
            f"but it lacks {missing}. Install it with `npm install onnxruntime-web`, or use runtime='cdn'."
        )
    version = ORT_WEB_VERSION
    package = folder.parent / "package.json"
    if package.is_file():
        version = json.loads(package.read_text()).get("version", version)
    return {"kind": "local", "version": version, "base": "./ort/"}


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
