"""End-to-end demo: train a CNN on scikit-learn's bundled digits, export, validate, run.

Run with ``python -m onnxbridge.cli._demo`` (``make demo`` sets everything up first).
Uses only data that ships with scikit-learn; nothing is downloaded.
"""

from __future__ import annotations

import os
import shutil
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from onnxbridge.core._deps import require
from onnxbridge.core._errors import MissingDependencyError
from onnxbridge.core._tables import text_table
from onnxbridge.core._timing import compare


def _train_cnn(torch: Any, x: np.ndarray, y: np.ndarray, epochs: int = 8) -> Any:
    nn = torch.nn
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Dropout(0.1),
        nn.Linear(32 * 4 * 4, 10),
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    data = torch.utils.data.TensorDataset(torch.from_numpy(x), torch.from_numpy(y))
    loader = torch.utils.data.DataLoader(data, batch_size=64, shuffle=True)
    model.train()
    for _ in range(epochs):
        for xb, yb in loader:
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(xb), yb).backward()
            optimizer.step()
    return model.eval()


def _median_ratio(slow: Callable[[], object], fast: Callable[[], object], rounds: int = 15, calls: int = 50) -> float:
    """Median over interleaved rounds of time(slow) / time(fast)."""
    return compare(slow, fast, rounds=rounds, calls=calls, pause=0.005).ratio


def _digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    datasets = require("sklearn.datasets", purpose="The demo (bundled digits data)", extra="dev")
    selection = require("sklearn.model_selection", purpose="The demo", extra="dev")
    digits = datasets.load_digits()
    x = (digits.images / 16.0).astype(np.float32)  # (n, 8, 8) in [0, 1]
    x_train, x_test, y_train, y_test = selection.train_test_split(
        x, digits.target.astype(np.int64), test_size=0.25, random_state=0, stratify=digits.target
    )
    return x_train, x_test, y_train, y_test


def _report(art: Any, samples: list[np.ndarray], started: float) -> None:
    print(f"  exported with {art.exporter} (opset {art.opset}) in {time.perf_counter() - started:.1f} s")
    for note in art.export_notes:
        print(f"  note: {note}")
    print("  " + str(art.validate(samples=samples)).replace("\n", "\n  "))


def _pytorch(x_train: np.ndarray, x_test: np.ndarray, y_train: np.ndarray, y_test: np.ndarray) -> list[list[str]]:
    import onnxbridge as ob

    torch = require("torch", purpose="The demo's PyTorch part")
    torch.set_num_threads(1)
    x_train, x_test = x_train[:, None], x_test[:, None]  # NCHW
    print("\n== PyTorch: CNN on digits ==")
    start = time.perf_counter()
    model = _train_cnn(torch, x_train, y_train)
    print(f"  trained in {time.perf_counter() - start:.1f} s")
    start = time.perf_counter()
    art = ob.export(model, torch.from_numpy(x_test[:1]), dynamic_axes="batch")
    _report(art, [x_test[:64]], start)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ob.ProviderFallbackWarning)
        session = art.session(providers=["cuda", "cpu"], threads=1)
    for warning in caught:
        print(f"  warning: {warning.message}")
    print(f"  session providers (really active): {', '.join(session.providers)}")
    onnx_pred = session.run({"input": x_test})["output"].argmax(axis=1)
    with torch.no_grad():
        torch_pred = model(torch.from_numpy(x_test)).argmax(dim=1).numpy()
    one, one_tensor = x_test[:1], torch.from_numpy(x_test[:1])

    def eager() -> object:
        with torch.no_grad():
            return model(one_tensor)

    ratio = _median_ratio(eager, lambda: session.run({"input": one}))
    path = art.save("digits_cnn.onnx")
    reloaded = ob.load(path)
    print(
        f"  saved {path} and reloaded it: recorded-reference validation "
        f"{'PASSED' if reloaded.validate().ok else 'FAILED'}"
    )
    site = Path("digits_web")
    if (site / "manifest.json").is_file():  # the previous run's page: replace it
        shutil.rmtree(site)
    runtime = os.environ.get("ONNXBRIDGE_ORT_WEB_DIST", "cdn")
    art.to_web(site, title="Draw a digit", runtime=runtime, preprocess={"scale": 1 / 255})
    print(
        f"  wrote a web page to {site}/ (onnxruntime-web from {runtime}); serve it with "
        f"`python -m http.server -d {site}` and draw a digit at http://127.0.0.1:8000/"
    )
    print("\n== PyTorch CNN, static int8 quantization ==")
    quantized = art.quantize("static", calibration=x_train[:256])
    report = quantized.quantization
    assert report is not None
    print("  " + str(report).replace("\n", "\n  "))
    int8_pred = quantized.session(threads=1).run({"input": x_test})["output"].argmax(axis=1)
    int8_row = [
        "PyTorch CNN int8 (static)" + (": float kept, int8 was slower here" if report.kept_float else ""),
        "-",
        f"{np.mean(int8_pred == y_test):.2%}",
        f"{np.mean(int8_pred == torch_pred):.2%}",
        f"{report.size_ratio:.2f}x file size",
    ]
    return [
        [
            "PyTorch CNN",
            f"{np.mean(torch_pred == y_test):.2%}",
            f"{np.mean(onnx_pred == y_test):.2%}",
            f"{np.mean(onnx_pred == torch_pred):.2%}",
            f"{ratio:.1f}x vs torch eager",
        ],
        int8_row,
    ]


