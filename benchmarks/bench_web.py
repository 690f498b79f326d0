"""Browser benchmark: the generated page's onnxruntime-web latency vs onnxruntime in Python.

Run with ``make bench`` (needs Chromium at /usr/bin/chromium and onnxruntime-web from
``make web-runtime``). The page measures each run with performance.now(); the Python side
times Session.run on the same input. Medians over repeated runs; not part of the tests.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
import torch
from _timing import per_call, table
from playwright.sync_api import sync_playwright
from sklearn.datasets import load_digits
from sklearn.ensemble import RandomForestClassifier

import onnxbridge as ob
from tests import models

warnings.filterwarnings("ignore")
ORT_WEB = os.environ.get("ONNXBRIDGE_ORT_WEB_DIST", ".venv/web/node_modules/onnxruntime-web/dist")


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


def _browser_ms(browser, folder: Path, values: np.ndarray, runs: int = 30) -> float:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    page = browser.new_page()
    try:
        page.goto(f"http://127.0.0.1:{server.server_address[1]}/index.html")
        page.wait_for_selector("#status[data-ready=true]", timeout=60_000)
        page.select_option("#mode-input", "json")
        page.fill("#json-input", json.dumps(values.tolist()))
        times = []
        for _ in range(runs):
            page.evaluate("document.querySelector('#latency').removeAttribute('data-ms')")
            page.click("#run")
            page.wait_for_selector("#latency[data-ms]")
            times.append(float(page.get_attribute("#latency", "data-ms")))
        return statistics.median(times[3:])
    finally:
        page.close()
        server.shutdown()


def _python_ms(art: ob.Artifact, values: np.ndarray, runs: int = 300) -> float:
    session = art.session(providers=["cpu"], threads=1)
    return statistics.median(per_call(lambda: session.run({"input": values}), runs)) * 1e3


def main() -> None:
    """Print the browser table."""
    data = load_digits()
    x = (data.images / 16.0).astype(np.float32)
    torch.manual_seed(0)
    cnn = models.fit(models.DigitsCNN(), x[:, None], data.target, epochs=2).eval()
    cases = {
        "digits CNN": (ob.export(cnn, torch.from_numpy(x[:1, None]), dynamic_axes="batch"), x[:1, None]),
        "MLP 8-16-3": (
            ob.export(models.mlp().eval(), torch.randn(1, 8), dynamic_axes="batch"),
            np.ones((1, 8), np.float32),
        ),
        "RandomForest (100 trees)": (
            ob.export(RandomForestClassifier(100, random_state=0).fit(data.data, data.target), data.data[:2]),
            data.data[:1].astype(np.float32),
        ),
    }
    rows = []
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu"])
        for name, (art, values) in cases.items():
            folder = Path(tmp) / name.replace(" ", "_")
            art.to_web(folder, runtime=ORT_WEB)
            web, python = _browser_ms(browser, folder, values), _python_ms(art, values)
            rows.append([name, f"{web:.3f} ms", f"{python:.3f} ms", f"{web / python:.1f}x"])
        browser.close()
    print("## onnxruntime-web in headless Chromium (wasm, 1 thread) vs onnxruntime in Python (1 thread), batch 1\n")
    print(table(["model", "browser (page's own timer)", "Python Session.run", "browser / Python"], rows))
    print(f"\nmeasured {time.strftime('%Y-%m-%d')}; the page's timer has the browser's coarse resolution (~0.1 ms)")


if __name__ == "__main__":
    main()
