"""Task metrics on fused images, through the task adapter's own ``evaluate``.

:class:`TaskMetric` collects, per test sample, the fused *task view* (as the 8-bit
image a saved fused file would hold) and its per-sample target; at the end it hands
them, batched by the adapter's target codec (``collate_targets``), to the adapter's
``evaluate(batches)`` (SegFormer: mmseg ``IoUMetric`` → ``mIoU``, ``mAcc``, ``aAcc``;
YOLOv8: ultralytics ``DetMetrics`` → ``mAP50``, ``mAP75``, ``mAP50-95``). The adapter is bound by :class:`TaskMetricHook` before validation
and testing (a metric is built by MMEngine without access to the model).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch
from mmengine.evaluator import BaseMetric
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from torch import Tensor

from ..registry import HOOKS, METRICS
from ..tasks.targets import collate_for, stack_targets

__all__ = ["TaskMetric", "TaskMetricHook", "batch_task_samples"]


#: ``(per-sample targets, (H, W) of the images) -> batch target``: a task's ``collate_targets``.
Collate = Callable[[Sequence[Any], tuple[int, int]], Any]


def batch_task_samples(
    results: Sequence[Mapping[str, Any]], batch_size: int = 8, collate: Collate | None = None
) -> Iterator[tuple[Tensor, Any]]:
    """``(fused [B,1,H,W] float in [0,1], target)`` batches of consecutive same-size samples.

    Each result's ``target`` is a per-sample target; ``collate`` (the task's codec,
    default :func:`~learnable_fusion_loss.tasks.stack_targets`) makes the batch target.
    """
    group: list[Mapping[str, Any]] = []

    def flush() -> tuple[Tensor, Any]:
        fused = torch.stack([r["fused_task"] for r in group]).float() / 255.0
        targets = [r["target"] for r in group]
        size = tuple(fused.shape[-2:])
        return fused, stack_targets(targets) if collate is None else collate(targets, size)

    for result in results:
        if group and (len(group) == batch_size or result["fused_task"].shape != group[0]["fused_task"].shape):
            yield flush()
            group = []
        group.append(result)
    if group:
        yield flush()


@METRICS.register_module()
class TaskMetric(BaseMetric):
    """The task's metric on fused test images (``mIoU``/``mAcc`` or ``mAP50``/``mAP75`` …).

    Args:
        keys: metric names to report (default: everything ``evaluate`` returns).
        batch_size: samples per ``evaluate`` batch (same-size neighbours only).
        collect_device, prefix: see :class:`mmengine.evaluator.BaseMetric`
            (default prefix ``task``: ``task/mIoU``).
    """

    default_prefix = "task"

    def __init__(
        self,
        keys: Sequence[str] | None = None,
        batch_size: int = 8,
        collect_device: str = "cpu",
        prefix: str | None = None,
    ) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.keys = list(keys) if keys is not None else None
        self.batch_size = batch_size
        self.task: Any = None

    def bind(self, task: Any) -> None:
        """Give the metric the task adapter whose ``evaluate`` it calls."""
        if not callable(getattr(task, "evaluate", None)):
            raise TypeError(f"task {type(task).__name__} has no evaluate(batches) method")
        self.task = task

    def process(self, data_batch: Any, data_samples: Sequence[Mapping[str, Any]]) -> None:
        for sample in data_samples:
            if "fused_task" not in sample or "target" not in sample:
                raise KeyError("TaskMetric needs 'fused_task' and 'target' in each test output")
            fused = sample["fused_task"].detach().float().clamp(0, 1)
            # Evaluate the 8-bit image a saved fused file holds (and keep memory small).
            self.results.append({"fused_task": torch.round(fused * 255).to(torch.uint8).cpu(),
                                 "target": sample["target"]})

    def compute_metrics(self, results: list) -> dict[str, float]:
        if self.task is None:
            raise RuntimeError(
                "TaskMetric is not bound to a task adapter: add dict(type='TaskMetricHook') to "
                "custom_hooks (a project's base runtime config can list it once)"
            )
        if not results:
            raise ValueError("TaskMetric got no samples")
        collate = functools.partial(collate_for, self.task)
        metrics = self.task.evaluate(batch_task_samples(results, self.batch_size, collate))
        if self.keys is not None:
            missing = [k for k in self.keys if k not in metrics]
            if missing:
                raise KeyError(f"task.evaluate returned no {missing} (has {sorted(metrics)})")
            metrics = {k: metrics[k] for k in self.keys}
        return {k: float(v) for k, v in metrics.items()}


@HOOKS.register_module()
class TaskMetricHook(Hook):
    """Binds every :class:`TaskMetric` of the val/test evaluators to the model's task adapter."""

    priority = "VERY_HIGH"

    @staticmethod
    def _bind(runner: Any, loop: Any) -> None:
        evaluator = getattr(loop, "evaluator", None)
        if evaluator is None:
            return
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        for metric in evaluator.metrics:
            if isinstance(metric, TaskMetric):
                metric.bind(model.task)

    def before_val(self, runner: Any) -> None:
        self._bind(runner, runner.val_loop)

    def before_test(self, runner: Any) -> None:
        self._bind(runner, runner.test_loop)
