"""Browser benchmark: onnxruntime-web through onnxbridge's page vs TensorFlow.js, side by side in one Chromium.

Run with ``make bench`` (Chromium at /usr/bin/chromium; ``make web-runtime web-bench-runtime``
installs onnxruntime-web and TensorFlow.js with npm). Not part of the tests.

For each model and batch size, in Debian's headless Chromium (no GPU, so WebGPU/WebGL are not
measured), in interleaved rounds with a fresh page each time:

* **onnxruntime-web, wasm, 1 thread**: onnxbridge's generated page on a plain static server;
* **onnxruntime-web, wasm, N threads**: the same page served by ``ob.serve_web`` (cross-origin
  isolated, so WebAssembly gets threads);
* **TensorFlow.js wasm** (1 thread on a plain server, N threads isolated) and **TensorFlow.js
  cpu** (plain JavaScript): the same Keras model (tf_keras), its topology and weights written as a
  TensorFlow.js layers model (``model.json`` + ``weights.bin``, the format ``tensorflowjs``'
  converter writes), loaded with ``tf.loadLayersModel``; a check compares its output with Keras';
* **Python onnxruntime**, 1 thread: the floor.

Latency: each page's own ``performance.now()`` around a run (onnxruntime-web: in the worker;
TensorFlow.js: ``predict`` and reading the result back), median over the runs of a page, then
median over rounds. Cold start: fetching the model, creating the session (or loading the layers
model), and the first run.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from _timing import per_call, table
from playwright.sync_api import sync_playwright
from sklearn.datasets import load_digits
from sklearn.ensemble import RandomForestClassifier

import onnxbridge as ob

warnings.filterwarnings("ignore")
ORT_WEB = os.environ.get("ONNXBRIDGE_ORT_WEB_DIST", ".venv/web/node_modules/onnxruntime-web/dist")
TFJS = Path(os.environ.get("ONNXBRIDGE_TFJS", ".venv/web/node_modules/@tensorflow"))
ROUNDS = 3
TFJS_PAGE = """<!doctype html><meta charset="utf-8"><title>TensorFlow.js bench</title>
<script src="tf.min.js"></script><script src="tf-backend-wasm.min.js"></script>
<script>
async function main() {
  const q = new URLSearchParams(location.search);
  const backend = q.get("backend"), batch = Number(q.get("batch")), runs = Number(q.get("runs"));
  const start = performance.now();
  if (backend === "wasm") {
    tf.wasm.setWasmPaths(new URL("./", location.href).href);
    if (crossOriginIsolated) tf.wasm.setThreadsCount(Math.min(4, navigator.hardwareConcurrency));
  }
  await tf.setBackend(backend);
  await tf.ready();
  const model = await tf.loadLayersModel("model.json");
  const load = performance.now() - start;
  const shape = [batch, ...model.inputs[0].shape.slice(1)];
  const ones = model.predict(tf.ones([1, ...shape.slice(1)]));
  const check = Array.from(await ones.data());
  const x = tf.randomUniform(shape);
  let t = performance.now();
  let y = model.predict(x); await y.data(); y.dispose();
  const first = performance.now() - t;
  const times = [];
  for (let i = 0; i < runs; i++) {
    t = performance.now(); y = model.predict(x); await y.data(); y.dispose(); times.push(performance.now() - t);
  }
  const threads = backend === "wasm" ? tf.wasm.getThreadsCount() : 1;
  window.result = {load, first, times, check, threads, backend: tf.getBackend()};
}
main().catch((e) => { window.result = {error: String(e && e.stack || e)}; });
</script>"""


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class _PlainServer:
    """Any static server: no isolation headers, so one WebAssembly thread."""

    def __init__(self, folder: Path) -> None:
        handler = functools.partial(_Quiet, directory=str(folder))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/index.html"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def write_layers_model(model: Any, folder: Path) -> None:
    """A tf_keras model as a TensorFlow.js layers model: Keras' JSON topology, float32 weights by name."""
    import tf_keras

    weights, manifest = [], []
    for w in model.weights:
        value = np.asarray(w.numpy(), np.float32)
        weights.append(value.tobytes())
        manifest.append({"name": w.name.split(":")[0], "shape": list(value.shape), "dtype": "float32"})
    (folder / "weights.bin").write_bytes(b"".join(weights))
    topology = {
        "model_config": json.loads(model.to_json()),
        "keras_version": tf_keras.__version__,
        "backend": "tensorflow",
    }
    document = {"format": "layers-model", "generatedBy": "onnxbridge benchmarks/bench_web.py", "convertedBy": None,
                "modelTopology": topology, "weightsManifest": [{"paths": ["weights.bin"], "weights": manifest}]}  # fmt: skip
    (folder / "model.json").write_text(json.dumps(document))
    (folder / "manifest.json").write_text("{}")  # serve_web serves folders that look like sites
    shutil.copy(TFJS / "tfjs" / "dist" / "tf.min.js", folder)
    for name in ("tf-backend-wasm.min.js", "tfjs-backend-wasm.wasm", "tfjs-backend-wasm-simd.wasm"):
        shutil.copy(TFJS / "tfjs-backend-wasm" / "dist" / name, folder)
    shutil.copy(TFJS / "tfjs-backend-wasm" / "dist" / "tfjs-backend-wasm-threaded-simd.wasm", folder)
    (folder / "index.html").write_text(TFJS_PAGE)


