"""A real headless Chromium for the browser tests, driven by Playwright, and generated sites in it.

Needs Debian's Chromium (/usr/bin/chromium) and onnxruntime-web's dist folder (`npm install
onnxruntime-web`; `make test` puts it under the virtual environment and points
ONNXBRIDGE_ORT_WEB_DIST at it). Locally the tests skip when either is missing; in CI
(CI=true) they fail instead, so a missing install step cannot hide.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest

import onnxbridge as ob

CHROMIUM = Path(os.environ.get("ONNXBRIDGE_CHROMIUM", "/usr/bin/chromium"))
ORT_WEB = Path(os.environ.get("ONNXBRIDGE_ORT_WEB_DIST", "node_modules/onnxruntime-web/dist"))
SCREENSHOT = os.environ.get("ONNXBRIDGE_WEB_SCREENSHOT")  # where to keep the digits page's picture


def require_browser() -> None:
    problems = []
    if not CHROMIUM.is_file():
        problems.append(f"Chromium not found at {CHROMIUM} (apt-get install chromium)")
    if not (ORT_WEB / "ort.wasm.min.mjs").is_file():
        problems.append(f"onnxruntime-web not found at {ORT_WEB} (npm install onnxruntime-web)")
    try:
        import playwright  # noqa: F401
    except ImportError:
        problems.append("playwright is not installed (pip install playwright)")
    if problems:
        if os.environ.get("CI"):
            pytest.fail("; ".join(problems))
        pytest.skip("; ".join(problems))


def launch():
    """Debian's headless Chromium, without a GPU (so WebGPU and WebGL are unavailable), until closed."""
    require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
                "--disable-sync",
            ],
        )
        yield chromium
        chromium.close()


class Site:
    """A generated site served from 127.0.0.1 and opened in a fresh page."""

    def __init__(self, browser, folder: Path, *, isolated: bool = False, query: str = "") -> None:
        if isolated:  # onnxbridge's own server: cross-origin isolated
            self.server = ob.serve_web(folder)
            url = self.server.url
        else:  # any static server
            handler = functools.partial(_QuietHandler, directory=str(folder))
            self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
            threading.Thread(target=self.server.serve_forever, daemon=True).start()
            url = f"http://127.0.0.1:{self.server.server_address[1]}/index.html"
        self.page = browser.new_page()
        self.console: list[str] = []
        self.page.on(
            "console", lambda msg: self.console.append(f"{msg.type}: {msg.text}") if msg.type == "error" else None
        )
        self.page.on("pageerror", lambda err: self.console.append(f"pageerror: {err}"))
        self.page.goto(url + query)
        self.page.wait_for_selector("#status[data-ready=true]", timeout=120_000)

    def fill_json(self, values: dict[str, np.ndarray]) -> None:
        for name, array in values.items():
            self.page.select_option(f"#mode-{name}", "json")
            self.page.fill(f"#json-{name}", json.dumps(array.tolist()))
            for axis, size in enumerate(array.shape):
                field = self.page.locator(f"#dim-{name}-{axis}")
                if field.count():
                    field.fill(str(size))

    def top_k(self, output: str, row: int = 0) -> list[tuple[str, float]]:
        """The (label, probability) pairs the page lists for one row of an output, best first."""
        items = self.page.locator(f"#topk-{output}-{row} li").all()
        return [(item.get_attribute("data-label"), float(item.get_attribute("data-p"))) for item in items]

    def run_json(self, values: dict[str, np.ndarray], timeout: float = 30_000) -> dict[str, np.ndarray]:
        self.fill_json(values)
        self.page.click("#run")
        self.page.wait_for_selector("#latency[data-ms]", timeout=timeout)
        outputs = {}
        for block in self.page.locator("#outputs .output").all():
            name = block.get_attribute("id").removeprefix("output-")
            dims = json.loads(block.get_attribute("data-dims"))
            outputs[name] = np.array(json.loads(block.get_attribute("data-values"))).reshape(dims)
        return outputs

    def close(self) -> None:
        self.page.close()
        if isinstance(self.server, ob.WebServer):
            self.server.close()
        else:
            self.server.shutdown()
            self.server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


def page(browser, art: ob.Artifact, folder: Path, *, isolated: bool = False, query: str = "", **kwargs) -> Site:
    art.to_web(folder, runtime=str(ORT_WEB), **kwargs)
    return Site(browser, folder, isolated=isolated, query=query)


def assert_matches(site: Site, art: ob.Artifact, feeds: dict[str, np.ndarray]) -> None:
    got = site.run_json(feeds)
    expected = art.session().run(feeds)
    assert set(got) == set(expected)
    for name, value in expected.items():
        np.testing.assert_allclose(got[name], value.astype(np.float64), rtol=1e-4, atol=1e-4)
    assert float(site.page.get_attribute("#latency", "data-ms") or "nan") > 0  # a measured time, not a placeholder
    assert site.console == []
