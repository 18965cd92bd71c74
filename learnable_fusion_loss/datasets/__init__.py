"""Paired-modality datasets, transforms and image I/O.

* :mod:`.io`: ``load_image``, ``save_image``, ``rgb_to_ycrcb``/``ycrcb_to_rgb``.
* :mod:`.folders`: ``list_images``, ``find_pairs`` (pairing by stem), output-folder checks.
* :mod:`.keys`: the sample's image keys (``source_a``, ``source_b``, ...; the
  modalities are its ``source_names``) and :data:`RENAMED_KEYS` (their old names).
* :mod:`.paired`: the sample layout and :class:`PairedImageDataset` (TNO, RoadScene, medical).
* :mod:`.segmentation`: :class:`PairedSegDataset`, :class:`FMBSegDataset`.
* :mod:`.detection`: :class:`YoloPairedDetDataset` (YOLO txt boxes), :class:`M3FDDataset`,
  :class:`LLVIPDataset` (VOC xml boxes).
* :mod:`.transforms`: ``TaskView``, ``PairedRandomCrop``, ``RandomModalitySwap``,
  ``BoxesToWeakMask``, ...
* :mod:`.boxes`: box rescaling, cropping, format changes and rasterising.
* :mod:`.collate`: :func:`collate_paired` (ultralytics detection targets, modality swap).

The disjoint meta-train / meta-test split of each epoch is drawn by the training
loop's epoch plan (:class:`learnable_fusion_loss.engine.EpochPlan`), not here.

Datasets register in ``learnable_fusion_loss.registry.DATASETS`` and transforms in
``TRANSFORMS`` (scope ``lfl``). A dataset's class names are its
``metainfo['classes']`` (MMEngine's convention), given by its config or label files.
"""

from .boxes import (
    boxes_cxcywh_to_xyxy,
    boxes_to_mask,
    boxes_xyxy_to_cxcywh,
    crop_boxes,
    resize_boxes,
)
from .collate import SwapCollate, collate_paired
from .detection import LLVIPDataset, M3FDDataset, VOCPairedDetDataset, YoloPairedDetDataset
from .folders import IMAGE_EXTENSIONS, find_pairs, list_images
from .io import (
    ImageReadError,
    load_image,
    rgb_to_luma,
    rgb_to_ycrcb,
    save_image,
    ycrcb_to_rgb,
)
from .keys import (
    RENAMED_KEYS,
    SOURCE_A,
    SOURCE_A_TASK,
    SOURCE_B,
    SOURCE_B_CRCB,
    SOURCE_B_TASK,
    SOURCE_NAMES,
)
from .labels import (
    LabelError,
    read_class_names,
    read_id_list,
    read_mask,
    read_voc_boxes,
    read_yolo_boxes,
)
from .paired import PairedFusionDataset, PairedImageDataset, PairEntry, PairingError, build_pipeline
from .segmentation import FMBSegDataset, PairedSegDataset
from .transforms import (
    BoxesToWeakMask,
    PairedCenterCrop,
    PairedRandomCrop,
    PairedResize,
    RandomModalitySwap,
    TaskView,
)

__all__ = [
    # io
    "IMAGE_EXTENSIONS",
    "ImageReadError",
    "find_pairs",
    "list_images",
    "load_image",
    "rgb_to_luma",
    "rgb_to_ycrcb",
    "save_image",
    "ycrcb_to_rgb",
    # sample keys
    "SOURCE_A",
    "SOURCE_B",
    "SOURCE_B_CRCB",
    "SOURCE_A_TASK",
    "SOURCE_B_TASK",
    "SOURCE_NAMES",
    "RENAMED_KEYS",
    # labels
    "LabelError",
    "read_class_names",
    "read_id_list",
    "read_mask",
    "read_voc_boxes",
    "read_yolo_boxes",
    # datasets
    "PairEntry",
    "PairingError",
    "PairedFusionDataset",
    "PairedImageDataset",
    "PairedSegDataset",
    "FMBSegDataset",
    "YoloPairedDetDataset",
    "VOCPairedDetDataset",
    "M3FDDataset",
    "LLVIPDataset",
    "build_pipeline",
    # transforms
    "TaskView",
    "PairedRandomCrop",
    "PairedCenterCrop",
    "PairedResize",
    "RandomModalitySwap",
    "BoxesToWeakMask",
    "boxes_to_mask",
    "boxes_xyxy_to_cxcywh",
    "boxes_cxcywh_to_xyxy",
    "crop_boxes",
    "resize_boxes",
    # batching
    "collate_paired",
    "SwapCollate",
]
