"""Browser deployment, checked in a real headless Chromium driven by Playwright.

Needs Debian's Chromium (/usr/bin/chromium) and onnxruntime-web's dist folder (`npm install
onnxruntime-web`; `make test` puts it under the virtual environment and points
ONNXBRIDGE_ORT_WEB_DIST at it). Locally these tests skip when either is missing; in CI
(CI=true) they fail instead, so a missing install step cannot hide.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import shutil
import threading
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto

import onnxbridge as ob
from onnxbridge import _web
from tests.onnx_models import unary

CHROMIUM = Path(os.environ.get("ONNXBRIDGE_CHROMIUM", "/usr/bin/chromium"))
ORT_WEB = Path(os.environ.get("ONNXBRIDGE_ORT_WEB_DIST", "node_modules/onnxruntime-web/dist"))
SCREENSHOT = os.environ.get("ONNXBRIDGE_WEB_SCREENSHOT")  # where to keep the digits page's picture


def _require_browser() -> None:
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


@pytest.fixture(scope="module")
def browser():
    _require_browser()
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


class _Site:
    """A generated site served from 127.0.0.1 and opened in a fresh page."""

    def __init__(self, browser, folder: Path) -> None:
        handler = functools.partial(_QuietHandler, directory=str(folder))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.page = browser.new_page()
        self.console: list[str] = []
        self.page.on(
            "console", lambda msg: self.console.append(f"{msg.type}: {msg.text}") if msg.type == "error" else None
        )
        self.page.on("pageerror", lambda err: self.console.append(f"pageerror: {err}"))
        self.page.goto(f"http://127.0.0.1:{self.server.server_address[1]}/index.html")
        self.page.wait_for_selector("#status[data-ready=true]", timeout=60_000)

    def run_json(self, values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        for name, array in values.items():
            self.page.select_option(f"#mode-{name}", "json")
            self.page.fill(f"#json-{name}", json.dumps(array.tolist()))
            for axis, size in enumerate(array.shape):
                field = self.page.locator(f"#dim-{name}-{axis}")
                if field.count():
                    field.fill(str(size))
        self.page.click("#run")
        self.page.wait_for_selector("#outputs .output[data-values]", timeout=30_000)
        outputs = {}
        for block in self.page.locator("#outputs .output").all():
            name = block.get_attribute("id").removeprefix("output-")
            dims = json.loads(block.get_attribute("data-dims"))
            outputs[name] = np.array(json.loads(block.get_attribute("data-values"))).reshape(dims)
        return outputs

    def close(self) -> None:
        self.page.close()
        self.server.shutdown()
        self.server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


def _page(browser, art: ob.Artifact, folder: Path, **kwargs) -> _Site:
    art.to_web(folder, runtime=str(ORT_WEB), **kwargs)
    return _Site(browser, folder)


def _assert_matches(site: _Site, art: ob.Artifact, feeds: dict[str, np.ndarray]) -> None:
    got = site.run_json(feeds)
    expected = art.session().run(feeds)
    assert set(got) == set(expected)
    for name, value in expected.items():
        np.testing.assert_allclose(got[name], value.astype(np.float64), rtol=1e-4, atol=1e-4)
    assert float(site.page.get_attribute("#latency", "data-ms") or "nan") > 0  # a measured time, not a placeholder
    assert site.console == []


@pytest.fixture(scope="module")
def digits_cnn():
    torch = pytest.importorskip("torch")
    from sklearn.datasets import load_digits

    from tests import models

    data = load_digits()
    x = (data.images / 16.0).astype(np.float32)[:, None]
    torch.manual_seed(0)
    model = models.fit(models.DigitsCNN(), x, data.target, epochs=4)
    model.eval()
    return ob.export(model, torch.from_numpy(x[:1]), dynamic_axes="batch"), x


def test_digits_page_loads_shows_its_input_and_matches_python(browser, digits_cnn, tmp_path):
    art, x = digits_cnn
    site = _page(browser, art, tmp_path / "digits", title="Digits", preprocess={"scale": 1 / 255})
    try:
        assert site.page.locator("#input-input legend").text_content() == "input: float32 [batch, 1, 8, 8]"
        assert site.page.locator("#canvas-input").count() == 1  # an image input gets a canvas
        _assert_matches(site, art, {"input": x[:3]})
        manifest = json.loads((tmp_path / "digits" / "manifest.json").read_text())
        assert manifest["runtime"]["version"] == "1.30.0"
        assert manifest["inputs"][0]["image"]["layout"] == "NCHW"
    finally:
        site.close()


def test_drawing_on_the_canvas_produces_a_prediction(browser, digits_cnn, tmp_path):
    art, _ = digits_cnn
    site = _page(browser, art, tmp_path / "draw", title="Draw a digit", preprocess={"scale": 1 / 255})
    try:
        site.page.select_option("#mode-input", "image")
        box = site.page.locator("#canvas-input").bounding_box()
        site.page.mouse.move(box["x"] + 112, box["y"] + 30)
        site.page.mouse.down()
        site.page.mouse.move(box["x"] + 118, box["y"] + 195, steps=12)
        site.page.mouse.up()
        site.page.wait_for_selector("#argmax-output", timeout=30_000)
        assert site.page.text_content("#argmax-output").startswith("argmax: ")
        assert site.console == []
        picture = Path(SCREENSHOT) if SCREENSHOT else tmp_path / "digits.png"
        site.page.screenshot(path=str(picture), full_page=True)
        assert picture.stat().st_size > 10_000
    finally:
        site.close()


def test_mlp_page_matches_python(browser, tmp_path):
    torch = pytest.importorskip("torch")
    from tests import models

    art = ob.export(models.mlp(), torch.randn(2, 8), dynamic_axes="batch")
    site = _page(browser, art, tmp_path / "mlp")
    try:
        assert site.page.locator("#dim-input-0").count() == 1  # symbolic batch gets a number field
        _assert_matches(site, art, {"input": np.random.default_rng(1).random((4, 8), dtype=np.float32)})
    finally:
        site.close()


def test_random_forest_page_matches_python(browser, tmp_path):
    pytest.importorskip("skl2onnx")
    from sklearn.datasets import load_digits
    from sklearn.ensemble import RandomForestClassifier

    x, y = load_digits(return_X_y=True)
    forest = RandomForestClassifier(n_estimators=30, random_state=0).fit(x, y)
    art = ob.export(forest, x[:4])
    site = _page(browser, art, tmp_path / "forest")
    try:
        _assert_matches(site, art, {"input": x[:5].astype(np.float32)})
    finally:
        site.close()


def test_unsupported_input_type_gets_the_documented_message(browser, tmp_path):
    model = unary("Identity", ["n"], elem=TensorProto.STRING, names=("text", "out"))
    with pytest.warns(UserWarning, match="cannot fill input"):
        site = _page(browser, ob.export(model), tmp_path / "strings")
    try:
        message = site.page.text_content("#input-text .unsupported")
        assert "has type string, which this page cannot fill" in message
        site.page.click("#run")
        assert "cannot fill" in site.page.text_content("#error")
    finally:
        site.close()


# -- refusals before anything is written (no browser needed) ---------------------------------------
def _tiny() -> ob.Artifact:
    return ob.export(unary("Neg", ["n"]))


def test_model_too_large_for_webassembly_is_refused_and_nothing_written(tmp_path, monkeypatch):
    monkeypatch.setattr(_web, "WASM_LIMIT", 10)  # stands in for a model past 2 GiB
    with pytest.raises(ob.WebExportError, match="WebAssembly memory"):
        _tiny().to_web(tmp_path / "site")
    assert list(tmp_path.iterdir()) == []


def test_operators_outside_onnxruntime_web_are_refused(tmp_path):
    art = _tiny()
    art.model.graph.node[0].domain = "com.example.custom"
    with pytest.raises(ob.WebExportError, match=r"com\.example\.custom"):
        art.to_web(tmp_path / "site")
    assert list(tmp_path.iterdir()) == []


def test_bad_runtime_folder_and_non_empty_target_are_refused(tmp_path):
    with pytest.raises(ob.InputError, match="onnxruntime-web's dist folder"):
        _tiny().to_web(tmp_path / "site", runtime=str(tmp_path))
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file.txt").write_text("keep me")
    with pytest.raises(ob.InputError, match="not an empty folder"):
        _tiny().to_web(tmp_path / "taken")
    assert (tmp_path / "taken" / "file.txt").read_text() == "keep me"


def test_cdn_site_pins_the_runtime_version(tmp_path):
    site = _tiny().to_web(tmp_path / "cdn-site", title="Negation")
    manifest = json.loads((site / "manifest.json").read_text())
    assert manifest["runtime"] == {
        "kind": "cdn",
        "version": _web.ORT_WEB_VERSION,
        "base": f"https://cdn.jsdelivr.net/npm/onnxruntime-web@{_web.ORT_WEB_VERSION}/dist/",
    }
    assert sorted(p.name for p in site.iterdir()) == ["app.js", "index.html", "manifest.json", "model.onnx"]
    assert onnx.load(str(site / "model.onnx")).graph.node[0].op_type == "Neg"


def test_cli_web_command_writes_a_site(tmp_path):
    from typer.testing import CliRunner

    from onnxbridge._cli import app

    _tiny().save(tmp_path / "neg.onnx")
    result = CliRunner().invoke(app, ["web", str(tmp_path / "neg.onnx"), "-o", str(tmp_path / "site")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "site" / "index.html").is_file()
    shutil.rmtree(tmp_path / "site")
