"""Mask and Keypoint R-CNN's last steps without a loop over detections, for torch.export.

torchvision pastes each detection's 28x28 mask into the image at its box, and decodes each
detection's keypoint heatmaps at its box's size, one detection at a time: a Python loop over a
data-dependent count, with sizes read from the boxes. Both resizes are separable, so each is
written here as two weight matrices per detection (rows and columns), built from the boxes with
torch's own interpolation arithmetic, and one batched matmul:

* masks: torch's bilinear resize (``align_corners=False``) of the padded mask to the box's integer
  size, placed at the box's corner, zero outside it (and outside the image, as torchvision's slice);
* keypoints: torch's bicubic resize (A = -0.75, edges clamped) of each heatmap to the box's rounded-up
  size, padded to the largest box of the call, one keypoint at a time; the argmax skips the padding,
  so the first maximum in row-major order is the one torchvision picks.

The values are torchvision's up to float summation order; the memory is one image-sized mask per
detection (as torchvision's own output), and one largest-box-sized heatmap per detection for one
keypoint at a time.
"""

from __future__ import annotations

from typing import Any

__all__ = ["heatmaps_to_keypoints", "paste_masks_in_image"]

_CUBIC_A = -0.75  # torch's bicubic coefficient


def _bilinear_weights(torch: Any, starts: Any, sizes: Any, count: int, source: int, dtype: Any) -> Any:
    """``[N, count, source]``: each image line from the mask's lines, the mask resized to its box and placed there.

    Mask ``n`` is resized to ``sizes[n]`` lines and placed at ``starts[n]``; zero outside the box.
    """
    positions = torch.arange(count, device=starts.device)[None, :] - starts[:, None]  # line within the box
    inside = (positions >= 0) & (positions < sizes[:, None])
    scale = float(source) / sizes.to(dtype)
    real = (scale[:, None] * (positions.to(dtype) + 0.5) - 0.5).clamp(min=0)
    low = real.floor()
    upper_weight = real - low
    low = low.to(torch.int64)
    high = torch.where(low < source - 1, low + 1, low)
    taps = torch.arange(source, device=starts.device)
    weights = (taps == low[..., None]).to(dtype) * (1 - upper_weight)[..., None]
    weights = weights + (taps == high[..., None]).to(dtype) * upper_weight[..., None]
    return weights * inside[..., None].to(dtype)


def paste_masks_in_image(masks: Any, boxes: Any, img_shape: Any, padding: int = 1) -> Any:
    """Torchvision's ``paste_masks_in_image``: ``[N, 1, M, M]`` masks at their boxes in ``[N, 1, H, W]`` images."""
    import torch
    from torchvision.models.detection.roi_heads import expand_boxes, expand_masks

    masks, scale = expand_masks(masks, padding=padding)
    boxes = expand_boxes(boxes, scale).to(dtype=torch.int64)
    height, width = img_shape
    source = masks.shape[-1]
    widths = (boxes[:, 2] - boxes[:, 0] + 1).clamp(min=1)
    heights = (boxes[:, 3] - boxes[:, 1] + 1).clamp(min=1)
    rows = _bilinear_weights(torch, boxes[:, 1], heights, height, source, masks.dtype)  # [N, H, M]
    cols = _bilinear_weights(torch, boxes[:, 0], widths, width, source, masks.dtype)  # [N, W, M]
    return (rows @ masks[:, 0] @ cols.transpose(1, 2))[:, None]


def _cubic_weights(torch: Any, sizes: Any, count: int, source: int, dtype: Any) -> Any:
    """``[N, count, source]``: torch's bicubic resize of ``source`` lines to ``sizes[n]`` lines.

    Lines past a size are computed too; the caller masks them.
    """
    a = _CUBIC_A
    positions = torch.arange(count, device=sizes.device).to(dtype)[None, :]
    real = (float(source) / sizes.to(dtype))[:, None] * (positions + 0.5) - 0.5
    low = real.floor()
    t = real - low
    low = low.to(torch.int64)

    def near(x: Any) -> Any:  # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x: Any) -> Any:  # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    taps = torch.arange(source, device=sizes.device)
    weights = None
    for offset, coefficient in zip((-1, 0, 1, 2), (far(t + 1), near(t), near(1 - t), far(2 - t)), strict=True):
        index = (low + offset).clamp(0, source - 1)
        tap = (taps == index[..., None]).to(dtype) * coefficient[..., None]
        weights = tap if weights is None else weights + tap
    return weights


def heatmaps_to_keypoints(maps: Any, rois: Any) -> tuple[Any, Any]:
    """Torchvision's ``heatmaps_to_keypoints``: ``[N, K, 3]`` keypoints (x, y, 1) and ``[N, K]`` scores."""
    import torch

    widths = (rois[:, 2] - rois[:, 0]).clamp(min=1)
    heights = (rois[:, 3] - rois[:, 1]).clamp(min=1)
    widths_ceil, heights_ceil = widths.ceil(), heights.ceil()
    source, one = maps.shape[-1], widths.new_ones(1)
    # the largest box of the call (1 when there is none, so no branch on the count)
    tallest = int(torch.cat([heights_ceil, one]).max().item())
    widest = int(torch.cat([widths_ceil, one]).max().item())
    torch._check(tallest >= 1)
    torch._check(widest >= 1)
    rows = _cubic_weights(torch, heights_ceil, tallest, source, maps.dtype)
    cols = _cubic_weights(torch, widths_ceil, widest, source, maps.dtype)
    inside = (torch.arange(tallest, device=maps.device)[None, :, None] < heights_ceil[:, None, None]) & (
        torch.arange(widest, device=maps.device)[None, None, :] < widths_ceil[:, None, None]
    )
    outside = torch.full((), float("-inf"), dtype=maps.dtype)
    positions, found = [], []
    for keypoint in range(maps.shape[1]):  # one [N, tallest, widest] map at a time: memory of one, not K
        resized = rows @ maps[:, keypoint] @ cols.transpose(1, 2)
        flat = torch.where(inside, resized, outside).flatten(1)
        position = flat.argmax(dim=1)  # the first maximum in row-major order
        positions.append(position)
        found.append(flat.gather(1, position[:, None])[:, 0])
    position, scores = torch.stack(positions, dim=1), torch.stack(found, dim=1)  # [N, K]
    # the column and row of each flat position, looked up (a remainder by a symbolic size does not export)
    columns = torch.arange(widest, device=maps.device)[None, :].expand(tallest, widest).flatten()
    lines = torch.arange(tallest, device=maps.device)[:, None].expand(tallest, widest).flatten()
    x_int, y_int = columns[position], lines[position]
    x = (x_int.to(maps.dtype) + 0.5) * (widths / widths_ceil)[:, None] + rois[:, 0, None]
    y = (y_int.to(maps.dtype) + 0.5) * (heights / heights_ceil)[:, None] + rois[:, 1, None]
    return torch.stack([x, y, torch.ones_like(x)], dim=2), scores
