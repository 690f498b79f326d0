"""torchvision's detectors (Faster/Mask/Keypoint R-CNN, RetinaNet, SSD, SSDlite, FCOS): images in, boxes out.

``model([image])`` is how these models are called, and torch.export cannot trace it as it is:
the resize picks its scale with Python ``min`` over the image's sides (a guard that fixes the
branch to the sample's aspect), the batching rounds the padded size up with ``math.ceil`` (fixed
to the sample's size), ``batched_nms`` branches on how many boxes survived (a data-dependent size), and
Faster R-CNN's RoI pooling counts its rois with ``len()``. While exporting, these four functions
of torchvision's are replaced by ones that compute the same values without those guards (the
functions are restored after; the model is not touched):

* the resize takes ``torch.sym_min`` of the two scales, so both branches stay in the graph;
* the batching rounds up with integer arithmetic on the symbolic sizes;
* ``batched_nms`` always offsets boxes by class (torchvision's own "coordinate trick", which it
  uses below 4000 boxes and gives the same result as its per-class loop), against the largest
  coordinate or 0, so an empty set of boxes needs no branch;
* in the multi-scale RoI pooling, every FPN level pools every roi and each roi keeps its own
  level's result (times 1, the others times 0: the same values, four times the pooling), where
  torchvision writes each level's rois by index.

``torchvision::nms`` becomes ONNX's ``NonMaxSuppression`` and ``torchvision::roi_align`` its
``RoiAlign``; Mask and Keypoint R-CNN's per-detection mask pasting and heatmap decoding are swapped
for batched forms (``_torchvision_instances``). The graph takes the sample's number of images, all
of one size (``image`` or ``image_0``, ``image_1``, ...; height and width dynamic), and returns each
image's ``boxes``, ``scores`` and ``labels`` (``boxes_0``, ... for several), and ``masks`` or
``keypoints`` and ``keypoints_scores`` where the model has them, with a dynamic number of
detections. Validation matches detections as sets (equal scores may come out in another order) at
the sample's size and at sizes of other aspect ratios.
"""

from __future__ import annotations

import contextlib
import math
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np

from onnxbridge.adapters import _torch_onnx_fixes as _fixes
from onnxbridge.adapters import _torchvision_instances as _instances
from onnxbridge.adapters._torch_common import DYNAMO, captured_warnings, choose_opset, inference, summary, to_numpy
from onnxbridge.checks import _detections
from onnxbridge.core._axes import DynamicAxes
from onnxbridge.core._errors import ExportError, InputError
from onnxbridge.core._types import Feeds
from onnxbridge.exporting._adapter import Exported, ExportRequest

DETECTORS = ("RetinaNet", "SSD", "FCOS", "GeneralizedRCNN")  # torchvision.models.detection classes this exports


def is_detector(model: Any) -> bool:
    """Whether ``model`` is one of torchvision's detection models (without importing torchvision)."""
    return any(
        cls.__module__.startswith("torchvision.models.detection") and cls.__name__ in DETECTORS
        for cls in type(model).__mro__
    )


def images_of(torch: Any, model: Any, sample: Any) -> list[Any]:
    """The images of a detector's sample: ``[image, ...]``, ``([image, ...],)`` or one 3-D image."""
    if isinstance(sample, tuple) and len(sample) == 1 and isinstance(sample[0], list):
        sample = sample[0]
    images = sample if isinstance(sample, list) else [sample]
    name = type(model).__name__
    if not images or not all(isinstance(i, torch.Tensor) and i.dim() == 3 for i in images):
        raise InputError(
            f"{name} takes a list of 3-D images (channels, height, width), as model([image]) does; the sample "
            f"holds {[tuple(getattr(i, 'shape', ())) or type(i).__name__ for i in images]}. Pass [image] or "
            "[image_1, image_2] with float tensors."
        )
    if len({tuple(i.shape) for i in images}) > 1:
        raise InputError(
            f"The sample's images differ in size ({[tuple(i.shape) for i in images]}). The exported graph takes "
            f"its images at one size per call (any size, the same for all); export with one image, or with "
            "images of one size, and run differently sized images in separate calls."
        )
    return list(images)


def keys_of(outputs: list[dict[str, Any]]) -> list[str]:
    """The per-image output names, boxes, scores and labels first."""
    first = ["boxes", "scores", "labels"]
    found = list(outputs[0])
    return [k for k in first if k in found] + [k for k in found if k not in first]


def output_names(count: int, keys: list[str]) -> list[str]:
    return [k if count == 1 else f"{k}_{i}" for i in range(count) for k in keys]


def flat_outputs(results: list[dict[str, Any]], keys: list[str]) -> Feeds:
    """The model's per-image dicts as numpy arrays under the graph's output names."""
    values = [to_numpy(result[key]) for result in results for key in keys]
    return dict(zip(output_names(len(results), keys), values, strict=True))


def input_names(count: int) -> list[str]:
    return ["image"] if count == 1 else [f"image_{i}" for i in range(count)]


