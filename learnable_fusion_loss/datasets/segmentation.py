"""Paired IR/VIS sets with semantic-segmentation masks (class-index PNGs).

* :class:`PairedSegDataset`: ``root/split/{ir_dir,vi_dir,label_dir}``, files with the
  same stem (by default ``ir``, ``vi`` and ``Segmentation_labels``); masks are
  8-bit class-index images.
* :class:`FMBSegDataset`: the FMB layout (``JinyuanLiu-CV/SegMiF``),
  ``{train,test}/{Infrared,Visible,Label}`` (``Label/`` holds class-index PNGs;
  ``color/`` holds colour visualisations and is *not* a mask), 15 classes with
  0 = background/unlabelled.

Class names (index = mask value) are the dataset's ``metainfo['classes']``, given
by its config; the library names none.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..registry import DATASETS
from .folders import IMAGE_EXTENSIONS, list_images
from .labels import LabelError, read_mask
from .keys import SOURCE_A
from .paired import PairedFusionDataset, PairEntry, Sample, Transform

__all__ = ["PairedSegDataset", "FMBSegDataset"]

#: Classes of a mask set when neither ``num_classes`` nor class names are given.
_DEFAULT_NUM_CLASSES = 9


@DATASETS.register_module()
class PairedSegDataset(PairedFusionDataset):
    """Paired IR/VIS images with a class-index mask per pair.

    Items carry ``gt_sem_seg`` ``[H, W]`` int64 (values in ``[0, num_classes)`` or
    ``ignore_index``) besides the keys of :class:`~.paired.PairedFusionDataset`;
    their ``source_names`` are ``('ir', 'vi')`` (the ``ir_dir``/``vi_dir`` modalities).

    Args:
        root: dataset folder; images are under ``root/split/<ir_dir|vi_dir|label_dir>``.
        split: sub-folder (``'train'``/``'test'``), or ``None`` for none.
        ir_dir, vi_dir, label_dir: modality and mask folder names.
        num_classes: number of classes including background 0 (default: the
            number of class names given, else 9).
        ignore_index: mask value allowed besides the classes (``None``: none).
        class_names: optional names, ``len == num_classes`` (the same as
            ``metainfo=dict(classes=...)``).
        ids: optional subset (list of ids or a split-list file).
        pipeline, keep_colour, strict, check_sizes, metainfo: see the base class.

    Raises:
        PairingError: missing partner or mask, size mismatch (``strict``).
        LabelError: when an item is loaded, a mask that is colour, out of range
            or of another size than its images.
    """

    SOURCE_NAMES = ("ir", "vi")

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str | None = "train",
        ir_dir: str = "ir",
        vi_dir: str = "vi",
        label_dir: str = "Segmentation_labels",
        num_classes: int | None = None,
        ignore_index: int | None = 255,
        class_names: Sequence[str] | None = None,
        ids: Sequence[str] | str | os.PathLike[str] | None = None,
        pipeline: Sequence[dict[str, Any] | Transform] | None = None,
        keep_colour: bool = True,
        strict: bool = True,
        check_sizes: bool = True,
        metainfo: Mapping[str, Any] | None = None,
    ) -> None:
        class_names = self._given_classes(class_names, metainfo)
        if num_classes is None:
            num_classes = len(class_names) if class_names is not None else _DEFAULT_NUM_CLASSES
        super().__init__(pipeline, keep_colour, strict, check_sizes, metainfo)
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2 (background + classes), got {num_classes}")
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(
                f"class_names has {len(class_names)} names but num_classes is {num_classes}"
            )
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        if class_names is not None:
            self._set_classes(class_names)
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
        shape = tuple(sample[SOURCE_A].shape[-2:])
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
        kwargs.setdefault("num_classes", 15)
        super().__init__(root, split, **kwargs)