def _ort_page(browser: Any, url: str, input_name: str, batch: int, runs: int) -> dict[str, float]:
    page = browser.new_page()
    try:
        page.goto(f"{url}?runs={runs}")
        page.wait_for_selector("#status[data-ready=true]", timeout=300_000)
        page.select_option(f'[id="mode-{input_name}"]', "random")
        field = page.locator(f'[id="dim-{input_name}-0"]')
        if field.count():
            field.fill(str(batch))
        page.click("#run")
        page.wait_for_selector("#latency[data-ms]", timeout=300_000)
        page.click("#bench")
        page.wait_for_selector("#median[data-ms]", timeout=900_000)

        def ms(selector: str) -> float:
            return float(page.get_attribute(selector, "data-ms"))

        threads = int(page.get_attribute("#backend", "data-threads"))
        return {"median": ms("#median"), "cold": ms("#fetch") + ms("#create") + ms("#first-run"), "threads": threads}
    finally:
        page.close()


def _tfjs_page(browser: Any, url: str, backend: str, batch: int, runs: int) -> dict[str, Any]:
    page = browser.new_page()
    try:
        page.goto(f"{url}?backend={backend}&batch={batch}&runs={runs}")
        page.wait_for_function("window.result !== undefined", timeout=900_000)
        result = page.evaluate("window.result")
        if "error" in result:
            raise RuntimeError(f"TensorFlow.js {backend}: {result['error']}")
        return {"median": statistics.median(result["times"]), "cold": result["load"] + result["first"],
                "threads": result["threads"], "check": result["check"]}  # fmt: skip
    finally:
        page.close()


CONFIGS = ("ort 1t", "ort Nt", "tfjs wasm 1t", "tfjs wasm Nt", "tfjs cpu")
COLD = ("ort 1t", "tfjs wasm 1t", "tfjs cpu")


def _rounds(browser: Any, servers: dict[str, Any], input_name: str, batch: int, *, big: bool) -> dict[str, list[dict]]:
    """Every configuration measured once per round, rounds interleaved; a fresh page each time."""
    runs = 10 if big else 30
    configs = {
        "ort 1t": functools.partial(_ort_page, browser, servers["ort 1t"].url, input_name, batch, runs),
        "ort Nt": functools.partial(_ort_page, browser, servers["ort Nt"].url, input_name, batch, runs),
    }
    if "tfjs 1t" in servers:
        configs["tfjs wasm 1t"] = functools.partial(_tfjs_page, browser, servers["tfjs 1t"].url, "wasm", batch, runs)
        configs["tfjs wasm Nt"] = functools.partial(_tfjs_page, browser, servers["tfjs Nt"].url, "wasm", batch, runs)
        if not (big and batch == 8):  # plain JavaScript: tens of seconds per run
            cpu_runs = 3 if big else 30
            configs["tfjs cpu"] = functools.partial(_tfjs_page, browser, servers["tfjs 1t"].url, "cpu", batch, cpu_runs)
    samples: dict[str, list[dict]] = {}
    for _ in range(ROUNDS):
        for key, measure in configs.items():
            samples.setdefault(key, []).append(measure())
    return samples


def _python_ms(art: ob.Artifact, feeds: np.ndarray, runs: int) -> float:
    session = art.session(providers=["cpu"], threads=1)
    return statistics.median(per_call(lambda: session.run(feeds), runs)) * 1e3


def _median(samples: dict[str, list[dict]], key: str, metric: str) -> float | None:
    return statistics.median(s[metric] for s in samples[key]) if key in samples else None


def _cell(samples: dict[str, list[dict]], key: str, metric: str = "median", form: str = "{:.2f} ms") -> str:
    value = _median(samples, key, metric)
    return "n/a" if value is None else form.format(value)


