"""Core benchmarks: wrapper overhead, onnxruntime vs torch eager, export time.

Run with ``make bench`` (or ``python benchmarks/bench_core.py``). Every figure is a ratio
of two things measured side by side in this process, as the median over interleaved
rounds; absolute times on a shared, noisy machine mean little. Not part of the tests.
"""

from __future__ import annotations

import io
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import onnxruntime as ort
from _timing import compare, table

import onnxbridge as ob
from tests import models

warnings.filterwarnings("ignore")
torch.set_num_threads(1)


def _session(art: ob.Artifact) -> ob.Session:
    options = ort.SessionOptions()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return art.session(providers=["cpu"], threads=1, options=options)


class _ExporterClock:
    """Times the torch.onnx.export call inside onnxbridge.export, to isolate onnxbridge's own work."""

    def own_time(self, bridged, rounds: int = 7) -> float:
        original = torch.onnx.export
        spent: list[float] = []

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                spent.append(time.perf_counter() - start)

        own = []
        torch.onnx.export = timed
        try:
            for _ in range(rounds):
                spent.clear()
                start = time.perf_counter()
                bridged()
                own.append(time.perf_counter() - start - sum(spent))
        finally:
            torch.onnx.export = original
        return statistics.median(own)


def main() -> None:
    """Print the three benchmark tables."""
    cases = {
        "MLP 8-16-3": (models.mlp().eval(), torch.randn(1, 8)),
        "digits CNN": (models.DigitsCNN().eval(), torch.randn(1, 1, 8, 8)),
        "TransformerEncoder (2x32, seq 16)": (models.transformer_encoder().eval(), torch.randn(1, 16, 32)),
    }
    artifacts = {name: ob.export(m, x, dynamic_axes="batch") for name, (m, x) in cases.items()}

    print("## (a) onnxbridge Session.run vs raw InferenceSession.run, batch 1 (target: <= 1.10x or <= 2 us)\n")
    rows = []
    # float64 rows: onnxbridge casts (checking that nothing overflows); the raw call casts with astype, as a user would
    for name, dtype in (("MLP 8-16-3", "float32"), ("MLP 8-16-3", "float64"), ("digits CNN", "float32")):
        sess = _session(artifacts[name])
        raw = sess.ort_session
        x = cases[name][1].numpy().astype(dtype)
        feeds = {"input": x}

        def bare(r=raw, v=x):
            return r.run(None, {"input": v if v.dtype == "float32" else v.astype("float32")})

        result = compare(lambda s=sess, f=feeds: s.run(f), bare, calls=3000)
        overhead = (result.a_seconds - result.b_seconds) * 1e6
        rows.append(
            [
                f"{name}, {dtype} in",
                f"{result.b_seconds * 1e6:.1f} us",
                f"{result.a_seconds * 1e6:.1f} us",
                f"{result.ratio:.3f}x",
                f"{overhead:+.2f} us",
            ]
        )
    print(table(["model", "raw run", "Session.run", "ratio", "overhead"], rows))

    print("\n## (b) onnxruntime through onnxbridge vs torch eager, batch 1, 1 thread each (target: >= 2x)\n")
    rows = []
    for name, (model, x) in cases.items():
        sess = _session(artifacts[name])
        feeds = {"input": x.numpy()}

        def eager(m=model, t=x):
            with torch.no_grad():
                return m(t)

        result = compare(eager, lambda s=sess, f=feeds: s.run(f), calls=300)
        rows.append(
            [name, f"{result.a_seconds * 1e6:.0f} us", f"{result.b_seconds * 1e6:.0f} us", f"{result.ratio:.1f}x"]
        )
    print(table(["model", "torch eager", "onnxbridge session", "speed-up"], rows))

    print("\n## (c) export time: onnxbridge.export vs torch.onnx.export called directly (target: <= 1.10x)\n")
    rows = []
    inner = _ExporterClock()
    for name in ("MLP 8-16-3", "digits CNN"):
        model, x = cases[name]
        for exporter in ("dynamo", "torchscript"):
            dynamo = exporter == "dynamo"

            def direct(m=model, t=x, dyn=dynamo):
                if dyn:
                    batch = torch.export.Dim("batch")
                    torch.onnx.export(
                        m,
                        (t.repeat(2, *[1] * (t.dim() - 1)),),
                        dynamo=True,
                        verbose=False,
                        input_names=["input"],
                        output_names=["output"],
                        dynamic_shapes=({0: batch},),
                    )
                else:
                    torch.onnx.export(
                        m,
                        (t,),
                        io.BytesIO(),
                        dynamo=False,
                        input_names=["input"],
                        output_names=["output"],
                        dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
                    )

            def bridged(m=model, t=x, e=exporter):
                ob.export(m, t, dynamic_axes="batch", exporter=e)

            rounds, calls = (15, 1) if dynamo else (15, 10)
            result = compare(bridged, direct, rounds=rounds, calls=calls)
            own = inner.own_time(bridged)
            rows.append(
                [
                    name,
                    exporter,
                    f"{result.b_seconds * 1e3:.0f} ms",
                    f"{result.a_seconds * 1e3:.0f} ms",
                    f"{result.ratio:.2f}x",
                    f"{own * 1e3:.2f} ms",
                ]
            )
    headers = ["model", "exporter", "torch.onnx.export", "onnxbridge.export", "ratio", "onnxbridge's own time"]
    print(table(headers, rows))
    print(
        "\nonnxbridge's own time: median of (onnxbridge.export - the torch.onnx.export call inside it), "
        "which the exporter's run-to-run noise does not blur."
    )
    print(f"\ntorch {torch.__version__}, onnxruntime {ort.__version__}, measured {time.strftime('%Y-%m-%d')}")


if __name__ == "__main__":
    main()
