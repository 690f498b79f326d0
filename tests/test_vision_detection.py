"""torchvision's detectors, exported as they are called: ``model([image])``, any image size.

Runs in the vision venv (``make test-vision``); skipped elsewhere. Random weights (nothing
downloaded), re-drawn where torchvision's own init makes every score equal, so that the detections
are not a wall of ties; a low score threshold so that there are many of them.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

import onnxbridge as ob

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

pytestmark = pytest.mark.vision

SMALL = {"min_size": 320, "max_size": 512}  # the transform's target sizes, small to keep the test quick
RANDOM = {"weights": None, "weights_backbone": None, "num_classes": 7}  # nothing downloaded
DETECTORS = {
    "fcos": lambda: torchvision.models.detection.fcos_resnet50_fpn(score_thresh=0.05, **SMALL, **RANDOM),
    "retinanet": lambda: torchvision.models.detection.retinanet_resnet50_fpn(score_thresh=0.05, **SMALL, **RANDOM),
    "faster-rcnn": lambda: torchvision.models.detection.fasterrcnn_mobilenet_v3_large_320_fpn(
        box_score_thresh=0.01, **RANDOM
    ),
    "ssdlite": lambda: torchvision.models.detection.ssdlite320_mobilenet_v3_large(score_thresh=0.05, **RANDOM),
    "mask-rcnn": lambda: torchvision.models.detection.maskrcnn_resnet50_fpn(box_score_thresh=0.01, **SMALL, **RANDOM),
    "keypoint-rcnn": lambda: torchvision.models.detection.keypointrcnn_resnet50_fpn(
        box_score_thresh=0.05, num_keypoints=5, **SMALL, **{**RANDOM, "num_classes": 2}
    ),
}
OUTPUTS = {"mask-rcnn": ["masks"], "keypoint-rcnn": ["keypoints", "keypoints_scores"]}


def spread_head(std: float, bias: float | None):
    """Re-draw the classification head: torchvision's own init puts every score at its prior (RetinaNet) or every
    class at one value (FCOS), a wall of exact ties that says nothing about the graph."""

    def spread(model) -> None:
        parameters = list(model.head.classification_head.parameters())
        for parameter in parameters:
            parameter.normal_(0.0, std) if bias is None or parameter.dim() > 1 else parameter.zero_()
        if bias is not None:
            parameters[-1].fill_(bias)

    return spread


def spread_convolutions(model) -> None:
    """SSDlite's random features are near zero, every class at 1/7: wider convolutions give it something to find."""
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):
            module.weight.normal_(0.0, 0.2)


class PeakedHeatmaps(torch.nn.Module):
    """A keypoint predictor whose heatmaps have one smooth peak each, inside the box, as trained ones do.

    Random heatmaps have many near-equal peaks, and which one argmax picks is decided by float noise.
    """

    def __init__(self, channels: int, keypoints: int) -> None:
        super().__init__()
        self.keypoints = keypoints
        self.where = torch.nn.Linear(channels, 2 * keypoints)

    def forward(self, features: torch.Tensor) -> torch.Tensor:  # [N, C, 14, 14] -> [N, K, 56, 56]
        centre = 8 + 40 * torch.sigmoid(self.where(features.mean((2, 3))) * 10).view(-1, self.keypoints, 2)
        grid = torch.arange(56, dtype=features.dtype) + 0.5
        dx = grid[None, None, None, :] - centre[..., 0, None, None]
        dy = grid[None, None, :, None] - centre[..., 1, None, None]
        return -(dx**2 + dy**2) / 50.0


def spread_box_head(model) -> None:
    """Faster R-CNN's random features are near zero and its box head gives every detection one score: re-draw the
    convolutions and the head's linear layers wider."""
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d | torch.nn.Linear):
            module.weight.normal_(0.0, 0.1 if isinstance(module, torch.nn.Conv2d) else 0.5)


SPREAD = {
    "fcos": spread_head(0.05, None),
    "retinanet": spread_head(0.01, -1.0),
    "faster-rcnn": spread_box_head,
    "ssdlite": spread_convolutions,
    "mask-rcnn": lambda model: None,
    "keypoint-rcnn": lambda model: setattr(model.roi_heads, "keypoint_predictor", PeakedHeatmaps(512, 5)),
}


def image(height: int, width: int, seed: int) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).random((3, height, width), dtype=np.float32))


