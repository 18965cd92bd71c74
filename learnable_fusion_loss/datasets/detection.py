"""Paired IR/VIS sets with object boxes: YOLO txt and VOC xml (M3FD, LLVIP layouts).

Items carry ``bboxes`` ``[N, 4]`` float32 ``x1, y1, x2, y2`` in pixels of the
stored images, ``labels`` ``[N]`` int64 and ``target_shape`` ``(H, W)``. An
empty label file (or an xml without ``<object>``) is a valid image with no
objects (``N == 0``). :func:`~.collate.collate_paired` batches them with the boxes
kept per sample; a task adapter's codec converts them to its own format (e.g.
``YOLOv8Task.collate_targets``: ultralytics' ``batch_idx``, ``cls``, ``bboxes``).

Layouts:

* YOLO: ``root/classes.txt`` (one name a line, unless the classes are given),
  ``root/{train,test}/{ir,vi}/<id>.png`` and ``root/{train,test}/<label_dir>/<id>.txt``
  with ``label_dir`` one of ``labels`` (boxes drawn on fused images, default),
  ``labels_ir`` or ``labels_vi``.
* M3FD (``M3FD_Detection``): ``root/Ir``, ``root/Vis``, ``root/Annotation/<id>.xml``;
  there is no official split, pass one (``ids``: list or file, e.g. a file of
  annotation lines: the first token of a line is the file).
* LLVIP: ``root/infrared/{train,test}``, ``root/visible/{train,test}``,
  ``root/Annotations/<id>.xml``.

Class names (index = label id) are the dataset's ``metainfo['classes']``: given
by its config (``metainfo=dict(classes=(...))`` or ``class_names``) or, for YOLO
sets, read from ``classes.txt``. The library names no dataset's classes; a VOC
set without them is an error, since its xml files name the classes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import Tensor

from ..registry import DATASETS
from .io import image_header_size
from .labels import read_class_names, read_voc_boxes, read_yolo_boxes
from .keys import SOURCE_A
from .paired import PairedFusionDataset, PairEntry, Sample, Transform

__all__ = [
    "YoloPairedDetDataset",
    "VOCPairedDetDataset",
    "M3FDDataset",
    "LLVIPDataset",
]


class _DetDataset(PairedFusionDataset):
    """Paired IR/VIS sets with boxes; their samples' ``source_names`` are ``('ir', 'vi')``."""

    SOURCE_NAMES = ("ir", "vi")

    def _attach_labels(
        self, entries: list[PairEntry], label_dir: Path, suffix: str
    ) -> list[PairEntry]:
        problems: list[str] = []
        kept: list[PairEntry] = []
        for e in entries:
            path = label_dir / f"{e.img_id}{suffix}"
            if not path.is_file():
                problems.append(
                    f"pair {e.img_id!r} ({str(e.path_a)!r}) has no label file {str(path)!r}"
                )
                continue
            e.label_path = path
            kept.append(e)
        self._report(f"labels in {str(label_dir)!r}", problems)
        return kept

    def _read_boxes(self, entry: PairEntry, image_size: tuple[int, int]) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def load_target(self, entry: PairEntry, sample: Sample) -> None:
        shape = tuple(sample[SOURCE_A].shape[-2:])
        if "boxes" in entry.extra:
            boxes, labels = entry.extra["boxes"]
        else:
            boxes, labels = self._read_boxes(entry, shape)  # type: ignore[arg-type]
        sample["bboxes"] = boxes.clone()
        sample["labels"] = labels.clone()
        sample["target_shape"] = shape
        sample["label_path"] = str(entry.label_path)

    @property
    def class_names(self) -> tuple[str, ...]:
        """The class names (index = label id); a detection set always has them."""
        return tuple(self._metainfo["classes"])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


