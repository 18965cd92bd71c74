"""Batching of paired samples, including the ultralytics detection-target format."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from mmengine.registry import FUNCTIONS
from torch import Tensor

from .transforms import boxes_xyxy_to_cxcywh

__all__ = ["collate_paired", "SwapCollate"]

_IMAGE_KEYS = ("ir", "vi", "vi_crcb", "ir_task", "vi_task")
_SWAP_PAIRS = (("ir", "vi"), ("ir_task", "vi_task"))


def _ids(samples: Sequence[dict[str, Any]]) -> list[Any]:
    return [s.get("img_id", i) for i, s in enumerate(samples)]


def _stack(samples: Sequence[dict[str, Any]], key: str) -> Tensor:
    shapes = [tuple(s[key].shape) for s in samples]
    if len(set(shapes)) > 1:
        listed = ", ".join(f"{i!r}: {sh}" for i, sh in zip(_ids(samples), shapes, strict=True))
        raise ValueError(
            f"cannot batch {key!r}: samples differ in shape ({listed}); use batch_size=1 "
            "for sets with mixed sizes, or a crop/resize transform"
        )
    return torch.stack([s[key] for s in samples])


def collate_paired(
    samples: Sequence[dict[str, Any]], swap_modalities: bool = False
) -> dict[str, Any]:
    """Batch samples of the paired datasets (``DataLoader(collate_fn=collate_paired)``).

    Output keys:

    * images ``ir``, ``vi``, ``vi_crcb``, ``ir_task``, ``vi_task``: ``[B, C, H, W]``.
      If only some samples are colour, grey ones get neutral chroma (0.5).
    * ``gt_sem_seg``: ``[B, H, W]`` int64.
    * detection, in the format of ultralytics' ``v8DetectionLoss``:
      ``batch_idx`` ``[N]`` float (image index of each box), ``cls`` ``[N, 1]`` float,
      ``bboxes`` ``[N, 4]`` ``cx, cy, w, h`` normalised to [0, 1] by the frame the
      boxes live in (``target_shape``: the task view after ``TaskView``); plus
      ``gt_bboxes`` / ``gt_labels``, per-image lists of the pixel xyxy boxes and
      int64 labels (for mAP evaluation).
    * everything else (``img_id``, ``img_path``, ``ori_shape``, ...): a list.
    * ``swapped``: ``[B]`` bool, which samples have sources exchanged.

    Args:
        samples: items from a paired dataset.
        swap_modalities: TDFusion's ``Switch``: append every sample once more with
            the two sources exchanged (``ir`` <-> ``vi``, ``ir_task`` <-> ``vi_task``), so the
            batch doubles to ``2B``. Targets are repeated unchanged (same scene);
            box ``batch_idx`` of the second half is offset by ``B``; ``vi_crcb`` is
            repeated (it stays the visible chroma).
    """
    if not samples:
        raise ValueError("collate_paired got an empty list of samples")
    n = len(samples)
    batch: dict[str, Any] = {}
    keys = list(dict.fromkeys(k for s in samples for k in s))
    for key in keys:
        present = [key in s for s in samples]
        if key == "vi_crcb" and not all(present):
            filled = [
                dict(s, vi_crcb=s["vi"].new_full((2, *s["vi"].shape[-2:]), 0.5))
                if "vi_crcb" not in s
                else s
                for s in samples
            ]
            batch[key] = _stack(filled, key)
            continue
        if not all(present):
            missing = [i for i, p in zip(_ids(samples), present, strict=True) if not p]
            raise ValueError(
                f"key {key!r} is missing from samples {missing}; cannot batch them together"
            )
        if key in _IMAGE_KEYS or key == "gt_sem_seg":
            batch[key] = _stack(samples, key)
        elif key in ("bboxes", "labels"):
            continue
        else:
            batch[key] = [s[key] for s in samples]

    if "bboxes" in keys:
        cxcywh, cls, idx = [], [], []
        for i, s in enumerate(samples):
            frame = s.get("target_shape", tuple(s["ir"].shape[-2:]))
            cxcywh.append(boxes_xyxy_to_cxcywh(s["bboxes"], frame))
            cls.append(s["labels"].to(torch.float32).reshape(-1, 1))
            idx.append(torch.full((s["bboxes"].shape[0],), float(i)))
        batch["bboxes"] = torch.cat(cxcywh).reshape(-1, 4)
        batch["cls"] = torch.cat(cls).reshape(-1, 1)
        batch["batch_idx"] = torch.cat(idx).reshape(-1)
        batch["gt_bboxes"] = [s["bboxes"] for s in samples]
        batch["gt_labels"] = [s["labels"] for s in samples]

    swapped = batch.pop("swapped", [False] * n)
    batch["swapped"] = torch.tensor([bool(v) for v in swapped])
    if swap_modalities:
        batch = _append_swapped(batch, n)
    return batch


# MMEngine's Runner looks ``collate_fn=dict(type=...)`` up in FUNCTIONS, so configs can say
# ``collate_fn=dict(type='collate_paired', swap_modalities=True)``. This is the one
# registration (importing learnable_fusion_loss.engine imports this module); the guard
# only keeps a re-import (importlib.reload) from raising.
if "collate_paired" not in FUNCTIONS.module_dict:
    FUNCTIONS.register_module(name="collate_paired", module=collate_paired)


def _append_swapped(batch: dict[str, Any], n: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in batch.items():
        if isinstance(value, Tensor) and key not in ("bboxes", "cls", "batch_idx", "swapped"):
            out[key] = torch.cat([value, value])
        elif isinstance(value, list):
            out[key] = value + value
        else:
            out[key] = value
    for a, b in _SWAP_PAIRS:
        if a in batch:
            out[a] = torch.cat([batch[a], batch[b]])
            out[b] = torch.cat([batch[b], batch[a]])
    if "bboxes" in batch:
        out["bboxes"] = torch.cat([batch["bboxes"], batch["bboxes"]])
        out["cls"] = torch.cat([batch["cls"], batch["cls"]])
        out["batch_idx"] = torch.cat([batch["batch_idx"], batch["batch_idx"] + n])
    out["swapped"] = torch.cat([batch["swapped"], ~batch["swapped"]])
    return out


class SwapCollate:
    """Picklable ``collate_fn`` with a fixed ``swap_modalities`` (DataLoader workers, configs)."""

    def __init__(self, swap_modalities: bool = True) -> None:
        self.swap_modalities = swap_modalities

    def __call__(self, samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
        return collate_paired(samples, swap_modalities=self.swap_modalities)