def flat_module(torch: Any, model: Any, keys: list[str]) -> Any:
    """``model`` called as ``model([images...])``, its per-image dicts flattened to a tuple of tensors."""

    class Flat(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *images: Any) -> tuple[Any, ...]:
            results = self.model(list(images))
            return tuple(result[key] for result in results for key in keys)

    return Flat()


@contextlib.contextmanager
def traceable(torch: Any) -> Iterator[None]:
    """Swap in torchvision's resize, batching and batched NMS in forms torch.export traces at any image size."""
    from torchvision.models.detection import transform
    from torchvision.ops import boxes as box_ops

    def resize(image: Any, min_size: int, max_size: int, target: Any = None, fixed_size: Any = None) -> Any:
        if target is not None or fixed_size is not None:
            return original_resize(image, min_size, max_size, target, fixed_size)
        height, width = image.shape[-2:]
        small, large = torch.sym_float(torch.sym_min(height, width)), torch.sym_float(torch.sym_max(height, width))
        scale = torch.sym_min(float(min_size) / small, float(max_size) / large)
        resized = torch.nn.functional.interpolate(
            image[None], scale_factor=scale, mode="bilinear", recompute_scale_factor=True, align_corners=False
        )
        return resized[0], target

    def batch_images(self: Any, images: list[Any], size_divisible: int = 32) -> Any:
        height, width = images[0].shape[-2:]
        stride = int(size_divisible)
        padded = ((height + stride - 1) // stride * stride, (width + stride - 1) // stride * stride)
        return torch.nn.functional.pad(torch.stack(images), (0, padded[1] - width, 0, padded[0] - height))

    def batched_nms(boxes: Any, scores: Any, idxs: Any, iou_threshold: float) -> Any:
        largest = torch.cat([boxes.flatten(), boxes.new_zeros(1)]).max()
        offsets = idxs.to(boxes) * (largest + 1)
        return torch.ops.torchvision.nms(boxes + offsets[:, None], scores, iou_threshold)

    def multiscale_roi_align(
        features: list[Any], boxes: list[Any], output_size: Any, sampling_ratio: int, scales: Any, mapper: Any
    ) -> Any:
        rois = poolers._convert_to_roi_format(boxes)
        if len(features) == 1:
            return roi_align(features[0], rois, output_size, scales[0], sampling_ratio)
        levels = mapper(boxes)
        pooled = None
        for level, (feature, scale) in enumerate(zip(features, scales, strict=True)):
            here = roi_align(feature, rois, output_size, scale, sampling_ratio).to(features[0].dtype)
            here = here * (levels == level).to(here.dtype)[:, None, None, None]  # this level's rois, 0 elsewhere
            pooled = here if pooled is None else pooled + here
        return pooled

    from torchvision.models.detection import roi_heads
    from torchvision.ops import poolers, roi_align

    original_resize = transform._resize_image_and_masks
    replaced = [
        (poolers, "_multiscale_roi_align", multiscale_roi_align),
        (transform, "_resize_image_and_masks", resize),
        (transform.GeneralizedRCNNTransform, "batch_images", batch_images),
        (box_ops, "batched_nms", batched_nms),
        (transform, "paste_masks_in_image", _instances.paste_masks_in_image),
        (roi_heads, "heatmaps_to_keypoints", _instances.heatmaps_to_keypoints),
    ]
    # modules that imported batched_nms by name
    for module in list(sys.modules.values()):
        name = getattr(module, "__name__", "") or ""
        if name.startswith("torchvision.models.detection") and hasattr(module, "batched_nms"):
            replaced.append((module, "batched_nms", batched_nms))
    saved = [(owner, attr, getattr(owner, attr)) for owner, attr, _ in replaced]
    try:
        for owner, attr, value in replaced:
            setattr(owner, attr, value)
        yield
    finally:
        for owner, attr, value in saved:
            setattr(owner, attr, value)


def translations(torch: Any) -> dict[Any, Any]:
    """``torchvision::nms`` as ONNX's ``NonMaxSuppression`` (one batch, one class: the boxes are offset by class)."""
    from onnxscript.onnx_opset import opset18

    op: Any = opset18

    def nms(boxes: Any, scores: Any, iou_threshold: float) -> Any:
        every = op.Shape(boxes, start=0, end=1)
        selected = op.NonMaxSuppression(
            op.Unsqueeze(boxes, op.Constant(value_ints=[0])),
            op.Unsqueeze(scores, op.Constant(value_ints=[0, 1])),
            every,
            op.Constant(value_float=iou_threshold),
        )
        column = op.Slice(
            selected, op.Constant(value_ints=[2]), op.Constant(value_ints=[3]), op.Constant(value_ints=[1])
        )
        return op.Reshape(column, op.Constant(value_ints=[-1]))

    def roi_align(
        features: Any,
        rois: Any,
        spatial_scale: float,
        pooled_height: int,
        pooled_width: int,
        sampling_ratio: int = -1,
        aligned: bool = False,
    ) -> Any:
        one = op.Constant(value_ints=[1])
        batch = op.Slice(rois, op.Constant(value_ints=[0]), one, one, one)  # column 0: the image of each roi
        return op.RoiAlign(
            features,
            op.Slice(rois, one, op.Constant(value_ints=[5]), one, one),
            op.Cast(op.Reshape(batch, op.Constant(value_ints=[-1])), to=7),  # int64
            coordinate_transformation_mode="half_pixel" if aligned else "output_half_pixel",
            mode="avg",
            output_height=pooled_height,
            output_width=pooled_width,
            sampling_ratio=max(sampling_ratio, 0),  # torchvision's -1 and ONNX's 0: adaptive
            spatial_scale=spatial_scale,
        )

    return {torch.ops.torchvision.nms.default: nms, torch.ops.torchvision.roi_align.default: roi_align}


def other_sizes(height: int, width: int) -> list[tuple[int, int]]:
    """Sizes the sample never had, of other aspect ratios: taller, wider, square (each side at least 64)."""
    side = max(64, round(math.sqrt(height * width)))
    return [(max(64, width), max(64, height)), (max(64, height * 3 // 4), max(64, width * 3 // 2)), (side, side)]


def export(torch: Any, model: Any, request: ExportRequest) -> Exported:
    """Export a torchvision detector called as ``model([images])``; see the module's docstring."""
    if request.dynamic_axes is not None or request.input_names is not None or request.output_names is not None:
        raise InputError(
            f"{type(model).__name__} names its graph's inputs (image, or image_0, image_1, ...), outputs (boxes, "
            "scores, labels) and dynamic axes (height, width, detections) itself; drop dynamic_axes, input_names "
            "and output_names."
        )
    if request.options:
        raise InputError(
            f"{type(model).__name__} exports with the dynamo exporter and settings of its own; it takes no "
            f"{', '.join(sorted(request.options))}. Drop them."
        )
    images = images_of(torch, model, request.sample)
    with inference(model), request.phases.timed("source model run"):
        results = model(images)
    keys = keys_of(results)
    inputs, outputs = input_names(len(images)), output_names(len(images), keys)
    axes: DynamicAxes = {name: {1: "height", 2: "width"} for name in inputs}
    axes.update(
        {name: {0: "detections" if len(images) == 1 else f"detections_{name.rpartition('_')[2]}"} for name in outputs}
    )
    height, width = (torch.export.Dim(name, min=32, max=8192) for name in ("height", "width"))
    notes: list[str] = []
    flat = flat_module(torch, model, keys)
    try:
        with (
            inference(model),
            captured_warnings(notes, DYNAMO),
            _fixes.exact_constant_rules(),
            traceable(torch),
            request.phases.timed("torch.onnx.export (dynamo)"),
        ):
            program = torch.onnx.export(
                flat,
                tuple(images),
                dynamo=True,
                verbose=False,
                input_names=inputs,
                output_names=outputs,
                opset_version=choose_opset(request.opset),
                dynamic_shapes=(tuple({1: height, 2: width} for _ in images),),  # forward(*images): one tuple
                custom_translation_table={**_fixes.translations(), **translations(torch)},
            )
    except Exception as err:
        raise ExportError(
            f"Exporting {type(model).__name__} failed in torch.onnx's dynamo exporter: {summary(err)}."
        ) from err
    proto = program.model_proto
    feeds = {name: to_numpy(image) for name, image in zip(inputs, images, strict=True)}

    def reference(given: Feeds) -> Feeds:
        tensors = [torch.from_numpy(np.array(given[name])) for name in inputs]
        with inference(model):
            return flat_outputs(model(tensors), keys)

    extra = {
        f"image {h}x{w}": {name: np.random.default_rng(i).random((3, h, w), dtype=np.float32) for name in inputs}
        for i, (h, w) in enumerate(other_sizes(*images[0].shape[-2:]))
    }
    notes.append(
        f"{type(model).__name__} called as model([image{', ...' if len(images) > 1 else ''}]): "
        f"{len(images)} image(s) of any one size in, {', '.join(keys)} out per image with a dynamic number of "
        "detections; torchvision's resize, batching, batched NMS and multi-scale RoI pooling were traced in forms "
        "without data-dependent branches (same values), and torchvision's nms and roi_align became ONNX "
        "NonMaxSuppression and RoiAlign"
        + (
            "; its per-detection mask pasting and keypoint heatmap decoding became batched resizes (same arithmetic)"
            if {"masks", "keypoints"} & set(keys)
            else ""
        )
    )
    import torchvision

    return Exported(
        model=proto,
        framework="torch",
        framework_version=f"{torch.__version__} (torchvision {torchvision.__version__})",
        exporter="torch.onnx (dynamo)",
        dynamic_axes=axes,
        sample=feeds,
        reference=reference,
        reference_outputs=flat_outputs(results, keys),
        notes=notes,
        properties={"task": _detections.TASK},
        validation_samples=extra,
    )
