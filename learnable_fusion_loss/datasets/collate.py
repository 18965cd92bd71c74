"""Batching of paired samples; targets stay per sample, in no task's format."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from mmengine.registry import FUNCTIONS
from torch import Tensor

from .keys import (
    SOURCE_A,
    SOURCE_A_TASK,
    SOURCE_B,
    SOURCE_B_CRCB,
    SOURCE_B_TASK,
    SOURCE_NAMES,
    check_renamed,
)

__all__ = ["collate_paired", "SwapCollate"]

_IMAGE_KEYS = (SOURCE_A, SOURCE_B, SOURCE_B_CRCB, SOURCE_A_TASK, SOURCE_B_TASK)
_SWAP_PAIRS = ((SOURCE_A, SOURCE_B), (SOURCE_A_TASK, SOURCE_B_TASK))
#: per-sample box keys of a sample, and their names in a batch
_BOX_KEYS = {"bboxes": "gt_bboxes", "labels": "gt_labels"}


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

    * images ``source_a``, ``source_b``, ``source_b_crcb``, ``source_a_task``,
      ``source_b_task``: ``[B, C, H, W]``. If only some samples are colour, grey ones
      get neutral chroma (0.5).
    * ``source_names``: one tuple for the batch, e.g. ``('ir', 'vi')``: the modalities
      of the sources in their unswapped order (a sample that
      :class:`~.transforms.RandomModalitySwap` swapped carries them reversed, and its
      ``swapped`` says so). Samples that name other modalities are refused.
    * targets, per sample and in no task's format (the task adapter's
      ``collate_targets`` makes its batch format of them, see
      :mod:`learnable_fusion_loss.tasks.targets`):

      - ``gt_sem_seg``: ``[B, H, W]`` int64, row ``i`` the class map of sample ``i``;
      - detection: ``gt_bboxes`` / ``gt_labels``, lists with each sample's pixel
        ``x1, y1, x2, y2`` boxes ``[n_i, 4]`` and int64 labels ``[n_i]``, in the frame
        of its task image (``source_a_task``; ``source_a`` without a task view). A sample whose
        ``target_shape`` is another frame is refused.

      (Before, detection batches also had ultralytics' ``batch_idx``, ``cls`` and
      normalised ``bboxes``; :func:`learnable_fusion_loss.tasks.yolov8.collate_ultralytics`
      is this function plus those keys.)
    * everything else (``img_id``, ``img_path``, ``ori_shape``, ``target_shape``, ...): a list.
    * ``swapped``: ``[B]`` bool, which samples have sources exchanged.

    Args:
        samples: items from a paired dataset.
        swap_modalities: the source swap: append every sample once more with
            the two sources exchanged (``source_a`` <-> ``source_b``, ``source_a_task``
            <-> ``source_b_task``), so the batch doubles to ``2B``. Targets are repeated
            unchanged (same scene); ``source_b_crcb`` is repeated (it stays B's chroma);
            ``source_names`` stays the unswapped order (``swapped`` marks the copies).
    """
    if not samples:
        raise ValueError("collate_paired got an empty list of samples")
    n = len(samples)
    batch: dict[str, Any] = {}
    for s in samples:
        check_renamed(s)
    keys = list(dict.fromkeys(k for s in samples for k in s))
    for key in keys:
        present = [key in s for s in samples]
        if key == SOURCE_NAMES and all(present):
            batch[key] = _batch_source_names(samples)
            continue
        if key == SOURCE_B_CRCB and not all(present):
            filled = [
                {**s, SOURCE_B_CRCB: s[SOURCE_B].new_full((2, *s[SOURCE_B].shape[-2:]), 0.5)}
                if SOURCE_B_CRCB not in s
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
        elif key in _BOX_KEYS:
            batch[_BOX_KEYS[key]] = [s[key] for s in samples]
        else:
            batch[key] = [s[key] for s in samples]
    if "bboxes" in keys:
        _check_box_frames(samples)

    swapped = batch.pop("swapped", [False] * n)
    batch["swapped"] = torch.tensor([bool(v) for v in swapped])
    if swap_modalities:
        batch = _append_swapped(batch)
    return batch


def _batch_source_names(samples: Sequence[dict[str, Any]]) -> tuple[str, ...]:
    """The one ``source_names`` of a batch (each sample's, unswapped); disagreement refused."""
    names = []
    for s in samples:
        own = tuple(s[SOURCE_NAMES])
        names.append(own[::-1] if s.get("swapped") else own)
    if len(set(names)) > 1:
        listed = ", ".join(f"{i!r}: {nm}" for i, nm in zip(_ids(samples), names, strict=True))
        raise ValueError(
            f"cannot batch samples of different modalities (source_names, unswapped: {listed}); "
            "batch each pair of modalities on its own"
        )
    return names[0]


def _check_box_frames(samples: Sequence[dict[str, Any]]) -> None:
    """Pixel boxes must live in the frame of their sample's task image."""
    for sample_id, s in zip(_ids(samples), samples, strict=True):
        image = tuple((s[SOURCE_A_TASK] if SOURCE_A_TASK in s else s[SOURCE_A]).shape[-2:])
        frame = tuple(s.get("target_shape", image))
        if frame != image:
            raise ValueError(
                f"the boxes of sample {sample_id!r} live in a {frame} frame, its task image is "
                f"{image}: move them with the image (TaskView, or a crop that crops targets)"
            )


# MMEngine's Runner looks ``collate_fn=dict(type=...)`` up in FUNCTIONS, so configs can say
# ``collate_fn=dict(type='collate_paired', swap_modalities=True)``. This is the one
# registration (importing learnable_fusion_loss.engine imports this module); the guard
# only keeps a re-import (importlib.reload) from raising.
if "collate_paired" not in FUNCTIONS.module_dict:
    FUNCTIONS.register_module(name="collate_paired", module=collate_paired)


def _append_swapped(batch: dict[str, Any]) -> dict[str, Any]:
    """The batch followed by its copy with the sources exchanged (targets per sample, repeated)."""
    out: dict[str, Any] = {}
    for key, value in batch.items():
        if isinstance(value, Tensor) and key != "swapped":
            out[key] = torch.cat([value, value])
        elif isinstance(value, list):
            out[key] = value + value
        else:
            out[key] = value
    for a, b in _SWAP_PAIRS:
        if a in batch:
            out[a] = torch.cat([batch[a], batch[b]])
            out[b] = torch.cat([batch[b], batch[a]])
    out["swapped"] = torch.cat([batch["swapped"], ~batch["swapped"]])
    return out


class SwapCollate:
    """Picklable ``collate_fn`` with a fixed ``swap_modalities`` (DataLoader workers, configs)."""

    def __init__(self, swap_modalities: bool = True) -> None:
        self.swap_modalities = swap_modalities

    def __call__(self, samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
        return collate_paired(samples, swap_modalities=self.swap_modalities)
