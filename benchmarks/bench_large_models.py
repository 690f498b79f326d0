"""Large models: peak memory of export + validate, and the >2 GiB round trip, timed.

Run with ``python benchmarks/bench_large_models.py`` (``--quick`` leaves out the 2.5 GiB
model, which needs ~10 GB of RAM and ~2 minutes). Each size runs in a fresh process, so
its peaks are its own. Memory is reported as a ratio to the model's weights: the most
resident memory seen during export + validate, above what the process held before (the
source model built, the libraries loaded by a tiny warm-up export), divided by the bytes
of the weights. Not part of the tests.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _memory import PeakMemory
from _timing import table

GIB = 2**30
# Widths of a Linear(w,w) -> ReLU -> Linear(w,w) -> ReLU -> Linear(w,w/2) MLP: 10*w^2 bytes of weights.
SIZES = {"112 MB": 3350, "0.63 GiB": 8192, "2.5 GiB": 16384}


def child(width: int) -> dict[str, float]:
    """Export, validate, save, load and run one model; phases' seconds and peak bytes."""
    import numpy as np
    import torch

    import onnxbridge as ob

    warnings.filterwarnings("ignore")
    meter = PeakMemory()
    tiny = ob.export(torch.nn.Linear(4, 4), torch.randn(2, 4), dynamic_axes={"input": {0: "batch"}})
    tiny.validate()  # load torch.onnx, onnxscript, onnx and onnxruntime before measuring
    del tiny
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(width, width),
        torch.nn.ReLU(),
        torch.nn.Linear(width, width),
        torch.nn.ReLU(),
        torch.nn.Linear(width, width // 2),
    ).eval()
    sample = torch.randn(2, width)
    out: dict[str, float] = {"weights": sum(p.numel() * 4 for p in model.parameters())}
    with meter as m:
        start = time.perf_counter()
        art = ob.export(model, sample, dynamic_axes={"input": {0: "batch"}})
        out["export_s"] = time.perf_counter() - start
        start = time.perf_counter()
        ok = art.validate().ok
        out["validate_s"] = time.perf_counter() - start
    out["baseline"], out["peak"], out["valid"] = m.start, m.peak, float(ok)
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        path = art.save(Path(folder) / "model.onnx")
        out["save_s"] = time.perf_counter() - start
        out["external"] = float((Path(folder) / "model.onnx.data").exists())
        expected = art.session().run(sample.numpy())["output"]
        del art
        start = time.perf_counter()
        loaded = ob.load(path)
        out["load_s"] = time.perf_counter() - start
        start = time.perf_counter()
        session = loaded.session()
        out["session_s"] = time.perf_counter() - start
        start = time.perf_counter()
        got = session.run(sample.numpy())["output"]
        out["run_s"] = time.perf_counter() - start
        out["identical"] = float(np.array_equal(got, expected))
    meter.close()
    return out


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        print(json.dumps(child(int(sys.argv[2]))))
        return
    sizes = {k: v for k, v in SIZES.items() if not ("--quick" in sys.argv and v > 10000)}
    rows, trips = [], []
    for label, width in sizes.items():
        done = subprocess.run(
            [sys.executable, __file__, "--child", str(width)], capture_output=True, text=True, check=True
        )
        r = json.loads(done.stdout.strip().splitlines()[-1])
        added = (r["peak"] - r["baseline"]) / r["weights"]
        rows.append(
            [
                label,
                f"{r['baseline'] / GIB:.2f} GiB",
                f"{r['peak'] / GIB:.2f} GiB",
                f"{added:.2f}x",
                "yes" if r["valid"] else "NO",
            ]
        )
        trips.append(
            [label]
            + [f"{r[k]:.1f} s" for k in ("export_s", "validate_s", "save_s", "load_s", "session_s")]
            + [f"{r['run_s'] * 1000:.0f} ms", "yes" if r["external"] else "no", "yes" if r["identical"] else "NO"]
        )
        print(f"done: {label}", file=sys.stderr, flush=True)
    print("(a) Peak memory of export + validate, above the process before export, per byte of weights")
    print(table(["weights", "before", "peak", "added / weights", "validated"], rows))
    print()
    print("(b) Round trip: export, validate, save, load, new session, one run (batch 2)")
    print(
        table(
            ["weights", "export", "validate", "save", "load", "session", "run", "external data", "identical"],
            trips,
        )
    )


if __name__ == "__main__":
    main()
