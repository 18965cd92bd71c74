"""YOLOv8 (Ultralytics 8.3) as the detection task net T.

The net is ultralytics' ``DetectionModel`` built from the packaged ``yolov8n.yaml``
(never a downloaded ``.pt``): random init, ``in_channels`` 1 (grey) or 3 (grey
replicated), ``num_classes`` classes. ``model.args`` is ultralytics' default config
(``ultralytics.cfg.DEFAULT_CFG``: ``box=7.5, cls=0.5, dfl=1.5``) with ``plots=False``
and any ``hyp`` overrides; the loss is ultralytics' own ``v8DetectionLoss``.

Image size
    YOLO needs H and W divisible by 32 (its largest stride). ``fused`` is padded at
    the bottom and right with ``pad_value`` (ultralytics' letterbox grey, 114/255),
    so pixel coordinates are unchanged; the normalised target boxes are rescaled to
    the padded size for the loss, and predictions are clipped to the unpadded image.

Targets
    ultralytics' batch format, boxes relative to the *unpadded* fused image:
    ``{"batch_idx": [N], "cls": [N] or [N, 1], "bboxes": [N, 4]}`` with ``bboxes``
    normalised ``cx, cy, w, h`` in [0, 1]; or a list with one target per image,
    ``{"bboxes": [n_i, 4] x1 y1 x2 y2 pixels, "labels": [n_i]}`` (the datasets'
    per-sample form) or an ``[n_i, 5]`` tensor ``(cls, cx, cy, w, h)``. The adapter's
    codec converts between the two (:meth:`YOLOv8Task.collate_targets`,
    :meth:`YOLOv8Task.split_targets`); targets are checked once, where a batch enters
    :meth:`YOLOv8Task.loss`, :meth:`YOLOv8Task.train_step` or :meth:`YOLOv8Task.evaluate`.

Loss scalar
    ``v8DetectionLoss`` returns ``(loss * batch_size, loss.detach())`` with
    ``loss = [7.5 * box, 0.5 * cls, 1.5 * dfl]``. :meth:`YOLOv8Task.loss` returns
    ``(loss * batch_size).sum() / batch_size``, i.e. the sum of the three gained terms
    (what ultralytics logs), independent of batch size; ``train_step`` back-propagates
    that same scalar (Adam is invariant to the constant factor anyway).

Gradient w.r.t. the image
    The TaskAlignedAssigner assigns targets from *detached* predictions, so the
    assignment is piecewise constant in the image: the gradient of the loss w.r.t.
    ``fused`` is the gradient for a fixed assignment (a surrogate gradient), exact
    almost everywhere but not suitable for finite-difference checks. It is twice
    differentiable (BCE, CIoU, DFL cross-entropy; ultralytics' in-place SiLU is fine).

Evaluation
    ultralytics' NMS (``ultralytics.utils.nms.non_max_suppression``; val defaults
    ``conf=0.001, iou=0.7, max_det=300``), ``box_iou`` and ``DetMetrics`` /
    ``ap_per_class``. Predictions are matched to ground truth one-to-one per IoU
    threshold (0.50:0.05:0.95), same class, greedily by descending IoU.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import compat
from .._checks import check_image
from .._random import seeded_rng
from ..registry import MODELS
from .base import NetTask, build_optimizer, require_backend
from .yolo_targets import collate_ultralytics, collate_yolo_targets, split_ultralytics_targets, ultralytics_targets

__all__ = [
    "YOLOv8Task", "ultralytics_targets", "split_ultralytics_targets", "collate_yolo_targets",
    "collate_ultralytics",
]

compat.apply_offline_defaults()  # before anything can import ultralytics

YOLO_STRIDE = 32
_IOU_THRESHOLDS = torch.linspace(0.5, 0.95, 10)


@MODELS.register_module()
class YOLOv8Task(NetTask):
    """YOLOv8 detection task (protocol: :class:`~.base.TaskAdapter`).

    Args:
        num_classes: number of object classes.
        in_channels: 1 (grey) or 3 (grey replicated).
        model_cfg: packaged ultralytics model yaml (default ``yolov8n.yaml``).
        lr, weight_decay: Adam hyper-parameters (default 1e-4, 0).
        optimizer: optional ``dict(type=<torch.optim name>, **kwargs)`` overriding Adam.
        hyp: overrides of ultralytics' default config (e.g. ``{"box": 7.5}``).
        conf_thres, iou_thres, max_det: NMS for :meth:`evaluate` (ultralytics val defaults).
        pad_value: fill of the bottom/right padding to a multiple of 32.
        class_names: names for per-class metrics, index = class id (a config passes
            its dataset's ``metainfo['classes']``); default ``class_0``, ``class_1``, ...
        device: where the net lives; inputs are moved there.
        seed: if given, the random init uses this seed (caller's RNG untouched).
    """

    def __init__(
        self,
        num_classes: int = 3,
        in_channels: int = 1,
        *,
        model_cfg: str = "yolov8n.yaml",
        lr: float = 1e-4,
        weight_decay: float = 0.0,
        optimizer: dict | None = None,
        hyp: Mapping[str, Any] | None = None,
        conf_thres: float = 0.001,
        iou_thres: float = 0.7,
        max_det: int = 300,
        pad_value: float = 114 / 255,
        class_names: Sequence[str] | None = None,
        device: str | torch.device = "cpu",
        seed: int | None = None,
    ) -> None:
        if in_channels not in (1, 3):
            raise ValueError(f"in_channels must be 1 or 3, got {in_channels}")
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if str(model_cfg).endswith(".pt"):
            raise ValueError(f"model_cfg must be a model yaml, not weights: {model_cfg!r}")
        require_backend("ultralytics", "det")
        compat.import_ultralytics()
        from ultralytics.nn.tasks import DetectionModel
        from ultralytics.utils import DEFAULT_CFG_DICT, IterableSimpleNamespace
        from ultralytics.utils.loss import v8DetectionLoss

        hyp = dict(hyp or {})
        unknown = sorted(set(hyp) - set(DEFAULT_CFG_DICT))
        if unknown:
            raise ValueError(f"hyp has keys unknown to ultralytics' default config: {unknown}")
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.device = torch.device(device)
        self.pad_value = float(pad_value)
        self.conf_thres, self.iou_thres, self.max_det = float(conf_thres), float(iou_thres), max_det
        with seeded_rng(seed, ("torch",)), _quiet_ultralytics():
            net = DetectionModel(str(model_cfg), ch=in_channels, nc=num_classes, verbose=False)
        net.args = IterableSimpleNamespace(**{**DEFAULT_CFG_DICT, "plots": False, **hyp})
        self.net: nn.Module = net.to(self.device).train()
        self.criterion = v8DetectionLoss(self.net)
        if class_names is None:
            class_names = tuple(f"class_{i}" for i in range(num_classes))
        if len(class_names) != num_classes:
            raise ValueError(f"class_names has {len(class_names)} names, num_classes={num_classes}")
        self.class_names = tuple(class_names)
        self.net.names = dict(enumerate(self.class_names))
        self.optimizer = build_optimizer(self.net.parameters(), lr, weight_decay, optimizer)
        self._warned_collapse = False

    # ------------------------------------------------------------------ inputs
    def _inputs(self, fused: Tensor) -> tuple[Tensor, tuple[int, int]]:
        """Replicate channels and pad to a multiple of 32; returns the unpadded (H, W)."""
        check_image("fused", fused, channels=1)
        x = fused.to(self.device, torch.float32)
        h, w = x.shape[-2:]
        pad_h, pad_w = (-h) % YOLO_STRIDE, (-w) % YOLO_STRIDE
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), value=self.pad_value)
        if self.in_channels == 3:
            x = x.expand(-1, 3, -1, -1)
        return x, (h, w)

    # ------------------------------------------------------------------ targets
    def collate_targets(self, targets: Sequence[Any], image_size: tuple[int, int]) -> dict[str, Tensor]:
        """Per-image targets → ultralytics' batch dict (:func:`ultralytics_targets`), checked by :meth:`loss`."""
        return ultralytics_targets(targets, image_size)

    def split_targets(self, target: Any, count: int, image_size: tuple[int, int]) -> list[Any]:
        """A batch target → ``{"bboxes", "labels"}`` (pixels of ``image_size``) per image."""
        if isinstance(target, (list, tuple)):
            return list(target)
        return split_ultralytics_targets(self._targets(target, count, image_size), count, image_size)

    def _targets(self, target: Any, batch: int, image_size: Sequence[int]) -> dict[str, Tensor]:
        """The one check of a batch's targets (on the device): what :meth:`loss` and :meth:`evaluate` use."""
        if isinstance(target, (list, tuple)):
            if len(target) != batch:
                raise ValueError(f"target list has {len(target)} entries for a batch of {batch}")
            target = ultralytics_targets(target, image_size)
        if not isinstance(target, Mapping) or not {"batch_idx", "cls", "bboxes"} <= set(target):
            raise TypeError("target must be a dict with 'batch_idx', 'cls', 'bboxes' (ultralytics' batch "
                            "format), or one target per image: {'bboxes', 'labels'} or [n_i, 5] rows")
        idx = torch.as_tensor(target["batch_idx"]).to(self.device, torch.float32).reshape(-1)
        cls = torch.as_tensor(target["cls"]).to(self.device, torch.float32).reshape(-1)
        boxes = torch.as_tensor(target["bboxes"]).to(self.device, torch.float32)
        n = idx.shape[0]
        if cls.shape[0] != n or boxes.shape != (n, 4):
            raise ValueError(f"target sizes disagree: batch_idx {tuple(idx.shape)}, "
                             f"cls {tuple(cls.shape)}, bboxes {tuple(boxes.shape)} (need [N, 4])")
        if n and (idx.min() < 0 or idx.max() >= batch or (idx != idx.round()).any()):
            raise ValueError(f"target batch_idx must be integers in [0, {batch})")
        if n and (cls.min() < 0 or cls.max() >= self.num_classes or (cls != cls.round()).any()):
            raise ValueError(f"target cls must be integers in [0, {self.num_classes})")
        if n and (boxes.min() < 0 or boxes.max() > 1):
            raise ValueError("target bboxes must be normalised cx, cy, w, h in [0, 1]")
        return {"batch_idx": idx, "cls": cls, "bboxes": boxes}

    # ------------------------------------------------------------------ loss
    def _loss_terms(self, x: Tensor, size: tuple[int, int], batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """The loss of the net input ``x`` (padded, see :meth:`_inputs`) of an unpadded ``size`` image."""
        h, w = size
        hp, wp = x.shape[-2:]
        scale = torch.tensor([w / wp, h / hp, w / wp, h / hp], device=self.device)
        batch = {**batch, "bboxes": batch["bboxes"] * scale, "img": x}  # normalised to the padded image
        scaled, terms = self.criterion(self.net(x), batch)
        return scaled.sum() / x.shape[0], terms

    def loss_terms(self, fused: Tensor, target: Any) -> tuple[Tensor, Tensor]:
        """``(loss, [box, cls, dfl])``: the returned scalar and the detached gained terms."""
        x, size = self._inputs(fused)
        return self._loss_terms(x, size, self._targets(target, fused.shape[0], size))

    def loss(self, fused: Tensor, target: Any) -> Tensor:
        """Sum of the gained box/cls/dfl terms (see module docstring)."""
        return self.loss_terms(fused, target)[0]

    # ------------------------------------------------------------------ training
    def train_step(self, fused: Tensor, target: Any) -> dict[str, float]:
        """One optimiser step of T on ``fused`` (detached: T's step never reaches F)."""
        x, size = self._inputs(fused.detach())
        batch = self._targets(target, fused.shape[0], size)

        def loss_and_terms() -> tuple[Tensor, dict[str, float]]:
            loss, terms = self._loss_terms(x, size, batch)
            return loss, dict(zip(("loss_box", "loss_cls", "loss_dfl"), (float(t) for t in terms), strict=True))

        stats = self.guarded_step(loss_and_terms)
        boxes = batch["cls"].numel()
        if ("skipped" not in stats and stats["loss_box"] == stats["loss_cls"] == stats["loss_dfl"] == 0.0
                and boxes and not self._warned_collapse):
            # A healthy net always gets some prediction assigned to a box; a loss of
            # exactly 0 means every score is saturated at 0: T has diverged, silently.
            self._warned_collapse = True
            lr = self.optimizer.param_groups[0]["lr"]
            warnings.warn(
                f"YOLOv8Task: the task loss is exactly 0 on a batch with {boxes} box(es): no "
                "prediction is assigned to any box, so T has collapsed (it stops learning); "
                f"lower T's learning rate (now {lr:g})", RuntimeWarning, stacklevel=2)
        return stats

    # ------------------------------------------------------------------ inference
    def predict(
        self, fused: Tensor, conf_thres: float | None = None, iou_thres: float | None = None
    ) -> list[Tensor]:
        """Detections per image after NMS: ``[n, 6]`` rows ``x1, y1, x2, y2, conf, cls`` in
        pixels of the unpadded ``fused`` (eval mode; thresholds default to the adapter's)."""
        from ultralytics.utils.nms import non_max_suppression

        with self._eval_mode():
            x, (h, w) = self._inputs(fused)
            out = non_max_suppression(
                self.net(x),
                conf_thres=self.conf_thres if conf_thres is None else conf_thres,
                iou_thres=self.iou_thres if iou_thres is None else iou_thres,
                multi_label=True,
                max_det=self.max_det,
                nc=self.num_classes,
            )
        dets = []
        for det in out:
            det = det[:, :6].clone()
            det[:, [0, 2]] = det[:, [0, 2]].clamp(0, w)
            det[:, [1, 3]] = det[:, [1, 3]].clamp(0, h)
            dets.append(det)
        return dets

    @staticmethod
    def match(pred_boxes: Tensor, pred_cls: Tensor, gt_boxes: Tensor, gt_cls: Tensor) -> np.ndarray:
        """``[n_pred, 10]`` bool: prediction is a true positive at IoU 0.50, 0.55, ..., 0.95.

        One-to-one, same class, greedily by descending IoU (``box_iou`` from ultralytics).
        """
        from ultralytics.utils.metrics import box_iou

        correct = np.zeros((pred_boxes.shape[0], len(_IOU_THRESHOLDS)), dtype=bool)
        if pred_boxes.shape[0] == 0 or gt_boxes.shape[0] == 0:
            return correct
        iou = box_iou(gt_boxes, pred_boxes) * (gt_cls[:, None] == pred_cls[None, :])
        iou = iou.cpu().numpy()
        for k, threshold in enumerate(_IOU_THRESHOLDS.tolist()):
            gt_idx, pred_idx = np.nonzero(iou >= threshold)
            order = np.argsort(-iou[gt_idx, pred_idx], kind="stable")
            used_gt, used_pred = set(), set()
            for g, p in zip(gt_idx[order], pred_idx[order], strict=True):
                if g not in used_gt and p not in used_pred:
                    used_gt.add(g)
                    used_pred.add(p)
                    correct[p, k] = True
        return correct

    def evaluate(self, batches: Iterable[tuple[Tensor, Any]]) -> dict[str, float]:
        """mAP over ``(fused, target)`` batches with ultralytics' ``DetMetrics``.

        Returns ``mAP50``, ``mAP75``, ``mAP50-95``, ``precision``, ``recall`` (fractions
        in [0, 1]), ``AP50-95.<name>`` for classes present in the targets, ``num_images``
        and ``num_targets``.
        """
        from ultralytics.utils.metrics import DetMetrics
        from ultralytics.utils.ops import xywh2xyxy

        metrics = DetMetrics(names=dict(enumerate(self.class_names)))
        images = targets_seen = 0
        for fused, target in batches:
            batch = self._targets(target, fused.shape[0], fused.shape[-2:])
            h, w = fused.shape[-2:]
            scale = torch.tensor([w, h, w, h], device=self.device, dtype=torch.float32)
            for i, det in enumerate(self.predict(fused)):
                keep = batch["batch_idx"] == i
                gt_cls = batch["cls"][keep]
                gt_boxes = xywh2xyxy(batch["bboxes"][keep] * scale)
                metrics.update_stats({
                    "tp": self.match(det[:, :4], det[:, 5], gt_boxes, gt_cls),
                    "conf": det[:, 4].cpu().numpy(),
                    "pred_cls": det[:, 5].cpu().numpy(),
                    "target_cls": gt_cls.cpu().numpy(),
                    "target_img": np.unique(gt_cls.cpu().numpy()),
                })
                images += 1
                targets_seen += int(keep.sum())
        if images == 0:
            raise ValueError("evaluate() got no batches")
        metrics.process(plot=False)
        box = metrics.box
        out = {
            "mAP50": float(box.map50), "mAP75": float(box.map75), "mAP50-95": float(box.map),
            "precision": float(box.mp), "recall": float(box.mr),
        }
        for i, c in enumerate(np.asarray(box.ap_class_index).astype(int).tolist()):
            out[f"AP50-95.{self.class_names[c]}"] = float(box.all_ap[i].mean())
        out["num_images"] = float(images)
        out["num_targets"] = float(targets_seen)
        return out


@contextlib.contextmanager
def _quiet_ultralytics() -> Iterator[None]:
    """Hide ultralytics' INFO lines while building (e.g. "Overriding model.yaml nc=80")."""
    import logging

    from ultralytics.utils import LOGGER

    level = LOGGER.level
    LOGGER.setLevel(logging.WARNING)
    try:
        yield
    finally:
        LOGGER.setLevel(level)
