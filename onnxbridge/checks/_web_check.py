"""Will onnxruntime-web run the model? Run it under Node.js with onnxruntime-web and compare.

onnxruntime-web runs in Node.js with the same WebAssembly backend as in a browser, so a model
that loads and gives Python onnxruntime's outputs there will do so in the page. No browser is
needed. Node.js and the onnxruntime-web package are found as ``node`` on ``PATH`` and
``$ONNXBRIDGE_ORT_WEB_DIST`` (or ``./node_modules/onnxruntime-web/dist``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from onnxbridge.checks._compat_report import CompatFinding, CompatReport
from onnxbridge.core._errors import MissingDependencyError, first_line

if TYPE_CHECKING:
    import onnx

    from onnxbridge.core._types import Feeds

ORT_WEB_VERSION = "1.30.0"  # the onnxruntime-web the pages pin (the Makefile installs this one)
WASM_LIMIT = 2**31  # bytes a 32-bit WebAssembly heap can give the model, at most
WEB_DOMAINS = {"", "ai.onnx", "ai.onnx.ml", "com.microsoft"}
NODE_ENTRY = "ort.node.min.mjs"
RTOL, ATOL = 1e-3, 1e-4
TIMEOUT = 600  # seconds for Node.js to load and run the model once
_TYPED = ("float32", "float64", "int32", "int64", "uint8", "int8", "bool", "uint16", "int16", "uint32", "uint64")
_SCRIPT = r"""
import * as ort from "__ENTRY__";
import { readFileSync, writeFileSync } from "node:fs";
const ARRAYS = {float32: Float32Array, float64: Float64Array, int32: Int32Array, int64: BigInt64Array,
  uint8: Uint8Array, int8: Int8Array, bool: Uint8Array, uint16: Uint16Array, int16: Int16Array,
  uint32: Uint32Array, uint64: BigUint64Array};
