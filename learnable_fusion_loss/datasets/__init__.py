"""Paired-modality datasets, transforms and image I/O.

* :mod:`.io`: ``load_image``, ``save_image``, ``rgb_to_ycrcb``/``ycrcb_to_rgb``.
* :mod:`.folders`: ``list_images``, ``find_pairs`` (pairing by stem), output-folder checks.
* :mod:`.paired`: the sample layout and :class:`PairedImageDataset` (TNO, RoadScene, medical).
* :mod:`.segmentation`: :class:`MSRSSegDataset`, :class:`FMBSegDataset`.
* :mod:`.detection`: :class:`YoloPairedDetDataset` (msrs_det), :class:`M3FDDataset`,
  :class:`LLVIPDataset`.
* :mod:`.transforms`: ``TaskView``, ``PairedRandomCrop``, ``RandomModalitySwap``,
  ``BoxesToWeakMask``, ...
* :mod:`.boxes`: box rescaling, cropping, format changes and rasterising.
* :mod:`.collate`: :func:`collate_paired` (ultralytics detection targets, modality swap).

The disjoint meta-train / meta-test split of each epoch is drawn by the training
loop's epoch plan (:class:`learnable_fusion_loss.engine.EpochPlan`), not here.

Datasets register in ``learnable_fusion_loss.registry.DATASETS`` and transforms in
``TRANSFORMS`` (scope ``lfl``).
"""

from .boxes import (
    boxes_cxcywh_to_xyxy,
    boxes_to_mask,
    boxes_xyxy_to_cxcywh,
    crop_boxes,
    resize_boxes,
)
from .collate import SwapCollate, collate_paired
from .detection import (
    LLVIP_CLASSES,
    M3FD_CLASSES,
    LLVIPDataset,
    M3FDDataset,
    VOCPairedDetDataset,
    YoloPairedDetDataset,
)
from .folders import IMAGE_EXTENSIONS, find_pairs, list_images
from .io import (
    ImageReadError,
    load_image,
    rgb_to_luma,
    rgb_to_ycrcb,
    save_image,
    ycrcb_to_rgb,
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
from .segmentation import FMB_CLASSES, MSRS_CLASSES, FMBSegDataset, MSRSSegDataset, PairedSegDataset
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
    "MSRSSegDataset",
    "FMBSegDataset",
    "MSRS_CLASSES",
    "FMB_CLASSES",
    "YoloPairedDetDataset",
    "VOCPairedDetDataset",
    "M3FDDataset",
    "LLVIPDataset",
    "M3FD_CLASSES",
    "LLVIP_CLASSES",
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
