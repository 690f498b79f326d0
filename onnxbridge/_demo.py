"""End-to-end demo: train a CNN on scikit-learn's bundled digits, export, validate, run.

Run with ``python -m onnxbridge._demo`` (``make demo`` sets everything up first).
Uses only data that ships with scikit-learn; nothing is downloaded.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from onnxbridge._deps import require


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
    ratios = []
    for _ in range(rounds):
        times = []
        for fn in (slow, fast):
            start = time.perf_counter()
            for _ in range(calls):
                fn()
            times.append(time.perf_counter() - start)
            time.sleep(0.005)  # let worker threads stop spinning before the other side runs
        ratios.append(times[0] / times[1])
    return statistics.median(ratios)


def main() -> None:
    """Run the demo and print what it measured."""
    import onnxbridge as ob

    torch = require("torch", purpose="The demo")
    datasets = require("sklearn.datasets", purpose="The demo (bundled digits data)", extra="dev")
    selection = require("sklearn.model_selection", purpose="The demo", extra="dev")
    torch.set_num_threads(1)

    digits = datasets.load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None]  # (n, 1, 8, 8) in [0, 1]
    x_train, x_test, y_train, y_test = selection.train_test_split(
        x, digits.target.astype(np.int64), test_size=0.25, random_state=0, stratify=digits.target
    )
    print(f"digits: {len(x_train)} training and {len(x_test)} held-out 8x8 images (bundled with scikit-learn)")

    start = time.perf_counter()
    model = _train_cnn(torch, x_train, y_train)
    print(f"trained a small CNN in {time.perf_counter() - start:.1f} s")

    start = time.perf_counter()
    art = ob.export(model, torch.from_numpy(x_test[:1]), dynamic_axes="batch")
    print(f"exported with {art.exporter} (opset {art.opset}) in {time.perf_counter() - start:.1f} s")
    for note in art.export_notes:
        print(f"  note: {note}")

    print(art.validate(samples=[x_test[:64]]))

    session = art.session(providers=["cuda", "cpu"], threads=1)
    print(f"session providers (really active): {', '.join(session.providers)}")
    onnx_pred = session.run({"input": x_test})["output"].argmax(axis=1)
    with torch.no_grad():
        torch_pred = model(torch.from_numpy(x_test)).argmax(dim=1).numpy()
    print(
        f"held-out accuracy: torch {np.mean(torch_pred == y_test):.2%}, onnxruntime {np.mean(onnx_pred == y_test):.2%}"
    )
    print(f"predictions identical on {np.mean(onnx_pred == torch_pred):.2%} of held-out images")

    one = x_test[:1]
    one_tensor = torch.from_numpy(one)

    def torch_call() -> object:
        with torch.no_grad():
            return model(one_tensor)

    ratio = _median_ratio(torch_call, lambda: session.run({"input": one}))
    print(f"batch-1 latency: onnxruntime through onnxbridge is {ratio:.1f}x faster than torch eager (median ratio)")

    path = art.save("digits_cnn.onnx")
    reloaded = ob.load(path)
    print(f"saved {path} ({path.stat().st_size / 1024:.0f} KiB) and reloaded it: {reloaded!r}")
    print(f"reloaded validation: {'PASSED' if reloaded.validate().ok else 'FAILED'} against recorded reference outputs")


if __name__ == "__main__":
    main()
