"""Paired IR/VIS sets with semantic-segmentation masks (MSRS, FMB layouts).

Layouts (checked against the public repositories, see the class docstrings):

* MSRS (``Linfeng-Tang/MSRS``): ``{train,test}/ir``, ``{train,test}/vi`` and
  ``{train,test}/Segmentation_labels``, PNG files with the same name; masks are
  8-bit class-index images with 9 classes (0 unlabelled/background, 1 car,
  2 person, 3 bike, 4 curve, 5 car_stop, 6 guardrail, 7 color_cone, 8 bump).
* FMB (``JinyuanLiu-CV/SegMiF``): ``{train,test}/Infrared``, ``{train,test}/Visible``,
  ``{train,test}/Label`` (class-index PNG; ``color/`` holds the colour
  visualisations and is *not* a mask), 15 classes with 0 = background/unlabelled
  (TDFusion trains FMB with ``class_num=14`` + background).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..registry import DATASETS
from .folders import IMAGE_EXTENSIONS, list_images
from .labels import LabelError, read_mask
from .paired import PairedFusionDataset, PairEntry, Sample, Transform

__all__ = ["MSRS_CLASSES", "FMB_CLASSES", "PairedSegDataset", "MSRSSegDataset", "FMBSegDataset"]

#: MSRS segmentation classes (index = mask value), from the MSRS README / visualize.py.
MSRS_CLASSES: tuple[str, ...] = (
    "unlabelled",
    "car",
    "person",
    "bike",
    "curve",
    "car_stop",
    "guardrail",
    "color_cone",
    "bump",
)
#: FMB classes (index = mask value) as listed by public FMB loaders (SegMiF benchmark).
FMB_CLASSES: tuple[str, ...] = (
    "unlabelled",
    "road",
    "sidewalk",
    "building",
    "lamp",
    "sign",
    "vegetation",
    "sky",
    "person",
    "car",
    "truck",
    "bus",
    "motorcycle",
    "bicycle",
    "pole",
)


@DATASETS.register_module()
class PairedSegDataset(PairedFusionDataset):
    """Paired IR/VIS images with a class-index mask per pair.

    Items carry ``gt_sem_seg`` ``[H, W]`` int64 (values in ``[0, num_classes)`` or
    ``ignore_index``) besides the keys of :class:`~.paired.PairedFusionDataset`.

    Args:
        root: dataset folder; images are under ``root/split/<ir_dir|vi_dir|label_dir>``.
        split: sub-folder (``'train'``/``'test'``), or ``None`` for none.
        ir_dir, vi_dir, label_dir: modality and mask folder names.
        num_classes: number of classes including background 0.
        ignore_index: mask value allowed besides the classes (``None``: none).
        class_names: optional names, ``len == num_classes``.
        ids: optional subset (list of ids or a split-list file).
        pipeline, keep_colour, strict, check_sizes: see the base class.

    Raises:
        PairingError: missing partner or mask, size mismatch (``strict``).
        LabelError: when an item is loaded, a mask that is colour, out of range
            or of another size than its images.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str | None = "train",
        ir_dir: str = "ir",
        vi_dir: str = "vi",
        label_dir: str = "Segmentation_labels",
        num_classes: int = 9,
        ignore_index: int | None = 255,
        class_names: Sequence[str] | None = None,
        ids: Sequence[str] | str | os.PathLike[str] | None = None,
        pipeline: Sequence[dict[str, Any] | Transform] | None = None,
        keep_colour: bool = True,
        strict: bool = True,
        check_sizes: bool = True,
    ) -> None:
        super().__init__(pipeline, keep_colour, strict, check_sizes)
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2 (background + classes), got {num_classes}")
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(
                f"class_names has {len(class_names)} names but num_classes is {num_classes}"
            )
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.class_names = tuple(class_names) if class_names is not None else None
        base = Path(root) / split if split else Path(root)
        self.root = Path(root)
        id_list, source = self._read_ids(ids)
        entries = self._collect_pairs(base / ir_dir, base / vi_dir, id_list, source)
        masks, mask_problems = list_images(base / label_dir, IMAGE_EXTENSIONS)
        problems = list(mask_problems)
        kept: list[PairEntry] = []
        for e in entries:
            if e.img_id not in masks:
                problems.append(
                    f"pair {e.img_id!r} ({str(e.path_a)!r}) has no mask in "
                    f"{str(base / label_dir)!r}"
                )
                continue
            e.label_path = masks[e.img_id]
            kept.append(e)
        self._report(f"masks for {str(base)!r}", problems)
        self.entries = kept

    def load_target(self, entry: PairEntry, sample: Sample) -> None:
        assert entry.label_path is not None
        mask = read_mask(entry.label_path, self.num_classes, self.ignore_index)
        shape = tuple(sample["ir"].shape[-2:])
        if tuple(mask.shape) != shape:
            raise LabelError(
                entry.label_path,
                f"mask is {mask.shape[1]}x{mask.shape[0]} but its images are "
                f"{shape[1]}x{shape[0]} (WxH)",
            )
        sample["gt_sem_seg"] = mask
        sample["target_shape"] = shape
        sample["label_path"] = str(entry.label_path)


@DATASETS.register_module()
class MSRSSegDataset(PairedSegDataset):
    """MSRS segmentation: ``root/{train,test}/{ir,vi,Segmentation_labels}``, 9 classes."""

    def __init__(self, root: str | os.PathLike[str], split: str = "train", **kwargs: Any) -> None:
        kwargs.setdefault("ir_dir", "ir")
        kwargs.setdefault("vi_dir", "vi")
        kwargs.setdefault("label_dir", "Segmentation_labels")
        kwargs.setdefault("num_classes", len(MSRS_CLASSES))
        kwargs.setdefault("class_names", MSRS_CLASSES)
        super().__init__(root, split, **kwargs)


@DATASETS.register_module()
class FMBSegDataset(PairedSegDataset):
    """FMB: ``root/{train,test}/{Infrared,Visible,Label}``, 15 classes (0 = background).

    Assumed from the SegMiF release and public FMB loaders (the data is not
    available here to verify): ``Label/`` holds class-index PNGs with the
    image's file name; ``color/`` (colour visualisation) is ignored.
    """

    def __init__(self, root: str | os.PathLike[str], split: str = "train", **kwargs: Any) -> None:
        kwargs.setdefault("ir_dir", "Infrared")
        kwargs.setdefault("vi_dir", "Visible")
        kwargs.setdefault("label_dir", "Label")
        kwargs.setdefault("num_classes", len(FMB_CLASSES))
        kwargs.setdefault("class_names", FMB_CLASSES)
        super().__init__(root, split, **kwargs)
