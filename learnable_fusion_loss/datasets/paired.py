"""Paired-modality datasets: the shared base and the unlabelled folder-pair set.

Every dataset of this package returns a dict per item:

=================  ==============================================================
key                value
=================  ==============================================================
``source_a``       source A, ``[1, H, W]`` float32 in [0, 1] (infrared; MRI for
                   the medical sets). A colour file is reduced to BT.601 luma;
                   an RGB file with three equal channels becomes one channel.
``source_b``       source B, ``[1, H, W]``: the visible image's Y channel (Y of
                   :func:`~.io.rgb_to_ycrcb`), or the grey image itself (CT; the
                   Y of PET/SPECT pseudo-colour).
``source_b_crcb``  ``[2, H, W]`` Cr, Cb of source B, only when B is colour (and
                   ``keep_colour``); with the fused Y it gives a colour output
                   via :func:`~.io.ycrcb_to_rgb`.
``source_a_task``, the task view (after :class:`~.transforms.TaskView`), e.g.
``source_b_task``  ``[1, 240, 320]``.
``source_names``   the modalities of A and B, e.g. ``('ir', 'vi')`` (the dataset's
                   :attr:`~PairedFusionDataset.source_names`; display metadata,
                   the keys above are the same for every modality).
``gt_sem_seg``     ``[H, W]`` int64 class mask (segmentation sets, or weak
                   masks from :class:`~.transforms.BoxesToWeakMask`).
``bboxes``         ``[N, 4]`` float32 ``x1, y1, x2, y2`` pixels (detection sets).
``labels``         ``[N]`` int64 class ids (detection sets).
``target_shape``   ``(H, W)`` of the frame the targets live in.
``target_frame``   ``'task'`` once :class:`~.transforms.TaskView` has moved the
                   targets into the task view; absent while they share the
                   frame of ``source_a``/``source_b`` (and follow their crops and
                   resizes).
``img_id``         sample id (file stem), ``str``.
``img_path``       path of the source-B (visible) file, ``str``; ``ir_path`` and
                   ``vi_path`` name both files; ``label_path`` the label file.
``ori_shape``      ``(H, W)`` of the files as stored.
=================  ==============================================================

The sample keys were named after infrared/visible before (``ir``, ``vi``, ...); an
old name is refused with its new one (:data:`~.keys.RENAMED_KEYS`).

Pairing is by file stem across modality folders (any image extension).
Problems found at construction (missing partner, ids from a split list that are
absent, size mismatch between the two files of a pair) raise
:class:`PairingError` naming the files; ``strict=False`` drops those pairs with a
warning instead. Unreadable images raise :class:`~.io.ImageReadError` when the
item is loaded.
"""

from __future__ import annotations

import copy
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from ..registry import DATASETS, TRANSFORMS
from .folders import IMAGE_EXTENSIONS, find_pairs, list_images
from .io import image_header_size, load_image, rgb_to_luma, rgb_to_ycrcb
from .keys import SOURCE_A, SOURCE_B, SOURCE_B_CRCB, SOURCE_NAMES
from .labels import read_id_list

__all__ = [
    "PairingError",
    "PairEntry",
    "PairedFusionDataset",
    "PairedImageDataset",
    "build_pipeline",
    "image_header_size",
]

Sample = dict[str, Any]
Transform = Callable[[Sample], Sample]


