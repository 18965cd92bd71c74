"""Sample-dict transforms for paired fusion data (box helpers: :mod:`.boxes`).

A *sample* is the dict a dataset of this package returns (see
:mod:`learnable_fusion_loss.datasets.paired` for the keys). Transforms are
callables ``sample -> sample`` registered in
:data:`learnable_fusion_loss.registry.TRANSFORMS`, so configs can list them::

    pipeline=[dict(type='lfl.TaskView', size=(240, 320)),
              dict(type='lfl.PairedRandomCrop', size=256)]

which is a task-driven training recipe: the task sees the whole image resized
(``source_a_task``/``source_b_task`` plus targets rescaled into that frame), the
fusion loss sees a random 256×256 crop (``source_a``/``source_b``/``source_b_crcb``).

Targets (``gt_sem_seg``, ``bboxes``/``labels``) always live in one frame whose
size is ``sample['target_shape']`` ``(H, W)``; transforms keep it up to date.
Boxes are ``x1, y1, x2, y2`` in pixels, scaled by ``W'/W`` in x and ``H'/H`` in y
on resize (some public loaders divide x by the height; this does not).

Randomness uses torch's global generator, so DataLoader worker seeding applies.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..registry import TRANSFORMS
from .boxes import boxes_to_mask, crop_boxes, resize_boxes
from .boxes import boxes_xyxy_to_cxcywh  # noqa: F401  (collate imports it from here)
from .keys import (
    SOURCE_A,
    SOURCE_A_TASK,
    SOURCE_B,
    SOURCE_B_CRCB,
    SOURCE_B_TASK,
    SOURCE_NAMES,
    check_renamed,
)

__all__ = [
    "TaskView",
    "PairedRandomCrop",
    "PairedCenterCrop",
    "PairedResize",
    "RandomModalitySwap",
    "BoxesToWeakMask",
]

#: Image keys of the fusion view (cropped/resized together).
FUSION_IMAGE_KEYS = (SOURCE_A, SOURCE_B, SOURCE_B_CRCB)
#: Image keys of the task view.
TASK_IMAGE_KEYS = (SOURCE_A_TASK, SOURCE_B_TASK)
#: Sample key naming the frame the targets live in: ``"task"`` once :class:`TaskView`
#: has moved them into the task view; absent (or ``"image"``), they share the frame
#: of the fusion-view images and follow their crops and resizes.
TARGET_FRAME_KEY = "target_frame"


# --------------------------------------------------------------------------- images


def _resize_image(x: Tensor, size: Sequence[int], mode: str, antialias: bool) -> Tensor:
    kwargs: dict[str, Any] = {"mode": mode}
    if mode in ("bilinear", "bicubic"):
        kwargs.update(align_corners=False, antialias=antialias)
    return F.interpolate(x[None], size=tuple(size), **kwargs)[0]


def _resize_mask(mask: Tensor, size: Sequence[int]) -> Tensor:
    return F.interpolate(mask[None, None].float(), size=tuple(size), mode="nearest-exact")[
        0, 0
    ].long()


def _size_pair(size: int | Sequence[int], name: str) -> tuple[int, int]:
    if isinstance(size, int):
        pair = (size, size)
    else:
        pair = tuple(int(s) for s in size)
        if len(pair) != 2:
            raise ValueError(f"{name} must be an int or (H, W), got {size!r}")
    if min(pair) <= 0:
        raise ValueError(f"{name} must be positive, got {size!r}")
    return pair  # type: ignore[return-value]


def _checked(sample: dict[str, Any]) -> dict[str, Any]:
    """``sample`` if it is a paired sample dict (old key names refused, naming the new)."""
    check_renamed(sample)
    if SOURCE_A not in sample:
        raise KeyError(
            f"sample has no {SOURCE_A!r} image; transforms expect a paired sample dict"
        )
    return sample


def _image_shape(sample: dict[str, Any]) -> tuple[int, int]:
    return tuple(_checked(sample)[SOURCE_A].shape[-2:])  # type: ignore[return-value]


def _resize_targets(sample: dict[str, Any], size: tuple[int, int]) -> None:
    src = tuple(sample.get("target_shape", _image_shape(sample)))
    if "gt_sem_seg" in sample:
        sample["gt_sem_seg"] = _resize_mask(sample["gt_sem_seg"], size)
    if "bboxes" in sample:
        sample["bboxes"] = resize_boxes(sample["bboxes"], src, size)
    sample["target_shape"] = size


def _has_targets(sample: dict[str, Any]) -> bool:
    return "gt_sem_seg" in sample or "bboxes" in sample


def _targets_in_task_frame(sample: dict[str, Any]) -> bool:
    """True once :class:`TaskView` has put the targets in the task frame."""
    return sample.get(TARGET_FRAME_KEY) == "task"


@TRANSFORMS.register_module()
class TaskView:
    """Add the task view: the whole pair resized to ``size`` as ``source_a_task`` / ``source_b_task``.

    Targets are moved into the task frame (mask: nearest; boxes: scaled per
    axis) and the sample says so, ``sample['target_frame'] = 'task'``, so a later
    :class:`PairedRandomCrop` or :class:`PairedResize` acts on the fusion view only.

    Args:
        size: ``(H, W)``, given explicitly (a method's per-dataset sizes are its
            project's presets; a name here is an error).
        mode: interpolation for images (``'bilinear'`` by default).
        antialias: low-pass before downsampling (off by default).
    """

    def __init__(
        self, size: Sequence[int], mode: str = "bilinear", antialias: bool = False
    ) -> None:
        if isinstance(size, str):
            raise ValueError(
                f"unknown task-view preset {size!r}: TaskView takes an explicit size (H, W); "
                "named sizes are a project's presets (look the size up there and pass it)"
            )
        self.size = _size_pair(size, "size")
        self.mode = mode
        self.antialias = antialias

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        sample = dict(_checked(sample))
        for src, dst in ((SOURCE_A, SOURCE_A_TASK), (SOURCE_B, SOURCE_B_TASK)):
            sample[dst] = _resize_image(sample[src], self.size, self.mode, self.antialias)
        if _has_targets(sample):
            _resize_targets(sample, self.size)
        sample[TARGET_FRAME_KEY] = "task"
        return sample

    def __repr__(self) -> str:
        return f"TaskView(size={self.size}, mode={self.mode!r}, antialias={self.antialias})"


def _crop_sample(
    sample: dict[str, Any],
    box: tuple[int, int, int, int],
    crop_targets: bool | None,
    min_box_size: float,
) -> dict[str, Any]:
    x0, y0, x1, y1 = box
    out = dict(sample)
    for key in FUSION_IMAGE_KEYS:
        if key in out:
            out[key] = out[key][..., y0:y1, x0:x1]
    # Targets follow the crop only when they share its frame (not moved by TaskView).
    if crop_targets is None:
        crop_targets = not _targets_in_task_frame(sample)
    if crop_targets and _has_targets(sample):
        if tuple(sample.get("target_shape", (y1, x1))) != _image_shape(sample):
            raise ValueError(
                f"cannot crop targets of sample {sample.get('img_id')!r}: they live in a "
                f"{tuple(sample['target_shape'])} frame, the images are "
                f"{_image_shape(sample)}"
            )
        if "gt_sem_seg" in out:
            out["gt_sem_seg"] = out["gt_sem_seg"][y0:y1, x0:x1]
        if "bboxes" in out:
            out["bboxes"], keep = crop_boxes(out["bboxes"], box, min_box_size)
            out["labels"] = out["labels"][keep]
        out["target_shape"] = (y1 - y0, x1 - x0)
    out["crop_box"] = box
    return out


@TRANSFORMS.register_module()
class PairedRandomCrop:
    """Random ``size`` crop at the same place in ``source_a``, ``source_b``, ``source_b_crcb``.

    (The fusion view; the task view, if any, is left whole.)

    Args:
        size: crop ``(H, W)`` or side length (default 256).
        crop_targets: crop ``gt_sem_seg``/``bboxes`` too. ``None`` (default): only
            when they share the images' frame, i.e. unless ``sample['target_frame']``
            is ``'task'`` (set by :class:`TaskView`: the targets belong to the task view).
        pad_if_needed: reflect-pad images smaller than the crop (else an error
            naming the sample and its size).
        min_box_size: cropped boxes narrower or lower than this (pixels) are dropped.

    The crop window is stored as ``sample['crop_box'] = (x0, y0, x1, y1)``.
    """

    def __init__(
        self,
        size: int | Sequence[int] = 256,
        crop_targets: bool | None = None,
        pad_if_needed: bool = False,
        min_box_size: float = 1.0,
    ) -> None:
        self.size = _size_pair(size, "size")
        self.crop_targets = crop_targets
        self.pad_if_needed = pad_if_needed
        self.min_box_size = min_box_size

    def _pad(self, sample: dict[str, Any]) -> dict[str, Any]:
        h, w = _image_shape(sample)
        ch, cw = self.size
        if h >= ch and w >= cw:
            return sample
        if not self.pad_if_needed:
            raise ValueError(
                f"sample {sample.get('img_id')!r} ({sample.get('img_path', '?')}) "
                f"is {h}x{w} (HxW), "
                f"smaller than the crop {ch}x{cw}; use pad_if_needed=True or a smaller crop"
            )
        pad_h, pad_w = max(ch - h, 0), max(cw - w, 0)
        out = dict(sample)
        for key in FUSION_IMAGE_KEYS:
            if key in out:
                mode = "reflect" if pad_h < h and pad_w < w else "replicate"
                out[key] = F.pad(out[key][None], (0, pad_w, 0, pad_h), mode=mode)[0]
        in_task_frame = _targets_in_task_frame(out)
        if "gt_sem_seg" in out and not in_task_frame:
            out["gt_sem_seg"] = F.pad(out["gt_sem_seg"], (0, pad_w, 0, pad_h), value=0)
            out["target_shape"] = (h + pad_h, w + pad_w)
        elif "bboxes" in out and not in_task_frame:
            out["target_shape"] = (h + pad_h, w + pad_w)
        return out

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        sample = self._pad(sample)
        h, w = _image_shape(sample)
        ch, cw = self.size
        y0 = int(torch.randint(0, h - ch + 1, (1,)))
        x0 = int(torch.randint(0, w - cw + 1, (1,)))
        return _crop_sample(
            sample, (x0, y0, x0 + cw, y0 + ch), self.crop_targets, self.min_box_size
        )

    def __repr__(self) -> str:
        return f"PairedRandomCrop(size={self.size}, crop_targets={self.crop_targets})"


@TRANSFORMS.register_module()
class PairedCenterCrop(PairedRandomCrop):
    """Deterministic centre crop with the same rules as :class:`PairedRandomCrop`."""

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        sample = self._pad(sample)
        h, w = _image_shape(sample)
        ch, cw = self.size
        y0, x0 = (h - ch) // 2, (w - cw) // 2
        return _crop_sample(
            sample, (x0, y0, x0 + cw, y0 + ch), self.crop_targets, self.min_box_size
        )


@TRANSFORMS.register_module()
class PairedResize:
    """Resize the fusion view (``source_a``, ``source_b``, ``source_b_crcb``) and its targets.

    The targets are resized when they share the fusion view's frame.

    Targets in the task frame (``sample['target_frame'] == 'task'``) are left alone.

    Args:
        size: output ``(H, W)``.
        mode: interpolation for images.
        antialias: low-pass before downsampling.
    """

    def __init__(self, size: Sequence[int], mode: str = "bilinear", antialias: bool = True) -> None:
        self.size = _size_pair(size, "size")
        self.mode = mode
        self.antialias = antialias

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        sample = dict(_checked(sample))
        targets_in_frame = not _targets_in_task_frame(sample)
        if targets_in_frame and _has_targets(sample):
            _resize_targets(sample, self.size)
        for key in FUSION_IMAGE_KEYS:
            if key in sample:
                sample[key] = _resize_image(sample[key], self.size, self.mode, self.antialias)
        return sample


@TRANSFORMS.register_module()
class RandomModalitySwap:
    """With probability ``prob`` exchange the sources (A <-> B, in both views).

    ``source_a`` <-> ``source_b``, ``source_a_task`` <-> ``source_b_task``, and
    ``source_names`` is reversed with them. The per-sample form of a source-swap
    augmentation (the batch form feeds every batch in both orders; see
    ``collate_paired(swap_modalities=True)``). Targets are unchanged: the scene, hence
    the labels, is the same. ``source_b_crcb`` stays B's chroma. ``sample['swapped']``
    records the choice.
    """

    def __init__(self, prob: float = 0.5) -> None:
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"prob must be in [0, 1], got {prob}")
        self.prob = prob

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        sample = dict(_checked(sample))
        swap = bool(torch.rand(()) < self.prob)
        if swap:
            sample[SOURCE_A], sample[SOURCE_B] = sample[SOURCE_B], sample[SOURCE_A]
            if SOURCE_A_TASK in sample:
                sample[SOURCE_A_TASK], sample[SOURCE_B_TASK] = (
                    sample[SOURCE_B_TASK], sample[SOURCE_A_TASK])
            if SOURCE_NAMES in sample:
                sample[SOURCE_NAMES] = tuple(sample[SOURCE_NAMES])[::-1]
        sample["swapped"] = swap
        return sample


@TRANSFORMS.register_module()
class BoxesToWeakMask:
    """Rasterise ``bboxes``/``labels`` into a *weak* segmentation mask ``gt_sem_seg``.

    Class of a pixel = box class id + 1, background 0, larger boxes drawn first
    so small ones stay visible (see :func:`boxes_to_mask`). This lets the
    segmentation path train on a detection set's boxes when no dense masks are
    available; the masks are coarse (box-shaped), so scores against them are not
    comparable to scores against real dense masks. Put it before
    :class:`TaskView` so the mask is made at full resolution and resized.

    Args:
        keep_boxes: keep ``bboxes``/``labels`` in the sample (default drops them,
            so the sample is a plain segmentation sample).
    """

    def __init__(self, keep_boxes: bool = False) -> None:
        self.keep_boxes = keep_boxes

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        if "bboxes" not in sample:
            raise KeyError(f"sample {sample.get('img_id')!r} has no 'bboxes' to rasterise")
        sample = dict(sample)
        shape = tuple(sample.get("target_shape", _image_shape(sample)))
        sample["gt_sem_seg"] = boxes_to_mask(sample["bboxes"], sample["labels"], shape)
        sample["weak_labels"] = True
        if not self.keep_boxes:
            sample.pop("bboxes")
            sample.pop("labels")
        return sample
