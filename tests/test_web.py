"""Browser deployment, checked in a real headless Chromium driven by Playwright.

Needs Debian's Chromium (/usr/bin/chromium) and onnxruntime-web's dist folder (`npm install
onnxruntime-web`; `make test` puts it under the virtual environment and points
ONNXBRIDGE_ORT_WEB_DIST at it). Locally these tests skip when either is missing; in CI
(CI=true) they fail instead, so a missing install step cannot hide.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto

import onnxbridge as ob
from onnxbridge.checks import _web_check
from onnxbridge.deploy import _web
from tests.browser import ORT_WEB, SCREENSHOT, assert_matches, page
from tests.onnx_models import unary

pytestmark = pytest.mark.slow  # drives Chromium


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
    site = page(browser, art, tmp_path / "digits", title="Digits", preprocess={"scale": 1 / 255})
    try:
        assert site.page.locator("#input-input legend").text_content() == "input: float32 [batch, 1, 8, 8]"
        assert site.page.locator("#canvas-input").count() == 1  # an image input gets a canvas
        assert_matches(site, art, {"input": x[:3]})
        manifest = json.loads((tmp_path / "digits" / "manifest.json").read_text())
        assert manifest["runtime"]["version"] == "1.30.0"
        assert manifest["inputs"][0]["image"]["layout"] == "NCHW"
    finally:
        site.close()


def test_drawing_on_the_canvas_produces_a_prediction(browser, digits_cnn, tmp_path):
    art, _ = digits_cnn
    site = page(browser, art, tmp_path / "draw", title="Draw a digit", preprocess={"scale": 1 / 255})
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


def test_an_image_dropped_on_the_canvas_is_shown_and_classified(browser, digits_cnn, tmp_path):
    art, _ = digits_cnn
    site = page(browser, art, tmp_path / "drop", preprocess={"scale": 1 / 255}, labels=[str(d) for d in range(10)])
    try:
        site.page.evaluate(
            """async () => {
                const picture = new OffscreenCanvas(64, 64);
                const ctx = picture.getContext("2d");
                ctx.fillStyle = "#000"; ctx.fillRect(0, 0, 64, 64);
                ctx.fillStyle = "#fff"; ctx.fillRect(28, 8, 8, 48);  // a "1"
                const blob = await picture.convertToBlob({ type: "image/png" });
                const data = new DataTransfer();
                data.items.add(new File([blob], "one.png", { type: "image/png" }));
                document.querySelector("#canvas-input").dispatchEvent(
                    new DragEvent("drop", { dataTransfer: data, bubbles: true, cancelable: true }));
            }"""
        )
        site.page.wait_for_selector("#latency[data-ms]", timeout=30_000)
        assert site.page.input_value("#mode-input") == "image"
        listed = site.top_k("output")
        assert len(listed) == 5
        assert site.page.text_content("#argmax-output") == listed[0][0]
        # the canvas shows the dropped picture: its centre column is white
        centre = site.page.evaluate(
            "Array.from(document.querySelector('#canvas-input').getContext('2d').getImageData(112, 112, 1, 1).data)"
        )
        assert centre[:3] == [255, 255, 255]
        assert site.console == []
    finally:
        site.close()


def test_mlp_page_matches_python(browser, tmp_path):
    torch = pytest.importorskip("torch")
    from tests import models

    art = ob.export(models.mlp(), torch.randn(2, 8), dynamic_axes="batch")
    site = page(browser, art, tmp_path / "mlp")
    try:
        assert site.page.locator("#dim-input-0").count() == 1  # symbolic batch gets a number field
        assert_matches(site, art, {"input": np.random.default_rng(1).random((4, 8), dtype=np.float32)})
    finally:
        site.close()


def test_random_forest_page_matches_python(browser, tmp_path):
    pytest.importorskip("skl2onnx")
    from sklearn.datasets import load_digits
    from sklearn.ensemble import RandomForestClassifier

    x, y = load_digits(return_X_y=True)
    forest = RandomForestClassifier(n_estimators=30, random_state=0).fit(x, y)
    art = ob.export(forest, x[:4])
    site = page(browser, art, tmp_path / "forest")
    try:
        assert_matches(site, art, {"input": x[:5].astype(np.float32)})
    finally:
        site.close()


def test_unsupported_input_type_gets_the_documented_message(browser, tmp_path):
    model = unary("Identity", ["n"], elem=TensorProto.STRING, names=("text", "out"))
    with pytest.warns(UserWarning, match="cannot fill input"):
        site = page(browser, ob.export(model), tmp_path / "strings")
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
    monkeypatch.setattr(_web_check, "WASM_LIMIT", 10)  # stands in for a model past 2 GiB
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
        "module": "ort.wasm.min.mjs",
        "wasm_module": "ort.wasm.min.mjs",
        "backend": "wasm",
    }
    assert sorted(p.name for p in site.iterdir()) == [
        "app.js",
        "index.html",
        "manifest.json",
        "model.onnx",
        "worker.js",
    ]
    assert onnx.load(str(site / "model.onnx")).graph.node[0].op_type == "Neg"


def test_cli_web_command_writes_a_site(tmp_path):
    from typer.testing import CliRunner

    from onnxbridge.cli._app import app

    _tiny().save(tmp_path / "neg.onnx")
    result = CliRunner().invoke(app, ["web", str(tmp_path / "neg.onnx"), "-o", str(tmp_path / "site")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "site" / "index.html").is_file()
    shutil.rmtree(tmp_path / "site")


# -- results a person reads, a page that never freezes, threads, backends ---------------------------
def _iris_classifier():
    pytest.importorskip("skl2onnx")
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    data = load_iris()
    names = np.array(data.target_names)[data.target]  # string classes, as users often have them
    return ob.export(LogisticRegression(max_iter=500).fit(data.data, names), data.data[:2]), data.data


def test_a_classifier_page_lists_its_class_names_with_probabilities(browser, tmp_path):
    art, x = _iris_classifier()
    assert art.labels == {"probabilities": ["setosa", "versicolor", "virginica"]}
    site = page(browser, art, tmp_path / "iris")
    try:
        rows = x[[0, 60, 120]]
        site.run_json({"input": rows.astype(np.float32)})
        expected = art.session().run({"input": rows.astype(np.float32)})["probabilities"]
        for row in range(3):
            listed = site.top_k("probabilities", row)
            order = np.argsort(-expected[row])
            assert [label for label, _ in listed] == [art.labels["probabilities"][i] for i in order]
            np.testing.assert_allclose([p for _, p in listed], expected[row][order], rtol=1e-4, atol=1e-5)
        assert site.page.text_content("#softmax-probabilities") == "the outputs are probabilities"
        assert site.page.text_content("#argmax-probabilities") == "setosa, versicolor, virginica"
        assert site.console == []
    finally:
        site.close()


def test_logits_get_a_softmax_the_page_announces_and_user_labels(browser, tmp_path):
    torch = pytest.importorskip("torch")
    from tests import models

    art = ob.export(models.mlp(), torch.randn(2, 8), dynamic_axes="batch")  # 3 logits per row
    site = page(browser, art, tmp_path / "logits", labels=["cat", "dog", "bird"])
    try:
        x = np.random.default_rng(3).normal(size=(1, 8)).astype(np.float32)
        site.run_json({"input": x})
        logits = art.session().run({"input": x})["output"][0].astype(np.float64)
        softmax = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
        listed = site.top_k("output")
        assert [label for label, _ in listed] == [["cat", "dog", "bird"][i] for i in np.argsort(-softmax)]
        np.testing.assert_allclose(sorted((p for _, p in listed), reverse=True), np.sort(softmax)[::-1], rtol=1e-4)
        assert site.page.text_content("#softmax-output") == "softmax applied: the outputs are logits"
    finally:
        site.close()


def test_regression_outputs_are_shown_as_values(browser, tmp_path):
    pytest.importorskip("skl2onnx")
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import Ridge

    x, y = load_diabetes(return_X_y=True)
    art = ob.export(Ridge().fit(x, y), x[:2])
    site = page(browser, art, tmp_path / "ridge")
    try:
        got = site.run_json({"input": x[:3].astype(np.float32)})
        want = art.session().run({"input": x[:3].astype(np.float32)})
        [name] = want
        np.testing.assert_allclose(got[name].reshape(want[name].shape), want[name], rtol=1e-4)
        assert site.page.locator(".topk").count() == 0
        assert site.page.text_content(f"#output-{name} pre").startswith("values: ")
    finally:
        site.close()


def _slow_model(size: int = 1024, layers: int = 24) -> ob.Artifact:
    """A chain of MatMuls with one shared 4 MiB weight: seconds per run of a batch in WebAssembly."""
    from onnx import helper, numpy_helper

    weight = numpy_helper.from_array(
        (np.random.default_rng(0).normal(size=(size, size)) / np.sqrt(size)).astype(np.float32), "w"
    )
    nodes = [helper.make_node("MatMul", ["x" if i == 0 else f"h{i}", "w"], [f"h{i + 1}"]) for i in range(layers)]
    nodes.append(helper.make_node("Identity", [f"h{layers}"], ["y"]))
    graph = helper.make_graph(
        nodes,
        "slow",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", size])],
        [weight],
    )
    return ob.export(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8))


def test_the_page_stays_responsive_while_a_long_run_works_in_the_worker(browser, tmp_path):
    art = _slow_model()
    site = page(browser, art, tmp_path / "slow")
    try:
        assert site.page.locator("#load-progress").is_visible()  # past 4 MiB: the load shows its progress
        assert site.page.get_attribute("#load-progress", "max") == str(_size(tmp_path / "slow"))
        site.fill_json({"x": np.ones((256, 1024), np.float32)})
        before = int(site.page.text_content("#ticker"))
        site.page.click("#run")
        site.page.wait_for_selector("#latency[data-ms]", timeout=120_000)
        ticks = int(site.page.text_content("#ticker")) - before
        run_ms = float(site.page.get_attribute("#latency", "data-ms"))
        assert run_ms > 200  # a run long enough that a blocked page would be seen
        assert ticks >= 0.5 * run_ms / 50, f"{ticks} ticks of 50 ms during a {run_ms:.0f} ms run"
    finally:
        site.close()


def _size(folder: Path) -> int:
    return (folder / "model.onnx").stat().st_size


def test_a_served_site_is_cross_origin_isolated_and_runs_on_several_threads(browser, tmp_path):
    art, x = _iris_classifier()
    site = page(browser, art, tmp_path / "served", isolated=True)
    try:
        assert site.page.evaluate("crossOriginIsolated") is True
        threads = int(site.page.get_attribute("#backend", "data-threads"))
        assert threads > 1
        assert site.page.text_content("#threads").startswith(f"{threads} (the page is cross-origin isolated)")
        probabilities = site.run_json({"input": x[:2].astype(np.float32)})["probabilities"]
        np.testing.assert_allclose(probabilities, art.session().run(x[:2])["probabilities"], rtol=1e-4, atol=1e-5)
    finally:
        site.close()


def test_a_plain_static_server_gets_one_thread_and_the_page_says_why(browser, tmp_path):
    art, _ = _iris_classifier()
    site = page(browser, art, tmp_path / "plain")
    try:
        assert site.page.get_attribute("#backend", "data-threads") == "1"
        assert "not cross-origin isolated" in site.page.text_content("#threads")
    finally:
        site.close()


@pytest.mark.parametrize("backend", ["webgpu", "webgl"])
def test_an_unavailable_backend_falls_back_to_wasm_and_the_page_says_so(browser, tmp_path, backend):
    art, x = _iris_classifier()  # Chromium runs with --disable-gpu: no WebGPU adapter, no WebGL
    site = page(browser, art, tmp_path / backend, backend=backend)
    try:
        used = site.page.locator("#backend")
        assert (used.get_attribute("data-requested"), used.get_attribute("data-used")) == (backend, "wasm")
        assert used.text_content().startswith(f"wasm ({backend} was requested: ")
        assert used.text_content().endswith("fell back to wasm)")
        got = site.run_json({"input": x[:2].astype(np.float32)})["probabilities"]
        np.testing.assert_allclose(got, art.session().run(x[:2])["probabilities"], rtol=1e-4, atol=1e-5)
    finally:
        site.close()


def test_the_node_preflight_refuses_an_operator_onnxruntime_web_lacks_before_writing(tmp_path):
    from tests.browser import require_browser

    require_browser()
    from onnx import helper

    graph = helper.make_graph(
        [helper.make_node("ImageDecoder", ["encoded"], ["image"], name="decode")],
        "decoder",
        [helper.make_tensor_value_info("encoded", TensorProto.UINT8, ["n"])],
        [helper.make_tensor_value_info("image", TensorProto.UINT8, ["h", "w", 3])],
    )
    art = ob.export(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)], ir_version=9))
    with pytest.raises(ob.WebExportError, match=r"no kernel for ImageDecoder-20 \(ImageDecoder, node decode\)"):
        art.to_web(tmp_path / "site", runtime=str(ORT_WEB))
    assert list(tmp_path.iterdir()) == []


def test_labels_that_fit_no_output_are_an_input_error(tmp_path):
    torch = pytest.importorskip("torch")
    from tests import models

    art = ob.export(models.mlp(), torch.randn(2, 8), dynamic_axes="batch")
    with pytest.raises(ob.InputError, match=r"labels has 2 names, but no output has 2 columns"):
        art.to_web(tmp_path / "site", labels=["a", "b"], preflight=False)
    assert list(tmp_path.iterdir()) == []


def test_serve_web_sends_the_isolation_headers_and_refuses_a_folder_that_is_no_site(tmp_path):
    import urllib.request

    site = _tiny().to_web(tmp_path / "site", preflight=False)
    with ob.serve_web(site) as server:
        with urllib.request.urlopen(server.url) as response:
            headers = response.headers
        assert headers["Cross-Origin-Opener-Policy"] == "same-origin"
        assert headers["Cross-Origin-Embedder-Policy"] == "require-corp"
        with urllib.request.urlopen(server.url.replace("index.html", "worker.js")) as response:
            assert response.headers["Content-Type"] == "text/javascript"
    with pytest.raises(ob.InputError, match="not a site written by to_web"):
        ob.serve_web(tmp_path)


def test_the_web_command_serves_the_site_cross_origin_isolated_until_interrupted(tmp_path):
    import signal
    import subprocess
    import sys
    import urllib.request

    _tiny().save(tmp_path / "neg.onnx")
    command = [sys.executable, "-m", "onnxbridge", "web", str(tmp_path / "neg.onnx"), "-o", str(tmp_path / "site")]
    server = subprocess.Popen([*command, "--serve", "--port", "0", "--no-preflight"], stdout=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline()
        assert "(cross-origin isolated; Ctrl-C stops)" in line, line
        url = line.split("serving ")[1].split(" ")[0]
        with urllib.request.urlopen(url) as response:
            assert response.headers["Cross-Origin-Embedder-Policy"] == "require-corp"
            assert b'<span id="ticker">' in response.read()
    finally:
        server.send_signal(signal.SIGINT)
        assert server.wait(timeout=30) == 0
