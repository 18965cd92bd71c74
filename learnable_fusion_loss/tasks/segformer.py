"""SegFormer (MMSegmentation 1.2) as the segmentation task net T.

The net is mmseg's own ``EncoderDecoder`` with a ``MixVisionTransformer`` backbone
and a ``SegformerHead``, built through mmseg's registry from a config dict
(:func:`segformer_config`, MiT-B0 shapes by default) and randomly initialised by
mmseg's ``init_weights`` (no checkpoint is ever loaded).

Input handling (inside the adapter, so callers pass the fused image as is):

* ``fused`` is a grey batch ``[B, 1, H, W]`` in [0, 1];
* ``in_channels=3`` replicates it to three channels, ``in_channels=1`` keeps it;
* it is then normalised ``(x - mean) / std`` with mmseg's SegFormer statistics
  (ImageNet, divided by 255): per channel ``(0.485, 0.456, 0.406) /
  (0.229, 0.224, 0.225)`` for 3 channels, their averages ``0.449 / 0.226`` for 1.

Loss: as mmseg's decode head computes it — logits (1/4 resolution) are resized
bilinearly (``align_corners=False``) to the label size and scored by mmseg's
``CrossEntropyLoss`` with ``ignore_index`` (255), averaged over the non-ignored
pixels (``avg_non_ignore=True``). Everything on this path is plain torch
(``nn.MultiheadAttention`` is called with ``need_weights=True`` and batch-second
tensors, i.e. its explicit ``bmm``/softmax path, never a fused SDPA kernel; no
mmcv compiled op is used), so the loss is twice differentiable w.r.t. the image.

Targets are ``LongTensor [B, H, W]`` class maps (``[B, 1, H, W]`` is accepted);
:meth:`SegFormerTask.collate_targets` stacks per-sample ``[H, W]`` maps into one.
``num_classes`` counts the background class 0.
"""

from __future__ import annotations

import contextlib
import copy
import warnings
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._checks import check_image
from .._random import seeded_rng
from ..registry import MODELS
from .base import NetTask, build_optimizer, require_backend
from .targets import split_batch_target, stack_targets

__all__ = ["SegFormerTask", "segformer_config"]

_MEAN_RGB = (0.485, 0.456, 0.406)
_STD_RGB = (0.229, 0.224, 0.225)


def segformer_config(
    num_classes: int,
    in_channels: int = 1,
    ignore_index: int = 255,
    embed_dims: int = 32,
    num_layers: Sequence[int] = (2, 2, 2, 2),
    num_heads: Sequence[int] = (1, 2, 5, 8),
    channels: int = 256,
    drop_path_rate: float = 0.1,
    dropout_ratio: float = 0.1,
) -> dict[str, Any]:
    """mmseg ``EncoderDecoder`` config of a randomly initialised SegFormer (MiT-B0 defaults).

    The head uses ``BN`` (not mmseg's ``SyncBN``, which needs a process group).
    """
    stage_dims = [embed_dims * h for h in num_heads]
    return dict(
        type="EncoderDecoder",
        data_preprocessor=None,
        backbone=dict(
            type="MixVisionTransformer",
            in_channels=in_channels,
            embed_dims=embed_dims,
            num_stages=4,
            num_layers=list(num_layers),
            num_heads=list(num_heads),
            patch_sizes=[7, 3, 3, 3],
            sr_ratios=[8, 4, 2, 1],
            out_indices=(0, 1, 2, 3),
            mlp_ratio=4,
            qkv_bias=True,
            drop_rate=0.0,
            attn_drop_rate=0.0,
            drop_path_rate=drop_path_rate,
            init_cfg=None,
        ),
        decode_head=dict(
            type="SegformerHead",
            in_channels=stage_dims,
            in_index=[0, 1, 2, 3],
            channels=channels,
            dropout_ratio=dropout_ratio,
            num_classes=num_classes,
            norm_cfg=dict(type="BN", requires_grad=True),
            align_corners=False,
            ignore_index=ignore_index,
            loss_decode=dict(
                type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0, avg_non_ignore=True
            ),
            init_cfg=None,
        ),
        train_cfg=dict(),
        test_cfg=dict(mode="whole"),
        init_cfg=None,
    )


