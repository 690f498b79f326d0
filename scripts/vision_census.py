"""Census of vision models: onnxbridge vs raw torch.onnx (dynamo) vs each family's own exporter.

Run it in the vision venv (``make test-vision`` makes ``.venv-vision``): torchvision, timm and
ultralytics, random weights (nothing downloaded). Each model runs in a process of its own with a
time limit and goes through three exporters:

1. **onnxbridge**: ``ob.export(model, sample, dynamic_axes=...)`` then ``art.validate()``
   (detectors: ``ob.export(model, [image])``);
2. **raw dynamo**: ``torch.onnx.export(model, sample, dynamo=True, dynamic_shapes=...)`` with the
   same dynamic axes;
3. **the family's exporter**: timm's ``timm.utils.onnx.onnx_export``, the recipe of torchvision's
   ``test/test_onnx.py`` (the TorchScript exporter; detectors at opset 11 with dynamic image
   axes), ultralytics' ``model.export(format="onnx", dynamic=True)``.

Every graph then gets the same independent check on inputs none of them was exported with
(classifiers: a batch of 3; detectors: a 480x256 image, detections matched as sets, masks and
keypoints allowed to move by a pixel as validation allows; flow: 136x224 frames): onnxruntime vs
torch at rtol 1e-3, atol 1e-4.

Outcomes: ``ok``; ``noise`` (onnxbridge only: validation passed and said some outputs were
within float noise); ``validate-fail`` (onnxbridge's validation failed; the independent check
decides whether it was right to); ``wrong`` (the graph exported and the independent check
failed); ``tied scores`` (a detector whose random weights give detections equal scores, so that
which of them survive the cut is arbitrary and no comparison means anything); ``crash`` (the
exporter raised, or the time limit); ``refused`` (a typed onnxbridge
error naming its cause); ``-`` (no family exporter).

``python scripts/vision_census.py`` prints the table; ``--write`` also replaces it in
docs/vision.md; ``--models a,b`` runs some models only; ``--jobs N`` runs N at once.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "vision.md"
START, END = "<!-- census:start -->", "<!-- census:end -->"
TIMEOUT = 900
TIMM = [
    "resnet18", "resnet50", "efficientnet_b0", "mobilenetv3_small_100", "mobilenetv4_conv_small", "convnext_atto",
    "vit_tiny_patch16_224", "deit_tiny_patch16_224", "swin_tiny_patch4_window7_224", "regnetx_002", "densenet121",
    "ghostnet_100", "rexnet_100", "levit_128s", "mobilevit_xxs", "efficientformer_l1", "poolformer_s12",
    "maxvit_tiny_tf_224", "coatnet_nano_rw_224", "edgenext_xx_small", "fastvit_t8", "repvgg_a0", "cspdarknet53",
    "dla34", "hrnet_w18_small", "mixer_s16_224", "eva02_tiny_patch14_224", "tf_efficientnetv2_b0",
]  # fmt: skip
TORCHVISION = [
    "classification/resnet18", "classification/mobilenet_v3_small", "classification/efficientnet_b0",
    "classification/convnext_tiny", "classification/vit_b_16", "classification/swin_t",
    "segmentation/lraspp_mobilenet_v3_large", "segmentation/deeplabv3_mobilenet_v3_large", "segmentation/fcn_resnet50",
    "video/r3d_18", "video/s3d", "flow/raft_small",
    "detection/fasterrcnn_mobilenet_v3_large_320_fpn", "detection/retinanet_resnet50_fpn", "detection/fcos_resnet50_fpn",
    "detection/ssdlite320_mobilenet_v3_large", "detection/maskrcnn_resnet50_fpn", "detection/keypointrcnn_resnet50_fpn",
]  # fmt: skip
ULTRALYTICS = ["yolov8n.yaml", "yolo11n.yaml", "yolo11n-seg.yaml", "yolo11n-pose.yaml"]
MODELS = [f"timm/{name}" for name in TIMM] + [f"torchvision/{name}" for name in TORCHVISION]
MODELS += [f"ultralytics/{name}" for name in ULTRALYTICS]


def build(name: str) -> tuple[Any, Any, dict[str, Any], Any]:
    """The model (eval, random weights), its sample, onnxbridge's dynamic axes and a held-out input."""
    import torch

    family, _, rest = name.partition("/")
    torch.manual_seed(0)
    image = torch.rand(1, 3, 224, 224)
    batch = {"input": {0: "batch"}}  # onnxbridge names a lone input "input"
    if family == "timm":
        import timm

        model = timm.create_model(rest, pretrained=False).eval()
        size = model.pretrained_cfg.get("input_size", (3, 224, 224))
        return model, torch.rand(1, *size), batch, torch.rand(3, *size)
    if family == "ultralytics":
        from ultralytics import YOLO

        model = YOLO(rest).model.eval()
        return model, torch.rand(1, 3, 320, 320), batch, torch.rand(3, 3, 320, 320)
    import torchvision

    kind, _, builder = rest.partition("/")
    module = {
        "classification": torchvision.models,
        "segmentation": torchvision.models.segmentation,
        "video": torchvision.models.video,
        "flow": torchvision.models.optical_flow,
        "detection": torchvision.models.detection,
    }[kind]
    random = {"weights": None} if kind != "segmentation" else {"weights": None, "weights_backbone": None}
    if kind == "detection":
        model = getattr(module, builder)(weights=None, weights_backbone=None).eval()
        return model, [torch.rand(3, 240, 320)], {}, [torch.rand(3, 480, 256)]
    model = getattr(module, builder)(**random).eval()
    if kind == "video":
        return model, torch.rand(1, 3, 8, 112, 112), batch, torch.rand(3, 3, 8, 112, 112)
    if kind == "flow":
        frames = (torch.rand(1, 3, 128, 160), torch.rand(1, 3, 128, 160))
        axes = {n: {2: "height", 3: "width"} for n in ("image1", "image2")}
        return model, frames, axes, (torch.rand(1, 3, 136, 224), torch.rand(1, 3, 136, 224))
    return model, image, batch, torch.rand(3, 3, 224, 224)