def _keras(x_train: np.ndarray, x_test: np.ndarray, y_train: np.ndarray, y_test: np.ndarray) -> list[list[str]]:
    import os

    import onnxbridge as ob

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    tf = require("tensorflow", purpose="The demo's Keras part")
    import keras

    tf.config.threading.set_intra_op_parallelism_threads(1)
    x_train, x_test = x_train[..., None], x_test[..., None]  # NHWC
    print("\n== Keras 3 (TensorFlow backend): the same CNN on digits ==")
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(16, 3, padding="same"),
            keras.layers.BatchNormalization(),
            keras.layers.ReLU(),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dropout(0.1),
            keras.layers.Dense(10),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    start = time.perf_counter()
    model.fit(x_train, y_train, batch_size=64, epochs=12, verbose=0)
    print(f"  trained in {time.perf_counter() - start:.1f} s")
    start = time.perf_counter()
    art = ob.export(model, x_test[:1])  # Keras's own None batch dimension stays dynamic
    _report(art, [x_test[:64]], start)
    session = art.session(threads=1)
    onnx_pred = session.run(x_test)["output"].argmax(axis=1)
    keras_pred = np.asarray(model(x_test, training=False)).argmax(axis=1)
    graph = tf.function(lambda t: model(t, training=False))
    one, one_tensor = x_test[:1], tf.constant(x_test[:1])
    ratio = _median_ratio(lambda: graph(one_tensor), lambda: session.run(one))
    return [
        [
            "Keras CNN",
            f"{np.mean(keras_pred == y_test):.2%}",
            f"{np.mean(onnx_pred == y_test):.2%}",
            f"{np.mean(onnx_pred == keras_pred):.2%}",
            f"{ratio:.1f}x vs tf.function",
        ]
    ]


def _forest(x_train: np.ndarray, x_test: np.ndarray, y_train: np.ndarray, y_test: np.ndarray) -> list[list[str]]:
    import onnxbridge as ob

    ensemble = require("sklearn.ensemble", purpose="The demo's scikit-learn part", extra="sklearn")
    flat_train, flat_test = x_train.reshape(len(x_train), -1), x_test.reshape(len(x_test), -1)
    print("\n== scikit-learn: random forest (100 trees) on digits ==")
    start = time.perf_counter()
    model = ensemble.RandomForestClassifier(n_estimators=100, random_state=0, n_jobs=1).fit(flat_train, y_train)
    print(f"  trained in {time.perf_counter() - start:.1f} s")
    start = time.perf_counter()
    art = ob.export(model, flat_train[:8])
    _report(art, [flat_test], start)
    session = art.session(threads=1)
    onnx_pred = session.run(flat_test)["label"]
    source_pred = model.predict(flat_test)
    one = flat_test[:1]
    ratio = _median_ratio(lambda: model.predict_proba(one), lambda: session.run(one), calls=20)
    return [
        [
            "RandomForest",
            f"{np.mean(source_pred == y_test):.2%}",
            f"{np.mean(onnx_pred == y_test):.2%}",
            f"{np.mean(onnx_pred == source_pred):.2%}",
            f"{ratio:.0f}x vs predict_proba",
        ]
    ]


def main() -> None:
    """Run the demo and print what it measured."""
    x_train, x_test, y_train, y_test = _digits()
    print(f"digits: {len(x_train)} training and {len(x_test)} held-out 8x8 images (bundled with scikit-learn)")
    rows = []
    for part in (_pytorch, _keras, _forest):
        try:
            rows += part(x_train, x_test, y_train, y_test)
        except MissingDependencyError as err:
            print(f"\n(skipped {part.__name__.strip('_')}: {err})")
    header = ["model", "source accuracy", "onnxruntime accuracy", "same predictions", "speed / size"]
    print("\n== Summary (held-out digits) ==")
    print("\n".join(text_table(header, rows)))


if __name__ == "__main__":
    main()