@MODELS.register_module()
class SegFormerTask(NetTask):
    """SegFormer semantic segmentation task (protocol: :class:`~.base.TaskAdapter`).

    Args:
        num_classes: classes including background.
        in_channels: 1 (grey) or 3 (grey replicated).
        ignore_index: label value excluded from loss and metrics.
        lr, weight_decay: Adam hyper-parameters (default 1e-4, 0).
        optimizer: optional ``dict(type=<torch.optim name>, **kwargs)`` overriding Adam.
        model: optional full mmseg model config (default :func:`segformer_config`).
        mean, std: normalisation in [0, 1] units, one value per net input channel.
        class_names: names for the per-class metrics, index = label value (a config
            passes its dataset's ``metainfo['classes']``); default ``class_0``, ``class_1``, ...
        drop_path_rate, dropout_ratio: SegFormer regularisers (mmseg defaults 0.1, 0.1).
        device: where the net lives; inputs are moved there.
        seed: if given, the random init uses this seed (caller's RNG untouched).
    """

    def __init__(
        self,
        num_classes: int = 9,
        in_channels: int = 1,
        *,
        ignore_index: int = 255,
        lr: float = 1e-4,
        weight_decay: float = 0.0,
        optimizer: dict | None = None,
        model: dict | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        class_names: Sequence[str] | None = None,
        drop_path_rate: float = 0.1,
        dropout_ratio: float = 0.1,
        device: str | torch.device = "cpu",
        seed: int | None = None,
    ) -> None:
        if in_channels not in (1, 3):
            raise ValueError(f"in_channels must be 1 or 3, got {in_channels}")
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        require_backend("mmseg", "seg")
        from .. import compat

        compat.apply_offline_defaults()
        from mmseg.registry import MODELS as MMSEG_MODELS
        from mmseg.utils import register_all_modules

        register_all_modules(init_default_scope=False)
        cfg = copy.deepcopy(model) if model is not None else segformer_config(
            num_classes, in_channels, ignore_index,
            drop_path_rate=drop_path_rate, dropout_ratio=dropout_ratio,
        )
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.ignore_index = ignore_index
        self.device = torch.device(device)
        from mmengine.registry import DefaultScope

        # mmseg's config uses unscoped type names: resolve them in the mmseg scope even
        # when a runner has made another scope (e.g. 'lfl') the default.
        with (seeded_rng(seed, ("torch",)), warnings.catch_warnings(),
              DefaultScope.overwrite_default_scope("mmseg")):
            # mmseg's decode head calls its own deprecated ``build_loss`` internally.
            warnings.filterwarnings("ignore", message=r"``build_loss`` would be deprecated")
            net = MMSEG_MODELS.build(cfg)
            with _quiet_mmengine_logger():  # init_weights logs one INFO line per tensor
                net.init_weights()
        self.net: nn.Module = net.to(self.device).train()
        head = self.net.decode_head
        if head.num_classes != num_classes:
            raise ValueError(
                f"model config has num_classes={head.num_classes}, "
                f"adapter num_classes={num_classes}"
            )
        self.align_corners = bool(head.align_corners)

        if mean is None:
            mean = _MEAN_RGB if in_channels == 3 else (float(np.mean(_MEAN_RGB)),)
        if std is None:
            std = _STD_RGB if in_channels == 3 else (float(np.mean(_STD_RGB)),)
        if len(mean) != in_channels or len(std) != in_channels:
            raise ValueError(f"mean/std need {in_channels} value(s), got {len(mean)}/{len(std)}")
        self.mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        if class_names is None:
            class_names = tuple(f"class_{i}" for i in range(num_classes))
        if len(class_names) != num_classes:
            raise ValueError(f"class_names has {len(class_names)} names, num_classes={num_classes}")
        self.class_names = tuple(class_names)
        self.optimizer = build_optimizer(self.net.parameters(), lr, weight_decay, optimizer)

    # ------------------------------------------------------------------ forward
    def _inputs(self, fused: Tensor) -> Tensor:
        check_image("fused", fused, channels=1)
        x = fused.to(self.device, torch.float32)
        if self.in_channels == 3:
            x = x.expand(-1, 3, -1, -1)
        return (x - self.mean) / self.std

    def logits(self, fused: Tensor) -> Tensor:
        """Class scores ``[B, K, H/4, W/4]`` (mmseg's decode-head resolution)."""
        return self.net.decode_head(self.net.extract_feat(self._inputs(fused)))

    def _target(self, target: Tensor, batch: int) -> Tensor:
        if not isinstance(target, Tensor):
            raise TypeError(f"target must be a LongTensor [B, H, W], got {type(target).__name__}")
        if target.ndim == 4 and target.shape[1] == 1:
            target = target[:, 0]
        if target.ndim != 3 or target.shape[0] != batch:
            raise ValueError(f"target must have shape [B={batch}, H, W], got {tuple(target.shape)}")
        if target.is_floating_point() or target.dtype == torch.bool:
            raise TypeError(f"target must be an integer class map, got dtype {target.dtype}")
        target = target.to(self.device, torch.long)
        valid = target != self.ignore_index
        if bool(((target < 0) | (target >= self.num_classes))[valid].any()):
            raise ValueError(
                f"target labels must lie in [0, {self.num_classes}) or equal "
                f"ignore_index={self.ignore_index}"
            )
        return target

    # ------------------------------------------------------------------ targets
    def collate_targets(self, targets: Sequence[Tensor], image_size: tuple[int, int]) -> Tensor:
        """Per-sample class maps ``[H, W]`` → the batch ``[B, H, W]`` that :meth:`loss` takes.

        (Checked where a batch enters :meth:`loss` or :meth:`evaluate`.)
        """
        return stack_targets([t[0] if t.ndim == 3 and t.shape[0] == 1 else t for t in targets])

    def split_targets(self, target: Tensor, count: int, image_size: tuple[int, int]) -> list[Tensor]:
        """The batch ``[B, H, W]`` (or ``[B, 1, H, W]``) → one class map ``[H, W]`` per sample."""
        if target.ndim == 4 and target.shape[1] == 1:
            target = target[:, 0]
        return split_batch_target(target, count)

    def _criterion(self, logits: Tensor, target: Tensor) -> Tensor:
        losses = self.net.decode_head.loss_decode
        modules = losses if isinstance(losses, nn.ModuleList) else [losses]
        return sum(m(logits, target, ignore_index=self.ignore_index) for m in modules)

    def loss(self, fused: Tensor, target: Tensor) -> Tensor:
        """Cross-entropy at label resolution; differentiable (twice) w.r.t. ``fused``."""
        target = self._target(target, fused.shape[0])
        logits = F.interpolate(
            self.logits(fused), size=target.shape[-2:], mode="bilinear",
            align_corners=self.align_corners,
        )
        return self._criterion(logits, target)

    # ------------------------------------------------------------------ training
    def train_step(self, fused: Tensor, target: Tensor) -> dict[str, float]:
        """One optimiser step of T on ``fused`` (detached: T's step never reaches F)."""
        return self.guarded_step(lambda: (self.loss(fused.detach(), target), {}))

    # ------------------------------------------------------------------ inference
    def predict(self, fused: Tensor, size: tuple[int, int] | None = None) -> Tensor:
        """Label map ``LongTensor [B, H, W]`` at ``size`` (default: the input size), eval mode."""
        with self._eval_mode():
            logits = F.interpolate(
                self.logits(fused), size=size or tuple(fused.shape[-2:]), mode="bilinear",
                align_corners=self.align_corners,
            )
            return logits.argmax(dim=1)

    def evaluate(self, batches: Iterable[tuple[Tensor, Tensor]]) -> dict[str, float]:
        """mmseg ``IoUMetric`` over ``(fused, target)`` batches, predictions at label size.

        Returns mmseg's summary (percent, 2 decimals): ``aAcc``, ``mIoU``, ``mAcc``, plus
        per-class ``IoU.<name>`` / ``Acc.<name>`` (percent; NaN for a class absent from
        both labels and predictions) and ``num_images``.
        """
        from mmseg.evaluation import IoUMetric

        with _quiet_mmengine_logger():  # "prefix is not set" warning: no prefix is wanted
            metric = IoUMetric(ignore_index=self.ignore_index, iou_metrics=["mIoU"])
        metric.dataset_meta = {"classes": self.class_names}
        count = 0
        for fused, target in batches:
            target = self._target(target, fused.shape[0])
            pred = self.predict(fused, size=tuple(target.shape[-2:]))
            samples = [
                {"pred_sem_seg": {"data": p[None].cpu()}, "gt_sem_seg": {"data": t[None].cpu()}}
                for p, t in zip(pred, target, strict=True)
            ]
            metric.process({}, samples)
            count += len(samples)
        if count == 0:
            raise ValueError("evaluate() got no batches")
        areas = [torch.stack(parts).sum(0) for parts in zip(*metric.results, strict=True)]
        per_class = IoUMetric.total_area_to_metrics(*areas, metrics=["mIoU"])
        with _quiet_mmengine_logger():
            summary = metric.evaluate(count)
        out: dict[str, float] = {k: float(v) for k, v in summary.items()}
        columns = zip(self.class_names, per_class["IoU"], per_class["Acc"], strict=True)
        for name, iou, acc in columns:
            out[f"IoU.{name}"] = float(np.round(iou * 100, 2))
            out[f"Acc.{name}"] = float(np.round(acc * 100, 2))
        out["num_images"] = float(count)
        return out


@contextlib.contextmanager
def _quiet_mmengine_logger() -> Iterator[None]:
    """Silence MMEngine's INFO/WARNING chatter (init tables, IoUMetric's class table)."""
    import logging

    from mmengine.logging import MMLogger

    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
