"""Warm-ups before the first meta phase: T alone on a source, both, a rule or F's output."""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor, nn

from ..tasks.base import buffers_kept_unless
from .batch import Batch, call_model
from .guard import NonFiniteGuard, all_finite

__all__ = ["TASK_WARMUP_SOURCES", "TaskWarmupSource", "task_warmup_step", "guarded_task_step"]


#: Inputs a task warm-up can train T on (see :func:`task_warmup_step`).
TASK_WARMUP_SOURCES: tuple[str, ...] = ("a", "b", "both", "mean", "max", "fused")
TaskWarmupSource = Literal["a", "b", "both", "mean", "max", "fused"]


def guarded_task_step(
    task: Any, image: Tensor, target: Any, guard: NonFiniteGuard | None, phase: str = "task"
) -> dict[str, float]:
    """T's ordinary step on ``image``, recorded by ``guard`` under ``phase``.

    A non-finite ``image`` (F diverged) is not given to T; a step the adapter
    skipped (non-finite loss or gradient, ``skipped=1``) is counted. Without a guard
    the adapter's stats are returned as they are.

    >>> import torch
    >>> from learnable_fusion_loss.meta import NonFiniteGuard
    >>> from learnable_fusion_loss.tasks import CallableTask
    >>> guard = NonFiniteGuard(report=print)
    >>> task = CallableTask(lambda fused, target: fused.mean())
    >>> guarded_task_step(task, torch.full((1, 1, 4, 4), float("nan")), None, guard)
    task step skipped, non-finite fused image given to T (not applied); 1 in a row, 1 skipped in all
    {'skipped_task': 1.0, 'skipped_total': 1.0}
    """
    if guard is None:
        return task.train_step(image.detach(), target)
    if not all_finite([image]):
        return guard.record(phase, False, "fused image given to T")
    stats = dict(task.train_step(image.detach(), target))
    skipped = bool(stats.pop("skipped", 0.0))
    stats.update(guard.record(phase, not skipped, "task loss or gradient"))
    return stats


def task_warmup_step(
    task: Any,
    fusion_net: nn.Module,
    batch: Batch,
    source: TaskWarmupSource = "both",
    guard: NonFiniteGuard | None = None,
) -> dict[str, float]:
    """One warm-up step of the task alone on the task view of ``source``.

    A task net trained from scratch gives a task loss that is noise for its first
    hundreds of steps; a hypergradient taken through it is noise too. Training T
    first, on inputs it will later see, gives the meta step a task with a voice
    (a pre-trained task net is the other way to get one).

    >>> import torch
    >>> from learnable_fusion_loss.meta import FusionBatch
    >>> from learnable_fusion_loss.tasks import CallableTask
    >>> task = CallableTask(lambda fused, target: fused.mean())
    >>> a = b = torch.rand(1, 1, 8, 8)
    >>> task_warmup_step(task, torch.nn.Identity(), FusionBatch(a, b), "max")
    {}
    """
    if source not in TASK_WARMUP_SOURCES:
        raise ValueError(f"task warm-up source must be one of {TASK_WARMUP_SOURCES}, got {source!r}")
    if source == "fused":
        with buffers_kept_unless(fusion_net) as kept, torch.no_grad():
            inputs = [call_model(fusion_net, batch.task_inputs)]
            kept[0] = all_finite(inputs)  # a NaN pass leaves no statistics behind
    else:
        sources = batch.task_inputs
        if not (isinstance(sources, tuple) and len(sources) == 2 and all(isinstance(t, Tensor) for t in sources)):
            raise ValueError(
                f"task warm-up source {source!r} needs a batch of two sources (a fusion batch); "
                "this batch's task inputs are not a pair of images: use source='fused'")
        a, b = sources
        inputs = {"a": [a], "b": [b], "both": [a, b], "mean": [(a + b) / 2],
                  "max": [torch.maximum(a, b)]}[source]
    stats: dict[str, float] = {}
    for k, image in enumerate(inputs):
        step = guarded_task_step(task, image, batch.target, guard, "task_warmup")
        suffix = f"_{'ab'[k]}" if len(inputs) > 1 else ""
        for name, value in step.items():
            if name.startswith("skipped_"):  # counts: one per phase, not per input
                stats[name] = max(stats.get(name, 0.0), value)
            else:
                stats[f"{name}{suffix}"] = value
    if len(inputs) > 1 and all(f"loss_task_{s}" in stats for s in "ab"):
        stats["loss_task"] = (stats["loss_task_a"] + stats["loss_task_b"]) / 2
    return stats
