"""Export time of vision models: ``onnxbridge.export`` against ``torch.onnx.export(dynamo=True)`` called directly.

Run in the vision venv (``make test-vision`` makes it): ``.venv-vision/bin/python
benchmarks/bench_vision_export.py [--rounds 3]``. Not part of the tests.

Same model, sample (batch 2, 224x224), dynamic batch axis and opset on both sides, random
weights. A torchvision detector cannot be traced by raw dynamo from ``model([image])``; its
baseline is ``torch.onnx.export`` of the flattened detector under onnxbridge's patches (the
exporter's own share of the work). The two run in alternating order, ``--rounds`` times; the table
gives medians and the median of the per-round ratio, and onnxbridge's phases
(``art.export_seconds``) from its last round, so that the difference is accounted for.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import table

warnings.filterwarnings("ignore")


def models() -> dict[str, object]:
    import timm
    import torchvision

    return {
        "torchvision resnet50": torchvision.models.resnet50(weights=None).eval(),
        "timm resnet50": timm.create_model("resnet50", pretrained=False).eval(),
        "timm resnet18": timm.create_model("resnet18", pretrained=False).eval(),
        "torchvision fcos (detector)": torchvision.models.detection.fcos_resnet50_fpn(
            weights=None, weights_backbone=None, min_size=320, max_size=512
        ).eval(),
    }


def detector_pair(model: object) -> tuple[object, object]:
    """Raw torch.onnx.export of the flattened detector under onnxbridge's patches, and ob.export of the detector."""
    import torch

    import onnxbridge as ob
    from onnxbridge.adapters import _torchvision_detection as detection

    images = [torch.rand(3, 240, 320)]

    def raw() -> float:
        start = time.perf_counter()
        flat = detection.flat_module(torch, model, ["boxes", "scores", "labels"])
        dims = ({1: torch.export.Dim("height", min=32), 2: torch.export.Dim("width", min=32)},)
        with detection.traceable(torch), torch.no_grad():
            torch.onnx.export(
                flat,
                tuple(images),
                dynamo=True,
                dynamic_shapes=(dims,),
                custom_translation_table=detection.translations(torch),
            )
        return time.perf_counter() - start

    def bridged() -> tuple[float, dict[str, float]]:
        start = time.perf_counter()
        art = ob.export(model, images)
        return time.perf_counter() - start, art.export_seconds

    return raw, bridged


def main() -> None:
    import torch

    import onnxbridge as ob
    from onnxbridge.adapters.pytorch import choose_opset

    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    sample = torch.randn(2, 3, 224, 224)
    opset = choose_opset(None)
    rows = []
    for name, model in models().items():
        raw_times, ours, ratios, phases = [], [], [], {}

        def raw(model: object = model) -> float:
            start = time.perf_counter()
            batch = torch.export.Dim("batch")
            torch.onnx.export(model, (sample,), dynamo=True, opset_version=opset, dynamic_shapes=({0: batch},))
            return time.perf_counter() - start

        def bridged(model: object = model) -> tuple[float, dict[str, float]]:
            start = time.perf_counter()
            art = ob.export(model, sample, dynamic_axes={"input": {0: "batch"}}, opset=opset)
            return time.perf_counter() - start, art.export_seconds

        if name.startswith("torchvision fcos"):  # raw dynamo cannot trace model([image]): give it what onnxbridge does
            raw, bridged = detector_pair(model)
        raw()  # warm-up: imports and first-call caches for both
        for round_ in range(args.rounds):
            pair = {}
            for side in ("raw", "ours") if round_ % 2 == 0 else ("ours", "raw"):
                if side == "raw":
                    pair[side] = raw()
                else:
                    pair[side], phases = bridged()
            raw_times.append(pair["raw"])
            ours.append(pair["ours"])
            ratios.append(pair["ours"] / pair["raw"])
        spent = ", ".join(f"{k} {v:.1f}" for k, v in phases.items() if k != "total")
        rows.append(
            [
                name,
                f"{statistics.median(raw_times):.1f}",
                f"{statistics.median(ours):.1f}",
                f"{statistics.median(ratios):.2f}x",
                spent,
            ]
        )
        print(f"  {name}: done", flush=True)
    print(f"\nbatch 2, 224x224, dynamic batch, opset {opset}, 1 thread, median of {args.rounds} alternating rounds")
    print(table(["model", "torch.onnx.export s", "onnxbridge.export s", "ratio", "onnxbridge's phases (s)"], rows))


if __name__ == "__main__":
    main()