@functools.cache
def detector(name: str):
    torch.manual_seed(0)
    model = DETECTORS[name]().eval()
    with torch.no_grad():
        SPREAD[name](model)
    return model, ob.export(model, [image(240, 320, seed=0)])


def assert_same_detections(got: dict, want: dict) -> None:
    """One-to-one: every detection of ``got`` has one in ``want`` with its label, its score and its box; and its
    mask (mean difference) and keypoints (as noise in the box moves them) where it has them."""
    want = {key: value.numpy() for key, value in want.items()}
    boxes, scores, labels = (want[k] for k in ("boxes", "scores", "labels"))
    assert got["boxes"].shape == boxes.shape
    free = np.ones(len(boxes), dtype=bool)
    for i, (box, score, label) in enumerate(zip(got["boxes"], got["scores"], got["labels"], strict=True)):
        near = free & (labels == label) & (np.abs(scores - score) <= 5e-4) & (np.abs(boxes - box).max(axis=1) <= 0.1)
        assert near.any(), f"no match for {label} {score} {box}"
        j = np.flatnonzero(near)[0]
        free[j] = False
        if "masks" in want:
            assert got["masks"][i].shape == want["masks"][j].shape
            assert np.abs(got["masks"][i] - want["masks"][j]).mean() <= 1e-3
        if "keypoints" in want:  # a pixel or two away, or at another peak of its heatmap as high (a near tie)
            moved = np.abs(got["keypoints"][i] - want["keypoints"][j]).max(axis=1)
            tie = np.abs(got["keypoints_scores"][i] - want["keypoints_scores"][j]) <= 1e-2
            assert ((moved <= 2.1) | tie).all(), (moved, tie)


@pytest.mark.parametrize("name", list(DETECTORS))
def test_a_detector_exports_from_a_list_of_images_and_matches_torch_at_sizes_it_never_saw(name):
    model, art = detector(name)
    assert art.input_names == ["image"]
    assert art.output_names == ["boxes", "scores", "labels", *OUTPUTS.get(name, [])]
    assert art.dynamic_axes["image"] == {1: "height", 2: "width"}
    report = art.validate()  # the sample and three other aspect ratios
    named = {c.case for c in report.comparisons if c.case.startswith("image ")}
    assert len(named) == 3
    session = art.session()
    for seed, (height, width) in enumerate([(300, 500), (480, 256), (201, 333)], 1):
        picture = image(height, width, seed)
        with torch.no_grad():
            want = model([picture])[0]
        got = session.run({"image": picture.numpy()})
        assert len(want["boxes"]) > 10  # something to compare
        assert_same_detections(got, want)


def test_the_export_leaves_the_model_and_torchvision_as_they_were():
    from torchvision.models.detection import transform
    from torchvision.ops import boxes

    resize, nms = transform._resize_image_and_masks, boxes.batched_nms
    model = torchvision.models.detection.ssdlite320_mobilenet_v3_large(**RANDOM).train()
    ob.export(model, [image(240, 320, seed=0)])
    assert model.training
    assert transform._resize_image_and_masks is resize
    assert boxes.batched_nms is nms


WRONG = {  # the source changed after export, so that the graph computes something else
    "box weights 1% off": ("roi_heads.box_predictor.bbox_pred.weight", lambda w: w * 1.01),
    "each class's mask from the next class": (
        "roi_heads.mask_predictor.mask_fcn_logits.weight",
        lambda w: w.roll(1, 0),
    ),
}


@pytest.mark.parametrize("wrong", list(WRONG))
def test_a_detector_whose_graph_computes_something_else_fails_validation(wrong):
    model, art = detector("mask-rcnn")
    layer, change = WRONG[wrong]
    parameter = model.get_parameter(layer)
    saved = parameter.detach().clone()
    try:
        with torch.no_grad():
            parameter.copy_(change(saved))
        with pytest.raises(ob.ValidationError, match="numeric parity"):
            art.validate()
    finally:
        with torch.no_grad():
            parameter.copy_(saved)


def test_images_of_different_sizes_are_refused_with_what_works():
    model = torchvision.models.detection.ssdlite320_mobilenet_v3_large(**RANDOM).eval()
    with pytest.raises(ob.InputError, match="differ in size"):
        ob.export(model, [image(240, 320, 0), image(200, 320, 1)])
    with pytest.raises(ob.InputError, match="takes no exporter"):
        ob.export(model, [image(240, 320, 0)], exporter="torchscript")
    with pytest.raises(ob.InputError, match="list of 3-D images"):
        ob.export(model, [torch.rand(1, 3, 64, 64)])