class PairingError(ValueError):
    """The modality folders (or a split list) do not form clean pairs.

    Attributes:
        problems: one readable line per problem.
    """

    def __init__(self, what: str, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        shown = "\n  ".join(self.problems[:20])
        more = f"\n  ... and {len(self.problems) - 20} more" if len(self.problems) > 20 else ""
        super().__init__(f"{what}: {len(self.problems)} problem(s)\n  {shown}{more}")


@dataclass
class PairEntry:
    """One pair: its id, the two image files, optional label file, stored size (H, W)."""

    img_id: str
    path_a: Path
    path_b: Path
    label_path: Path | None = None
    size: tuple[int, int] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def build_pipeline(pipeline: Sequence[dict[str, Any] | Transform] | None) -> list[Transform]:
    """Build transforms from config dicts (via ``TRANSFORMS``) or take callables as they are."""
    built: list[Transform] = []
    for i, step in enumerate(pipeline or []):
        if isinstance(step, dict):
            built.append(TRANSFORMS.build(step))
        elif callable(step):
            built.append(step)
        else:
            raise TypeError(
                f"pipeline[{i}] must be a config dict or a callable, got {type(step).__name__}"
            )
    return built


class PairedFusionDataset(Dataset):
    """Base class: loads the two sources of a pair, then the target, then runs the pipeline.

    Subclasses fill ``self.entries`` (usually with :meth:`_collect_pairs`) and
    override :meth:`load_target`.

    Meta information follows MMEngine's ``BaseDataset``: the class attribute
    :attr:`METAINFO`, updated by the ``metainfo`` argument, is :attr:`metainfo`
    (a copy); its ``classes`` (index = label id) are also :attr:`class_names`. The
    library names no dataset's classes: they come from the dataset's config (or a
    label file such as ``classes.txt``).

    Each sample names its sources' modalities, ``sample['source_names']`` =
    :attr:`source_names` (a class's :attr:`SOURCE_NAMES` unless the instance sets its
    own, e.g. from its modality folders).

    Args:
        pipeline: transforms (config dicts or callables) applied to each sample.
        keep_colour: keep ``source_b_crcb`` for colour source-B files.
        strict: raise :class:`PairingError` on pairing problems (default) instead
            of warning and dropping the affected pairs.
        check_sizes: read every file header at construction and reject pairs whose
            two images differ in size.
        metainfo: meta information of this dataset, e.g. ``dict(classes=(...))``.
    """

    #: Class-level meta information (empty: no dataset's classes are built in).
    METAINFO: dict[str, Any] = {}
    #: The modalities of sources A and B (display names; the sample keys are neutral).
    SOURCE_NAMES: tuple[str, str] = ("a", "b")

    def __init__(
        self,
        pipeline: Sequence[dict[str, Any] | Transform] | None = None,
        keep_colour: bool = True,
        strict: bool = True,
        check_sizes: bool = True,
        metainfo: Mapping[str, Any] | None = None,
    ) -> None:
        self._metainfo: dict[str, Any] = {**copy.deepcopy(self.METAINFO),
                                          **copy.deepcopy(dict(metainfo or {}))}
        if self._metainfo.get("classes") is not None:
            self._set_classes(self._metainfo["classes"])
        self.pipeline = build_pipeline(pipeline)
        self.keep_colour = keep_colour
        self.strict = strict
        self.check_sizes = check_sizes
        self.entries: list[PairEntry] = []

    # ------------------------------------------------------------------ meta information

    @property
    def source_names(self) -> tuple[str, str]:
        """The modalities of sources A and B, e.g. ``('ir', 'vi')`` (each sample's ``source_names``)."""
        return tuple(getattr(self, "_source_names", self.SOURCE_NAMES))  # type: ignore[return-value]

    @property
    def metainfo(self) -> dict[str, Any]:
        """A copy of this dataset's meta information (``classes``, ...)."""
        return copy.deepcopy(self._metainfo)

    @property
    def class_names(self) -> tuple[str, ...] | None:
        """The class names (index = label id), or None when the dataset has none."""
        classes = self._metainfo.get("classes")
        return tuple(classes) if classes is not None else None

    def _set_classes(self, names: Sequence[str]) -> None:
        if isinstance(names, str) or not all(isinstance(n, str) for n in names):
            raise TypeError(f"classes must be a sequence of names, got {names!r}")
        self._metainfo["classes"] = tuple(names)

    @staticmethod
    def _given_classes(
        class_names: Sequence[str] | None, metainfo: Mapping[str, Any] | None
    ) -> tuple[str, ...] | None:
        """The classes given as ``class_names`` or as ``metainfo['classes']`` (must agree)."""
        from_meta = (metainfo or {}).get("classes")
        if class_names is not None and from_meta is not None and tuple(class_names) != tuple(from_meta):
            raise ValueError(
                f"class_names {tuple(class_names)} and metainfo classes {tuple(from_meta)} "
                "disagree; give one of them"
            )
        chosen = class_names if class_names is not None else from_meta
        return tuple(chosen) if chosen is not None else None

    # ------------------------------------------------------------------ building

    def _report(self, what: str, problems: list[str]) -> None:
        if not problems:
            return
        if self.strict:
            raise PairingError(what, problems)
        warnings.warn(
            str(PairingError(what, problems)) + "\n(strict=False: affected pairs dropped)",
            stacklevel=3,
        )

    def _collect_pairs(
        self,
        dir_a: str | os.PathLike[str],
        dir_b: str | os.PathLike[str],
        ids: Sequence[str] | None = None,
        ids_source: str | None = None,
        extensions: Sequence[str] = IMAGE_EXTENSIONS,
    ) -> list[PairEntry]:
        """Pair ``dir_a`` and ``dir_b`` by stem, restricted to ``ids`` if given, sizes checked."""
        if ids is None:
            pairs, problems = find_pairs(dir_a, dir_b, extensions)
        else:
            # Only the listed ids matter: files outside the split are not reported.
            a_map, _ = list_images(dir_a, extensions)
            b_map, _ = list_images(dir_b, extensions)
            problems = []
            for i in ids:
                missing = [
                    repr(str(Path(d))) for d, m in ((dir_a, a_map), (dir_b, b_map)) if i not in m
                ]
                if missing:
                    problems.append(
                        f"id {i!r} from {ids_source or 'the id list'} has no (unique) image in "
                        + " nor in ".join(missing)
                    )
            pairs = [(i, a_map[i], b_map[i]) for i in ids if i in a_map and i in b_map]
        entries = [PairEntry(stem, pa, pb) for stem, pa, pb in pairs]
        name_a, name_b = self._source_labels()
        if self.check_sizes:
            checked = []
            for e in entries:
                size_a, size_b = image_header_size(e.path_a), image_header_size(e.path_b)
                if size_a != size_b:
                    problems.append(
                        f"size mismatch in pair {e.img_id!r}: {name_a} {str(e.path_a)!r} is "
                        f"{size_a[1]}x{size_a[0]} but {name_b} {str(e.path_b)!r} is "
                        f"{size_b[1]}x{size_b[0]} (WxH)"
                    )
                    continue
                e.size = size_a
                checked.append(e)
            entries = checked
        self._report(f"pairing {str(Path(dir_a))!r} with {str(Path(dir_b))!r}", problems)
        if not entries:
            raise PairingError(
                f"no pairs found in {str(Path(dir_a))!r} and {str(Path(dir_b))!r}",
                ["the folders hold no images with matching stems"],
            )
        return entries

    def _source_labels(self) -> tuple[str, str]:
        """How messages call source A and B: the modality folders where known."""
        modalities = getattr(self, "modalities", None)
        if isinstance(modalities, (tuple, list)) and len(modalities) == 2:
            return f"{modalities[0]} (source A)", f"{modalities[1]} (source B)"
        return "source A", "source B"

    @staticmethod
    def _read_ids(
        ids: Sequence[str] | str | os.PathLike[str] | None,
    ) -> tuple[list[str] | None, str | None]:
        if ids is None:
            return None, None
        if isinstance(ids, (str, os.PathLike)):
            return read_id_list(ids), repr(str(ids))
        return [str(i) for i in ids], None

    # ------------------------------------------------------------------ loading

    def load_pair(self, entry: PairEntry) -> Sample:
        """Read both images into the ``source_a`` / ``source_b`` (/ ``source_b_crcb``) layout."""
        a = load_image(entry.path_a)
        b = load_image(entry.path_b)
        if a.shape[-2:] != b.shape[-2:]:
            name_a, name_b = self._source_labels()
            raise PairingError(
                f"pair {entry.img_id!r}",
                [
                    f"size mismatch: {name_a} {str(entry.path_a)!r} is {a.shape[-1]}x{a.shape[-2]} "
                    f"but {name_b} {str(entry.path_b)!r} "
                    f"is {b.shape[-1]}x{b.shape[-2]} (WxH)"
                ],
            )
        if a.shape[0] == 3:
            a = rgb_to_luma(a[None])[0]
        sample: Sample = {}
        if b.shape[0] == 3:
            ycrcb = rgb_to_ycrcb(b[None])[0]
            b = ycrcb[:1]
            if self.keep_colour:
                sample[SOURCE_B_CRCB] = ycrcb[1:].contiguous()
        sample[SOURCE_A] = a.contiguous()
        sample[SOURCE_B] = b.contiguous()
        sample[SOURCE_NAMES] = self.source_names
        sample.update(
            img_id=entry.img_id,
            img_path=str(entry.path_b),
            ir_path=str(entry.path_a),
            vi_path=str(entry.path_b),
            ori_shape=tuple(a.shape[-2:]),
        )
        return sample

    def load_target(self, entry: PairEntry, sample: Sample) -> None:
        """Add the target keys to ``sample`` (in place); none for unlabelled sets."""

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> Sample:
        if not -len(self) <= index < len(self):
            raise IndexError(
                f"index {index} out of range for {type(self).__name__} of length {len(self)}"
            )
        entry = self.entries[index]
        sample = self.load_pair(entry)
        self.load_target(entry, sample)
        for transform in self.pipeline:
            sample = transform(sample)
        return sample

    @property
    def ids(self) -> list[str]:
        """Sample ids in index order."""
        return [e.img_id for e in self.entries]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(len={len(self)}, pipeline={self.pipeline})"


@DATASETS.register_module()
class PairedImageDataset(PairedFusionDataset):
    """Unlabelled pairs in two modality folders, for evaluation (TNO, RoadScene, MRI-CT/PET/SPECT).

    Layout: ``root/split/modality_a/<id>.<ext>`` and ``root/split/modality_b/<id>.<ext>``
    (``split=None``: directly under ``root``). E.g. in a data folder ``data``::

        PairedImageDataset(data / 'tno')                                   # ir / vi
        PairedImageDataset(data / 'mri_pet', modality_a='mri', modality_b='pet')

    Source A goes to ``source_a``, source B to ``source_b`` (+ ``source_b_crcb`` when
    colour), so put the colour modality (visible, PET, SPECT) second. The folder
    names are the samples' ``source_names``, e.g. ``('mri', 'pet')``.

    Args:
        root: dataset folder.
        split: sub-folder of ``root`` (``'test'`` by default), or ``None``.
        modality_a: folder of source A.
        modality_b: folder of source B.
        ids: optional subset: a list of ids or a split-list file (one id a line).
        pipeline, keep_colour, strict, check_sizes, metainfo: see
            :class:`PairedFusionDataset`.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str | None = "test",
        modality_a: str = "ir",
        modality_b: str = "vi",
        ids: Sequence[str] | str | os.PathLike[str] | None = None,
        pipeline: Sequence[dict[str, Any] | Transform] | None = None,
        keep_colour: bool = True,
        strict: bool = True,
        check_sizes: bool = True,
        metainfo: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(pipeline, keep_colour, strict, check_sizes, metainfo)
        base = Path(root) / split if split else Path(root)
        self.root = Path(root)
        self.modalities = (modality_a, modality_b)
        self._source_names = (str(modality_a), str(modality_b))
        id_list, source = self._read_ids(ids)
        self.entries = self._collect_pairs(base / modality_a, base / modality_b, id_list, source)
