"""Boxes of the paired detection sets: rescaling, cropping, format changes, rasterising.

Boxes are ``[N, 4]`` tensors ``x1, y1, x2, y2`` in pixels of the frame they live
in (``sample['target_shape']``, ``(H, W)``). On resize x is scaled by ``W'/W``
and y by ``H'/H``.

>>> import torch
>>> boxes = torch.tensor([[10.0, 20.0, 30.0, 60.0]])
>>> resize_boxes(boxes, (100, 200), (50, 50)).tolist()
[[2.5, 10.0, 7.5, 30.0]]
>>> boxes_xyxy_to_cxcywh(boxes, (80, 160)).tolist()
[[0.125, 0.5, 0.125, 0.5]]
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = [
    "resize_boxes",
    "crop_boxes",
    "boxes_xyxy_to_cxcywh",
    "boxes_cxcywh_to_xyxy",
    "boxes_to_mask",
]


def _check_boxes(boxes: Tensor) -> None:
    if not isinstance(boxes, Tensor) or boxes.ndim != 2 or boxes.shape[-1] != 4:
        shape = tuple(boxes.shape) if isinstance(boxes, Tensor) else type(boxes).__name__
        raise ValueError(f"boxes must be a tensor [N, 4] (x1, y1, x2, y2), got {shape}")


def resize_boxes(boxes: Tensor, src_shape: Sequence[int], dst_shape: Sequence[int]) -> Tensor:
    """Rescale ``[N, 4]`` xyxy pixel boxes from an image of ``src_shape`` (H, W) to ``dst_shape``.

    x is scaled by ``W_dst / W_src``, y by ``H_dst / H_src``.
    """
    _check_boxes(boxes)
    (src_h, src_w), (dst_h, dst_w) = src_shape, dst_shape
    scale = boxes.new_tensor([dst_w / src_w, dst_h / src_h, dst_w / src_w, dst_h / src_h])
    return boxes * scale


def crop_boxes(boxes: Tensor, crop: Sequence[int], min_size: float = 1.0) -> tuple[Tensor, Tensor]:
    """Move xyxy boxes into the frame of ``crop = (x0, y0, x1, y1)`` and clip them to it.

    Returns ``(boxes, keep)``: the kept boxes (clipped part at least ``min_size``
    pixels wide and high) and the boolean mask over the input, to filter labels.
    """
    _check_boxes(boxes)
    x0, y0, x1, y1 = crop
    shifted = boxes - boxes.new_tensor([x0, y0, x0, y0])
    shifted[:, 0::2] = shifted[:, 0::2].clamp(0, x1 - x0)
    shifted[:, 1::2] = shifted[:, 1::2].clamp(0, y1 - y0)
    keep = ((shifted[:, 2] - shifted[:, 0]) >= min_size) & (
        (shifted[:, 3] - shifted[:, 1]) >= min_size
    )
    return shifted[keep], keep


def boxes_xyxy_to_cxcywh(boxes: Tensor, image_shape: Sequence[int] | None = None) -> Tensor:
    """xyxy pixels -> ``cx, cy, w, h``; normalised to [0, 1] by ``image_shape`` (H, W) if given."""
    _check_boxes(boxes)
    out = torch.stack(
        [
            (boxes[:, 0] + boxes[:, 2]) / 2,
            (boxes[:, 1] + boxes[:, 3]) / 2,
            boxes[:, 2] - boxes[:, 0],
            boxes[:, 3] - boxes[:, 1],
        ],
        dim=1,
    )
    if image_shape is not None:
        h, w = image_shape
        out = out / out.new_tensor([w, h, w, h])
    return out


def boxes_cxcywh_to_xyxy(boxes: Tensor, image_shape: Sequence[int] | None = None) -> Tensor:
    """Inverse of :func:`boxes_xyxy_to_cxcywh` (de-normalises by ``image_shape`` if given)."""
    _check_boxes(boxes)
    if image_shape is not None:
        h, w = image_shape
        boxes = boxes * boxes.new_tensor([w, h, w, h])
    cx, cy, bw, bh = boxes.unbind(dim=1)
    return torch.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], dim=1)


def boxes_to_mask(boxes: Tensor, labels: Tensor, image_shape: Sequence[int]) -> Tensor:
    """Rasterise boxes into a class mask ``[H, W]`` int64: pixel = box label + 1, background 0.

    Larger boxes are drawn first so smaller (often nested or occluding) boxes stay
    visible. A pixel belongs to a box when its centre lies inside it.
    These are *weak* labels: every pixel of a box counts as the object.
    """
    _check_boxes(boxes)
    h, w = image_shape
    mask = torch.zeros(h, w, dtype=torch.int64)
    if boxes.shape[0] == 0:
        return mask
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    for i in torch.argsort(areas, descending=True, stable=True).tolist():
        x1, y1, x2, y2 = boxes[i].tolist()
        # pixel j is covered when x1 <= j + 0.5 < x2
        c0, c1 = max(math.ceil(x1 - 0.5), 0), min(math.ceil(x2 - 0.5), w)
        r0, r1 = max(math.ceil(y1 - 0.5), 0), min(math.ceil(y2 - 0.5), h)
        if c1 > c0 and r1 > r0:
            mask[r0:r1, c0:c1] = int(labels[i]) + 1
    return mask
