"""A Keras CNN in the browser page: class names from ``to_web(labels=...)``, top-k right (TensorFlow in its own module)."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")
pytest.importorskip("tf2onnx")

import onnxbridge as ob  # noqa: E402
from tests.browser import page  # noqa: E402

pytestmark = pytest.mark.slow  # drives Chromium

DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def test_a_keras_cnn_page_lists_the_given_class_names_with_its_probabilities(browser, tmp_path):
    from sklearn.datasets import load_digits

    data = load_digits()
    x = (data.images / 16.0).astype(np.float32)[..., None]  # NHWC, as Keras has it
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
        keras.layers.Flatten(),
        keras.layers.Dense(10, activation="softmax"),
    ])  # fmt: skip
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x[:1200], data.target[:1200], epochs=3, verbose=0)
    art = ob.export(model, x[:2], dynamic_axes="batch")
    site = page(browser, art, tmp_path / "keras", labels=DIGITS, preprocess={"scale": 1 / 255})
    try:
        rows = x[1200:1203]
        [output] = art.output_names
        site.run_json({art.input_names[0]: rows})
        expected = art.session().run(rows)[output]
        for row in range(3):
            listed = site.top_k(output, row)
            order = np.argsort(-expected[row])[:5]
            assert [label for label, _ in listed] == [DIGITS[i] for i in order]
            np.testing.assert_allclose([p for _, p in listed], expected[row][order], rtol=1e-4, atol=1e-5)
        assert site.page.text_content(f"#softmax-{output}") == "the outputs are probabilities"
        assert site.console == []
    finally:
        site.close()