def _latency_row(name: str, batch: int, samples: dict[str, list[dict]], python_ms: float) -> list[Any]:
    ort_best = min(v for k in ("ort 1t", "ort Nt") if (v := _median(samples, k, "median")) is not None)
    tfjs = [v for k in CONFIGS[2:] if (v := _median(samples, k, "median")) is not None]
    ratio = f"{min(tfjs) / ort_best:.2f}x" if tfjs else "n/a"
    cells = [_cell(samples, k) for k in CONFIGS]
    for i, key in enumerate(CONFIGS):
        if key.endswith("Nt") and key in samples:
            cells[i] += f" ({samples[key][0]['threads']} threads)"
    return [name, batch, *cells, f"{python_ms:.2f} ms", ratio]


def _keras_models() -> dict[str, Any]:
    import tf_keras

    data = load_digits()
    x = (data.images / 16.0).astype(np.float32)[..., None]
    tf_keras.utils.set_random_seed(0)
    digits = tf_keras.Sequential([
        tf_keras.layers.Input((8, 8, 1)),
        tf_keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
        tf_keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
        tf_keras.layers.MaxPooling2D(2),
        tf_keras.layers.Flatten(),
        tf_keras.layers.Dense(10, activation="softmax"),
    ])  # fmt: skip
    digits.compile("adam", "sparse_categorical_crossentropy")
    digits.fit(x, data.target, epochs=2, verbose=0)
    mobilenet = tf_keras.applications.MobileNetV2(weights=None, input_shape=(224, 224, 3))  # random weights
    return {"digits CNN (Keras)": (digits, x[:1]), "MobileNetV2 (Keras, 224x224, 3.5 M params)": (mobilenet, None)}


def main() -> None:
    """Print the side-by-side tables."""
    keras_models = _keras_models()
    data = load_digits()
    forest = RandomForestClassifier(100, random_state=0).fit(data.data, data.target)
    cases: dict[str, tuple[ob.Artifact, Any, np.ndarray]] = {}
    for name, (model, sample) in keras_models.items():
        shape = (1, *model.input_shape[1:])
        example = sample if sample is not None else np.random.default_rng(0).random(shape, dtype=np.float32)
        cases[name] = (ob.export(model, example, dynamic_axes="batch"), model, example)
    cases["RandomForest (100 trees)"] = (ob.export(forest, data.data[:2]), None, data.data[:1].astype(np.float32))

    latency_rows, cold_rows, notes = [], [], []
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu"])
        for index, (name, (art, keras_model, example)) in enumerate(cases.items()):
            site = art.to_web(Path(tmp) / f"ort-{index}", runtime=ORT_WEB)
            servers = {"ort 1t": _PlainServer(site), "ort Nt": ob.serve_web(site)}
            if keras_model is not None:
                folder = Path(tmp) / f"tfjs-{index}"
                folder.mkdir()
                write_layers_model(keras_model, folder)
                servers |= {"tfjs 1t": _PlainServer(folder), "tfjs Nt": ob.serve_web(folder)}
            for batch in (1, 8):
                samples = _rounds(browser, servers, art.input_names[0], batch, big="MobileNet" in name)
                python_ms = _python_ms(art, np.repeat(example, batch, axis=0), runs=20 if "MobileNet" in name else 300)
                latency_rows.append(_latency_row(name, batch, samples, python_ms))
                if batch == 1:
                    cold_rows.append([name, *(_cell(samples, k, "cold", "{:.0f} ms") for k in COLD)])
                if keras_model is not None and batch == 1:
                    want = np.asarray(keras_model(np.ones((1, *keras_model.input_shape[1:]), np.float32))).ravel()
                    got = np.asarray(samples["tfjs wasm 1t"][0]["check"])
                    notes.append(
                        f"{name}: TensorFlow.js output vs Keras on ones: max abs diff {np.abs(got - want).max():.2g}"
                    )
            for server in servers.values():
                server.close()
        browser.close()
    print("## Latency: median per run, headless Chromium (no GPU), medians over interleaved rounds\n")
    header = ["model", "batch", "onnxruntime-web wasm 1 thread", "onnxruntime-web wasm, isolated", "TF.js wasm 1 thread",
              "TF.js wasm, isolated", "TF.js cpu", "Python onnxruntime 1 thread", "fastest TF.js / fastest onnxruntime-web"]  # fmt: skip
    print(table(header, latency_rows))
    print("\n## Cold start (batch 1): fetch + session or model load + first run\n")
    print(table(["model", "onnxruntime-web wasm (page)", "TF.js wasm", "TF.js cpu"], cold_rows))
    print()
    for note in notes:
        print(f"* {note}")
    print(f"\nmeasured {time.strftime('%Y-%m-%d')}, {ROUNDS} rounds; onnxruntime-web {json.loads(Path(ORT_WEB, '..', 'package.json').read_text())['version']}, "
          f"TensorFlow.js {json.loads((TFJS / 'tfjs' / 'package.json').read_text())['version']}")  # fmt: skip


if __name__ == "__main__":
    main()