def flatten(torch: Any, value: Any) -> list[Any]:
    """Outputs as onnxruntime lists them: tensors of nested tuples, lists and dicts, in order."""
    if isinstance(value, torch.Tensor):
        return [value.detach().numpy()]
    if isinstance(value, dict):
        return [a for item in value.values() for a in flatten(torch, item)]
    if isinstance(value, list | tuple):
        return [a for item in value for a in flatten(torch, item)]
    return []


def independent_check(path: str, model: Any, held_out: Any, detector: bool) -> str:
    """``ok`` or ``wrong``: onnxruntime on ``held_out`` against torch, rtol 1e-3 / atol 1e-4."""
    import numpy as np
    import onnxruntime
    import torch

    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    inputs = list(held_out) if isinstance(held_out, list | tuple) else [held_out]
    names = [i.name for i in session.get_inputs()]
    with torch.no_grad():
        want = model(held_out) if detector else model(*inputs)
    got = session.run(None, {n: t.numpy() for n, t in zip(names, inputs, strict=False)})
    if detector:  # as validation compares them: matched as sets, masks and keypoints within a pixel
        from onnxbridge.checks import _detections

        keys = list(want[0])
        named = {k: want[0][k].numpy() for k in keys}
        aligned = _detections.align(dict(zip(keys, got, strict=False)), named, 1e-3, 1e-4)
        for key in keys:
            close = aligned[key].shape == named[key].shape and np.allclose(aligned[key], named[key], 1e-3, 1e-4)
            if not close and not _detections.placed_within_noise(key, aligned, named, 1e-3, 1e-4):
                scores = named["scores"]
                return "tied scores" if len(np.unique(scores)) < len(scores) else "wrong"
        return "ok"
    else:
        reference = flatten(torch, want)
    if len(got) < len(reference):  # ultralytics' exporter keeps the first output only; the rest is training's
        reference = reference[: len(got)] if name_has_one_output(path) else reference
    if len(got) < len(reference):
        return "wrong"
    for a, b in zip(got, reference, strict=False):
        if a.shape != b.shape or not np.allclose(a, b, rtol=1e-3, atol=1e-4):
            return "wrong"
    return "ok"


def name_has_one_output(path: str) -> bool:
    """Whether the graph is ultralytics' (its metadata says so) and returns one output."""
    import onnx

    model = onnx.load(path, load_external_data=False)
    return len(model.graph.output) == 1 and any(p.key == "stride" for p in model.metadata_props)


