"""Quantization benchmark: size, latency and accuracy of each mode vs its float parent.

Run with ``make bench`` (or ``python benchmarks/bench_quantization.py``). Latency ratios are
medians over interleaved rounds of the quantized and the float session in this process,
one onnxruntime thread each, spinning off. Not part of the tests.
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
import onnxruntime as ort
import torch
from _timing import compare, table
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import onnxbridge as ob
from tests import models

warnings.filterwarnings("ignore")
torch.set_num_threads(1)


def _session(art: ob.Artifact) -> ob.Session:
    options = ort.SessionOptions()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return art.session(providers=["cpu"], threads=1, options=options)


def _latency(parent: ob.Artifact, child: ob.Artifact, feeds: dict[str, np.ndarray]) -> float:
    a, b = _session(child), _session(parent)
    return compare(lambda: a.run(feeds), lambda: b.run(feeds), rounds=11, calls=50).ratio


def _digits_cnn() -> tuple[ob.Artifact, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    data = load_digits()
    x = (data.images / 16.0).astype(np.float32)[:, None]
    x_train, x_test, y_train, y_test = train_test_split(x, data.target, test_size=0.25, random_state=0)
    torch.manual_seed(0)
    model = models.fit(models.DigitsCNN(), x_train, y_train, epochs=6)
    model.eval()
    return ob.export(model, torch.from_numpy(x_train[:1]), dynamic_axes="batch"), x_train, x_test, y_train, y_test


def main() -> None:
    """Print the quantization table."""
    rows = []
    art, x_train, x_test, y_train, y_test = _digits_cnn()
    float_acc = np.mean(_session(art).run(x_test)["output"].argmax(1) == y_test)

    def qat_train(qmodel: torch.nn.Module) -> None:
        models.fit(qmodel, x_train, y_train, epochs=1, lr=1e-3)

    for mode, kwargs in (("static", {"calibration": x_train[:256]}), ("qat", {"train": qat_train})):
        q = art.quantize(mode, **kwargs)
        acc = np.mean(_session(q).run(x_test)["output"].argmax(1) == y_test)
        rows.append(
            [
                f"digits CNN ({mode})",
                f"{q.quantization.size_ratio:.2f}x",
                f"{_latency(art, q, {'input': x_test[:1]}):.2f}x",
                f"{_latency(art, q, {'input': x_test[:8]}):.2f}x",
                f"accuracy {float_acc:.2%} -> {acc:.2%}",
            ]
        )
    rng = np.random.default_rng(0)
    bert = models.bert(vocab=1000, hidden=256, layers=4, heads=4, positions=128)
    sample = {k: torch.from_numpy(v) for k, v in models.bert_inputs(rng, 1, 64, 1000).items()}
    art = ob.export(bert, sample, {name: {0: "batch", 1: "seq"} for name in sample})
    calibration = [models.bert_inputs(rng, 4, 64, 1000) for _ in range(8)]
    q = art.quantize("dynamic", calibration=calibration)
    cosine = min(a.cosine for a in q.quantization.accuracy if a.cosine is not None)
    feeds1, feeds8 = models.bert_inputs(rng, 1, 64, 1000), models.bert_inputs(rng, 8, 64, 1000)
    rows.append(
        [
            "BERT 4x256, seq 64 (dynamic)",
            f"{q.quantization.size_ratio:.2f}x",
            f"{_latency(art, q, feeds1):.2f}x",
            f"{_latency(art, q, feeds8):.2f}x",
            f"min output cosine {cosine:.4f}",
        ]
    )
    print("## Quantized vs float parent (targets: size <= 0.3x; transformer latency <= 0.6x; CNN static <= 0.8x)\n")
    print(table(["model (mode)", "file size", "latency batch 1", "latency batch 8", "accuracy"], rows))
    print(f"\ntorch {torch.__version__}, onnxruntime {ort.__version__}, measured {time.strftime('%Y-%m-%d')}")


if __name__ == "__main__":
    main()
