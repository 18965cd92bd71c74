"""Ultralytics' detection-target codec: per-image targets <-> its batch format.

The datasets keep boxes per sample, ``{"bboxes": [n, 4] x1 y1 x2 y2 pixels,
"labels": [n]}``; ``v8DetectionLoss`` takes one dict for the batch,
``{"batch_idx": [N], "cls": [N, 1], "bboxes": [N, 4]}`` with normalised
``cx, cy, w, h``. :class:`~learnable_fusion_loss.tasks.YOLOv8Task` converts with these
functions where a batch enters it (its ``collate_targets`` / ``split_targets``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

__all__ = ["ultralytics_targets", "split_ultralytics_targets", "collate_yolo_targets", "collate_ultralytics"]


def _rows(target: Any, image_size: Sequence[int] | None) -> tuple[Tensor, Tensor]:
    """One image's ``(cls [n, 1], cx cy w h [n, 4])``, normalised, from either per-sample form."""
    if isinstance(target, Mapping):
        if not {"bboxes", "labels"} <= set(target):
            raise TypeError(f"a per-image detection target needs 'bboxes' and 'labels', has {sorted(target)}")
        if image_size is None:
            raise ValueError("pixel boxes need the image size to be normalised")
        boxes = torch.as_tensor(target["bboxes"]).to(torch.float32)
        if boxes.numel() == 0:
            boxes = boxes.reshape(0, 4)
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise ValueError(f"target bboxes must be [n, 4] pixel x1, y1, x2, y2, got {tuple(boxes.shape)}")
        labels = torch.as_tensor(target["labels"], device=boxes.device).to(torch.float32).reshape(-1, 1)
        if labels.shape[0] != boxes.shape[0]:
            raise ValueError(f"target has {boxes.shape[0]} boxes but {labels.shape[0]} labels")
        h, w = image_size
        xywh = torch.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2,
                            boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]], dim=1)
        return labels, xywh / xywh.new_tensor([w, h, w, h])
    rows = torch.as_tensor(target, dtype=torch.float32).reshape(-1, 5)
    return rows[:, :1], rows[:, 1:]


def ultralytics_targets(targets: Sequence[Any], image_size: Sequence[int] | None = None) -> dict[str, Tensor]:
    """Per-image detection targets → ultralytics' batch dict (the format ``v8DetectionLoss`` takes).

    Each target is ``{"bboxes": [n, 4] x1 y1 x2 y2 pixels, "labels": [n]}`` (the
    per-sample form of the datasets, boxes in the frame of the ``image_size`` =
    ``(H, W)`` task image) or an ``[n, 5]`` tensor of YOLO rows ``(cls, cx, cy, w, h)``
    normalised to [0, 1]. Returns ``batch_idx`` ``[N]`` (image index of each box),
    ``cls`` ``[N, 1]`` and ``bboxes`` ``[N, 4]`` normalised ``cx, cy, w, h``, all float32.

    >>> t = ultralytics_targets([{"bboxes": torch.tensor([[0., 0., 4., 2.]]), "labels": torch.tensor([2])},
    ...                          torch.zeros(0, 5)], image_size=(4, 8))
    >>> t["batch_idx"].tolist(), t["cls"].tolist(), t["bboxes"].tolist()
    ([0.0], [[2.0]], [[0.25, 0.25, 0.5, 0.5]])
    """
    if not targets:
        raise ValueError("ultralytics_targets needs at least one image")
    idx, cls, boxes = [], [], []
    for i, target in enumerate(targets):
        labels, xywh = _rows(target, image_size)
        idx.append(torch.full((labels.shape[0],), float(i), device=labels.device))
        cls.append(labels)
        boxes.append(xywh)
    return {"batch_idx": torch.cat(idx).reshape(-1), "cls": torch.cat(cls).reshape(-1, 1),
            "bboxes": torch.cat(boxes).reshape(-1, 4)}


def split_ultralytics_targets(target: Mapping[str, Tensor], count: int,
                              image_size: Sequence[int]) -> list[dict[str, Tensor]]:
    """ultralytics' batch dict → ``{"bboxes": [n, 4] pixel xyxy, "labels": [n] int64}`` per image."""
    h, w = image_size
    idx = torch.as_tensor(target["batch_idx"]).reshape(-1)
    cls = torch.as_tensor(target["cls"]).reshape(-1)
    xywh = torch.as_tensor(target["bboxes"]).reshape(-1, 4)
    xywh = xywh * xywh.new_tensor([w, h, w, h])
    xyxy = torch.cat([xywh[:, :2] - xywh[:, 2:] / 2, xywh[:, :2] + xywh[:, 2:] / 2], dim=1)
    return [{"bboxes": xyxy[idx == i], "labels": cls[idx == i].round().long()} for i in range(count)]


def collate_yolo_targets(per_image: Sequence[Tensor]) -> dict[str, Tensor]:
    """``[n_i, 5]`` rows ``(cls, cx, cy, w, h)`` per image -> ultralytics' batch dict (``cls`` ``[N]``)."""
    if not per_image:
        raise ValueError("collate_yolo_targets needs at least one image")
    batch = ultralytics_targets([torch.as_tensor(rows, dtype=torch.float32) for rows in per_image])
    return {**batch, "cls": batch["cls"].reshape(-1)}


def collate_ultralytics(samples: Sequence[Mapping[str, Any]], swap_modalities: bool = False) -> dict[str, Any]:
    """:func:`~learnable_fusion_loss.datasets.collate_paired` plus ultralytics' detection keys.

    ``collate_paired`` keeps boxes per sample (``gt_bboxes``, ``gt_labels``); this adds
    ``batch_idx``, ``cls`` and ``bboxes`` in ultralytics' batch format
    (:func:`ultralytics_targets`, boxes normalised by the task image, ``source_a_task``,
    or ``source_a`` without a task view), e.g. to call ``v8DetectionLoss`` on a batch
    directly.
    """
    from ..datasets.collate import collate_paired
    from ..datasets.keys import SOURCE_A, SOURCE_A_TASK

    batch = collate_paired(samples, swap_modalities=swap_modalities)
    if "gt_bboxes" in batch:
        image = batch[SOURCE_A_TASK] if SOURCE_A_TASK in batch else batch[SOURCE_A]
        targets = [{"bboxes": b, "labels": c} for b, c in zip(batch["gt_bboxes"], batch["gt_labels"], strict=True)]
        batch.update(ultralytics_targets(targets, tuple(image.shape[-2:])))
    return batch