const dir = process.argv[2];
const spec = JSON.parse(readFileSync(`${dir}/inputs.json`, "utf8"));
ort.env.wasm.numThreads = 1;
ort.env.wasm.wasmPaths = "__DIST__/";
const result = {outputs: {}};
try {
  const session = await ort.InferenceSession.create(readFileSync(`${dir}/model.onnx`), {executionProviders: ["wasm"]});
  const feeds = {};
  for (const [name, input] of Object.entries(spec)) {
    if (input.type === "string") { feeds[name] = new ort.Tensor("string", input.values, input.dims); continue; }
    const bytes = readFileSync(`${dir}/in-${input.index}.bin`);
    const data = new ARRAYS[input.type](bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
    feeds[name] = new ort.Tensor(input.type, data, input.dims);
  }
  const outputs = await session.run(feeds);
  let index = 0;
  for (const [name, tensor] of Object.entries(outputs)) {
    const data = tensor.data;
    if (tensor.type === "string") {
      result.outputs[name] = {type: "string", dims: Array.from(tensor.dims), values: Array.from(data)};
      continue;
    }
    writeFileSync(`${dir}/out-${index}.bin`, Buffer.from(data.buffer, data.byteOffset, data.byteLength));
    result.outputs[name] = {index: index++, type: tensor.type, dims: Array.from(tensor.dims)};
  }
} catch (error) {
  result.error = String(error && error.message ? error.message : error);
}
writeFileSync(`${dir}/result.json`, JSON.stringify(result));
"""
# How onnxruntime names an operator it cannot run.
_NO_KERNEL = re.compile(r"implementation for (\w+)\((\d+)\) node with name '([^']*)'")
_NO_OP = re.compile(r"([\w.]*):(\w+)\((-?\d+)\) is not a registered function/op")


def runtime() -> tuple[str, Path]:
    """The ``node`` executable and onnxruntime-web's dist folder, or a MissingDependencyError saying how to get them."""
    node = shutil.which("node")
    configured = os.environ.get("ONNXBRIDGE_ORT_WEB_DIST")
    dist = Path(configured) if configured else Path("node_modules/onnxruntime-web/dist")
    if node is None or not (dist / NODE_ENTRY).is_file():
        missing = (
            "Node.js (`node` is not on PATH)" if node is None else f"onnxruntime-web ({dist / NODE_ENTRY} not found)"
        )
        raise MissingDependencyError(
            f"Checking a model against onnxruntime-web runs it under Node.js with onnxruntime-web, and {missing}. "
            f"Install Node.js 18+ and `npm install onnxruntime-web@{ORT_WEB_VERSION}`, then set "
            "ONNXBRIDGE_ORT_WEB_DIST to its node_modules/onnxruntime-web/dist folder."
        )
    return node, dist.resolve()


def run_in_node(model: onnx.ModelProto, feeds: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], str]:
    """The model's outputs on ``feeds`` as onnxruntime-web computes them, or the error it raised."""
    from onnxbridge.graph import _files

    node, dist = runtime()
    with tempfile.TemporaryDirectory(prefix="onnxbridge-web-check-") as tmp:
        folder = Path(tmp)
        _files.save_model(model, folder / "model.onnx", external_data=False)
        spec: dict[str, dict[str, Any]] = {}
        for index, (name, value) in enumerate(feeds.items()):
            array = np.ascontiguousarray(value)
            if array.dtype.kind in "OUS":
                spec[name] = {"type": "string", "values": [str(v) for v in array.ravel()], "dims": list(array.shape)}
                continue
            kind = "bool" if array.dtype == np.bool_ else str(array.dtype)
            if kind not in _TYPED:
                return {}, f"input {name!r} is {array.dtype}, which onnxbridge cannot pass to onnxruntime-web"
            (folder / f"in-{index}.bin").write_bytes(array.tobytes())
            spec[name] = {"index": index, "type": kind, "dims": list(array.shape)}
        (folder / "inputs.json").write_text(json.dumps(spec))
        script = _SCRIPT.replace("__ENTRY__", (dist / NODE_ENTRY).as_uri()).replace("__DIST__", str(dist))
        (folder / "check.mjs").write_text(script)
        done = subprocess.run(
            [node, str(folder / "check.mjs"), str(folder)], capture_output=True, text=True, timeout=TIMEOUT
        )
        result_file = folder / "result.json"
        if not result_file.is_file():
            return {}, f"Node.js failed (exit {done.returncode}): {first_line(done.stderr or done.stdout)}"
        result = json.loads(result_file.read_text())
        if "error" in result:
            return {}, str(result["error"])
        outputs = {}
        for name, out in result["outputs"].items():
            if out["type"] == "string":
                outputs[name] = np.array(out["values"], dtype=object).reshape(out["dims"])
                continue
            dtype = np.bool_ if out["type"] == "bool" else np.dtype(out["type"])
            data = np.frombuffer((folder / f"out-{out['index']}.bin").read_bytes(), dtype=dtype)
            outputs[name] = data.reshape(out["dims"])
        return outputs, ""


def compat(
    model: onnx.ModelProto,
    *,
    properties: Mapping[str, str],
    sample: Feeds | None,
    run: Callable[[Feeds], Mapping[str, np.ndarray]] | None,
) -> CompatReport:
    """Implementation of ``Artifact.compat("onnxruntime-web")``: ``run`` gives Python onnxruntime's outputs."""
    _, dist = runtime()
    version = json.loads((dist.parent / "package.json").read_text()).get("version", "?")
    report = CompatReport(f"onnxruntime-web {version}")
    report.checked = [
        f"the model loaded and run by onnxruntime-web {version} (WebAssembly backend) under Node.js",
        f"its outputs against Python onnxruntime's on the same inputs (rtol={RTOL:g}, atol={ATOL:g})",
    ]
    report.not_checked = ["the WebGPU and WebGL backends (a browser with a GPU runs those)"]
    report.findings = static_findings(model)
    if report.findings:
        return report
    feeds = sample or synthetic_feeds(model)
    report.checked.append("inputs: the export sample" if sample else "inputs: made up from the declared shapes")
    got, error = run_in_node(model, feeds)
    if error:
        report.findings.append(_error_finding(error, version))
        return report
    if run is None:
        from onnxbridge.running._session import Session

        run = Session(model, ["cpu"]).run
    expected = run(feeds)
    quantized = properties.get("quantization")
    for name, want in expected.items():
        found = _compare(name, got.get(name), np.asarray(want), version)
        if found and quantized and found[0].problem.startswith(f"output {name!r} differs"):
            found = [
                CompatFinding(
                    f"{found[0].problem}: the model is quantized ({quantized}), and onnxruntime-web's integer "
                    "kernels round differently from onnxruntime's on this CPU",
                    "check the accuracy in the browser with held-out data; quantize('int8-weight') (float "
                    "activations) or the float model give the same answers on both",
                )
            ]
        report.findings += found
    return report


