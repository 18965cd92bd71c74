"""TDFusion's data presets: the task-view size of each dataset and the training views.

The library's :class:`~learnable_fusion_loss.datasets.TaskView` takes an explicit
``(H, W)``; the sizes of the paper's recipe per dataset are named here.

>>> TASK_VIEW_SIZES["MSRS"]
(240, 320)
>>> [step["type"] for step in tdfusion_train_pipeline("MSRS")]
['lfl.TaskView', 'lfl.PairedRandomCrop']
>>> tdfusion_train_pipeline("FMB")[0]["size"]
(300, 400)
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

from learnable_fusion_loss.datasets import PairedSegDataset
from learnable_fusion_loss.registry import DATASETS

__all__ = ["TASK_VIEW_SIZES", "tdfusion_train_pipeline", "MSRSSegDataset"]

#: Task-view sizes ``(H, W)`` of the TDFusion recipe per dataset.
TASK_VIEW_SIZES: dict[str, tuple[int, int]] = {
    "MSRS": (240, 320),
    "FMB": (300, 400),
    "M3FD": (192, 256),
    "LLVIP": (256, 320),
}


def tdfusion_train_pipeline(
    task_size: Sequence[int] | str, crop_size: int = 256, swap_prob: float | None = None
) -> list[dict[str, Any]]:
    """Config list for TDFusion training views: ``TaskView``, then ``PairedRandomCrop``.

    ``task_size`` is ``(H, W)`` or a dataset name of :data:`TASK_VIEW_SIZES`.
    ``swap_prob`` adds ``RandomModalitySwap`` (the per-sample swap); for the
    batch-doubling form use ``collate_paired(..., swap_modalities=True)`` instead.
    """
    if isinstance(task_size, str):
        if task_size not in TASK_VIEW_SIZES:
            raise ValueError(
                f"unknown task-view preset {task_size!r}; known: {sorted(TASK_VIEW_SIZES)}"
            )
        task_size = TASK_VIEW_SIZES[task_size]
    pipeline: list[dict[str, Any]] = [
        dict(type="lfl.TaskView", size=task_size),
        dict(type="lfl.PairedRandomCrop", size=crop_size),
    ]
    if swap_prob is not None:
        pipeline.append(dict(type="lfl.RandomModalitySwap", prob=swap_prob))
    return pipeline


@DATASETS.register_module()
class MSRSSegDataset(PairedSegDataset):
    """The former name of MSRS's segmentation set: now :class:`PairedSegDataset`.

    MSRS's folder layout is ``PairedSegDataset``'s default and its class names are
    the dataset config's ``metainfo`` (``configs/_base_/datasets/msrs_seg.py``), so
    the old type name builds the same dataset and warns with the new one.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        warnings.warn("dataset type 'MSRSSegDataset' is now 'PairedSegDataset' with "
                      "metainfo=dict(classes=...) (configs/_base_/datasets/msrs_seg.py)",
                      DeprecationWarning, stacklevel=2)
        super().__init__(*args, **kwargs)