@DATASETS.register_module()
class YoloPairedDetDataset(_DetDataset):
    """Paired IR/VIS images with YOLO txt boxes (``root/classes.txt``, ``root/split/{ir,vi,labels}``).

    Label files are all parsed at construction (they are small), so a malformed
    line or an out-of-range class id fails early with the file and line.

    Args:
        root: dataset folder (holds ``classes.txt`` and the split folders).
        split: ``'train'``/``'test'`` sub-folder, or ``None``.
        ir_dir, vi_dir: modality folders.
        label_dir: ``'labels'`` (fusion annotations), ``'labels_ir'`` or ``'labels_vi'``.
        classes_file: class-name file, relative to ``root`` unless absolute.
        class_names: give names directly instead of ``classes_file`` (the same as
            ``metainfo=dict(classes=...)``).
        ids: optional subset (list of ids or split-list file).
        pipeline, keep_colour, strict, check_sizes, metainfo: see the base class.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str | None = "train",
        ir_dir: str = "ir",
        vi_dir: str = "vi",
        label_dir: str = "labels",
        classes_file: str | os.PathLike[str] = "classes.txt",
        class_names: Sequence[str] | None = None,
        ids: Sequence[str] | str | os.PathLike[str] | None = None,
        pipeline: Sequence[dict[str, Any] | Transform] | None = None,
        keep_colour: bool = True,
        strict: bool = True,
        check_sizes: bool = True,
        metainfo: Mapping[str, Any] | None = None,
    ) -> None:
        class_names = self._given_classes(class_names, metainfo)
        super().__init__(pipeline, keep_colour, strict, check_sizes, metainfo)
        self.root = Path(root)
        if class_names is None:
            cf = Path(classes_file)
            class_names = read_class_names(cf if cf.is_absolute() else self.root / cf)
        self._set_classes(class_names)
        base = self.root / split if split else self.root
        id_list, source = self._read_ids(ids)
        entries = self._collect_pairs(base / ir_dir, base / vi_dir, id_list, source)
        entries = self._attach_labels(entries, base / label_dir, ".txt")
        for e in entries:
            size = e.size if e.size is not None else image_header_size(e.path_a)
            e.extra["boxes"] = read_yolo_boxes(e.label_path, size, len(self.class_names))  # type: ignore[arg-type]
        self.entries = entries


@DATASETS.register_module()
class VOCPairedDetDataset(_DetDataset):
    """Paired IR/VIS images with Pascal-VOC xml boxes in their own folders.

    Annotations are parsed when an item is loaded (``validate_labels=True``
    parses them all at construction instead).

    Args:
        ir_dir, vi_dir: modality folders.
        ann_dir: folder of ``<id>.xml``.
        class_names: class list (index = label id); or give ``metainfo=dict(classes=...)``.
        ids: optional subset (list of ids or split-list file).
        skip_difficult: drop ``difficult`` objects.
        validate_labels: parse every annotation at construction.
        pipeline, keep_colour, strict, check_sizes, metainfo: see the base class.
    """

    def __init__(
        self,
        ir_dir: str | os.PathLike[str],
        vi_dir: str | os.PathLike[str],
        ann_dir: str | os.PathLike[str],
        class_names: Sequence[str] | None = None,
        ids: Sequence[str] | str | os.PathLike[str] | None = None,
        skip_difficult: bool = False,
        validate_labels: bool = False,
        pipeline: Sequence[dict[str, Any] | Transform] | None = None,
        keep_colour: bool = True,
        strict: bool = True,
        check_sizes: bool = True,
        metainfo: Mapping[str, Any] | None = None,
    ) -> None:
        class_names = self._given_classes(class_names, metainfo)
        if not class_names:
            raise ValueError(
                f"{type(self).__name__} needs its class list (index = label id): pass "
                "metainfo=dict(classes=(...)) (or class_names), e.g. from the dataset's config"
            )
        super().__init__(pipeline, keep_colour, strict, check_sizes, metainfo)
        self._set_classes(class_names)
        self.skip_difficult = skip_difficult
        id_list, source = self._read_ids(ids)
        entries = self._collect_pairs(ir_dir, vi_dir, id_list, source)
        self.entries = self._attach_labels(entries, Path(ann_dir), ".xml")
        if validate_labels:
            for e in self.entries:
                self._read_boxes(e, e.size if e.size is not None else image_header_size(e.path_a))

    def _read_boxes(self, entry: PairEntry, image_size: tuple[int, int]) -> tuple[Tensor, Tensor]:
        assert entry.label_path is not None
        return read_voc_boxes(entry.label_path, self.class_names, image_size, self.skip_difficult)


@DATASETS.register_module()
class M3FDDataset(VOCPairedDetDataset):
    """M3FD detection: ``root/Ir``, ``root/Vis``, ``root/Annotation/*.xml``.

    The classes (6; M3FD fixes no id order) come from ``metainfo`` or ``class_names``.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        ids: Sequence[str] | str | os.PathLike[str] | None = None,
        class_names: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        root = Path(root)
        self.root = root
        super().__init__(root / "Ir", root / "Vis", root / "Annotation", class_names, ids, **kwargs)


@DATASETS.register_module()
class LLVIPDataset(VOCPairedDetDataset):
    """LLVIP: ``root/infrared/<split>``, ``root/visible/<split>``, ``root/Annotations/*.xml``.

    The classes (one) come from ``metainfo`` or ``class_names``.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "train",
        ids: Sequence[str] | str | os.PathLike[str] | None = None,
        class_names: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        root = Path(root)
        self.root = root
        super().__init__(
            root / "infrared" / split,
            root / "visible" / split,
            root / "Annotations",
            class_names,
            ids,
            **kwargs,
        )