def static_findings(model: onnx.ModelProto) -> list[CompatFinding]:
    """What rules onnxruntime-web out before running anything: size and operator domains."""
    from onnxbridge.graph import _files

    findings = []
    size = _files.model_bytes(model)
    if size >= WASM_LIMIT:
        findings.append(
            CompatFinding(
                f"the model is {size / 2**30:.1f} GiB; WebAssembly memory holds at most 2 GiB, model included",
                "quantize it (quantize('dynamic'), 'int4' or 'fp16') or serve it from a server",
            )
        )
    by_domain: dict[tuple[str, str], list[str]] = {}
    for n in model.graph.node:
        if n.domain not in WEB_DOMAINS:
            by_domain.setdefault((n.domain, n.op_type), []).append(n.name)
    for (domain, op), nodes in sorted(by_domain.items()):
        findings.append(
            CompatFinding(
                f"onnxruntime-web does not implement domain {domain!r}",
                "re-export without custom operators",
                op,
                domain,
                tuple(nodes),
            )
        )
    return findings


def _error_finding(error: str, version: str) -> CompatFinding:
    upgrade = "a newer onnxruntime-web may implement it; or re-export with another opset so other operators are used"
    if kernel := _NO_KERNEL.search(error):
        op, opset, node = kernel.groups()
        return CompatFinding(f"onnxruntime-web {version} has no kernel for {op}-{opset}", upgrade, op, "", (node,))
    if missing := _NO_OP.search(error):
        domain, op, _ = missing.groups()
        return CompatFinding(f"onnxruntime-web {version} does not know {op}", upgrade, op, domain)
    return CompatFinding(f"onnxruntime-web {version} failed: {first_line(error)}", "see the message; " + upgrade)


def _compare(name: str, got: np.ndarray | None, want: np.ndarray, version: str) -> list[CompatFinding]:
    if got is None:
        return [CompatFinding(f"onnxruntime-web {version} did not return output {name!r}", "report it to onnxruntime")]
    if got.shape != want.shape:
        return [CompatFinding(f"output {name!r}: shape {got.shape} vs {want.shape} in Python onnxruntime", "report it")]
    if np.issubdtype(want.dtype, np.number) and not np.allclose(got, want, rtol=RTOL, atol=ATOL, equal_nan=True):
        err = float(np.max(np.abs(got.astype(np.float64) - want.astype(np.float64))))
        return [
            CompatFinding(
                f"output {name!r} differs from Python onnxruntime's by up to {err:.3g}",
                "compare in the browser; a quantization mode or opset that uses other kernels may agree",
            )
        ]
    if not np.issubdtype(want.dtype, np.number) and not np.array_equal(got, want):
        return [CompatFinding(f"output {name!r} differs from Python onnxruntime's", "report it")]
    return []


def synthetic_feeds(model: onnx.ModelProto, seed: int = 0) -> dict[str, np.ndarray]:
    """Inputs of the declared types, symbolic dimensions as 1: values in [0, 1), zeros, or "a" for strings."""
    from onnxbridge.graph import _graph

    rng = np.random.default_rng(seed)
    feeds = {}
    for value in _graph.inputs(model):
        dtype = _graph.value_dtype(value) or np.dtype(np.float32)
        dims = [d.dim_value if d.dim_value > 0 else 1 for d in value.type.tensor_type.shape.dim]
        if dtype.kind in "OUS":
            feeds[value.name] = np.full(dims, "a", dtype=object)
        else:
            feeds[value.name] = rng.random(dims).astype(dtype) if dtype.kind == "f" else np.zeros(dims, dtype)
    return feeds