def run_one(name: str) -> dict[str, Any]:
    """The three exporters on one model, each followed by the independent check."""
    import warnings

    import torch

    import onnxbridge as ob

    warnings.filterwarnings("ignore")
    model, sample, axes, held_out = build(name)
    detector = name.startswith("torchvision/detection/")
    result: dict[str, Any] = {"model": name}
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        try:
            art = ob.export(model, sample, dynamic_axes=axes or None)
            result["onnxbridge seconds"] = round(time.perf_counter() - start, 1)
            report = art.validate(raise_on_failure=False)
            path = os.path.join(folder, "ob.onnx")
            art.save(path)
            check = independent_check(path, model, held_out, detector)
            verdict = ("noise" if report.noise else "ok") if report.ok else "validate-fail"
            result["onnxbridge"] = verdict if check == "ok" else f"{verdict}, {check}"
        except ob.OnnxBridgeError as err:
            result["onnxbridge"] = f"refused ({type(err).__name__})"
        except Exception as err:  # noqa: BLE001 - the census records every failure
            result["onnxbridge"] = f"crash ({type(err).__name__})"
        start = time.perf_counter()
        try:
            path = os.path.join(folder, "raw.onnx")
            args = tuple(sample) if isinstance(sample, tuple) else (sample,)
            shapes = None
            if axes and not detector:
                shapes = tuple({k: torch.export.Dim.AUTO for k in axes[n]} for n in axes)
            torch.onnx.export(model, args, path, dynamo=True, dynamic_shapes=shapes, verbose=False)
            result["raw seconds"] = round(time.perf_counter() - start, 1)
            result["raw dynamo"] = independent_check(path, model, held_out, detector)
        except Exception as err:  # noqa: BLE001
            result["raw dynamo"] = f"crash ({type(err).__name__})"
        try:
            result["family"] = family_export(name, model, sample, held_out, folder, detector)
        except Exception as err:  # noqa: BLE001
            result["family"] = f"crash ({type(err).__name__})"
    return result


def family_export(name: str, model: Any, sample: Any, held_out: Any, folder: str, detector: bool) -> str:
    """The family's own exporter, then the independent check; ``-`` where the family has none."""
    import torch

    path = os.path.join(folder, "family.onnx")
    family = name.partition("/")[0]
    if family == "timm":
        from timm.utils.onnx import onnx_export

        onnx_export(model, path, example_input=sample, check=False)
    elif family == "ultralytics":
        from ultralytics import YOLO

        yolo = YOLO(name.partition("/")[2])
        yolo.model = model
        path = yolo.export(format="onnx", dynamic=True, simplify=False, imgsz=320, verbose=False)
    elif name.startswith("torchvision/flow/"):
        return "-"
    elif detector:
        with torch.no_grad():
            keys = list(model(sample)[0])
        torch.onnx.export(
            model,
            (sample,),
            path,
            dynamo=False,
            opset_version=11,
            input_names=["images"],
            output_names=keys,
            dynamic_axes={"images": [1, 2], **{k: [0] for k in keys}},
        )
    else:  # torchvision's test_onnx.py: the TorchScript exporter, dynamic batch
        torch.onnx.export(model, (sample,), path, dynamo=False, input_names=["x"], dynamic_axes={"x": [0]})
    return independent_check(path, model, held_out, detector)


def run(name: str) -> dict[str, Any]:
    """``run_one`` in a child process, with the time limit."""
    try:
        done = subprocess.run(
            [sys.executable, __file__, "--one", name], capture_output=True, text=True, timeout=TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired:
        return {"model": name, "onnxbridge": "crash (time limit)"}
    for line in reversed(done.stdout.splitlines()):
        if line.startswith("{"):
            return dict(json.loads(line))
    return {"model": name, "onnxbridge": f"crash (exit {done.returncode}: {done.stderr.strip()[-200:]})"}


def table(results: list[dict[str, Any]]) -> str:
    """The results as a Markdown table."""
    lines = [
        "| model | onnxbridge | raw dynamo | family exporter | export s (onnxbridge / raw) |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        seconds = f"{r.get('onnxbridge seconds', '-')} / {r.get('raw seconds', '-')}"
        lines.append(
            f"| {r['model']} | {r.get('onnxbridge', '-')} | {r.get('raw dynamo', '-')} | {r.get('family', '-')} "
            f"| {seconds} |"
        )
    return "\n".join(lines)


def main() -> None:
    """Run the census (or one model, in a child process) and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--models", help="comma-separated names (default: all)")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--write", action="store_true", help="replace the table in docs/vision.md")
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one)))
        return
    names = args.models.split(",") if args.models else MODELS
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        results = []
        for result in pool.map(run, names):
            print(json.dumps(result), flush=True)
            results.append(result)
    text = table(results)
    print(text)
    if args.write:
        doc = DOCS.read_text()
        before, _, rest = doc.partition(START)
        _, _, after = rest.partition(END)
        DOCS.write_text(f"{before}{START}\n{text}\n{END}{after}")


if __name__ == "__main__":
    main()
