"""Warm-ups before the first meta phase: T alone on a source, both, a rule or F's output."""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import nn

from .batch import FusionBatch

__all__ = ["TASK_WARMUP_SOURCES", "TaskWarmupSource", "task_warmup_step"]


#: Inputs a task warm-up can train T on (see :func:`task_warmup_step`).
TASK_WARMUP_SOURCES: tuple[str, ...] = ("a", "b", "both", "mean", "max", "fused")
TaskWarmupSource = Literal["a", "b", "both", "mean", "max", "fused"]


def task_warmup_step(
    task: Any, fusion_net: nn.Module, batch: FusionBatch, source: TaskWarmupSource = "both"
) -> dict[str, float]:
    """One warm-up step of the task alone on the task view of ``source``.

    A task net trained from scratch gives a task loss that is noise for its first
    hundreds of steps; a hypergradient taken through it is noise too. Training T
    first, on inputs it will later see, gives the meta step a task with a voice
    (TDFusion's authors suggest a pre-trained task net; HaowenBai/TDFusion issue #6).

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
    a, b = batch.task_sources
    if source == "fused":
        with torch.no_grad():
            inputs = [fusion_net(a, b)]
    else:
        inputs = {"a": [a], "b": [b], "both": [a, b], "mean": [(a + b) / 2],
                  "max": [torch.maximum(a, b)]}[source]
    stats: dict[str, float] = {}
    for k, image in enumerate(inputs):
        step = task.train_step(image.detach(), batch.target)
        suffix = f"_{'ab'[k]}" if len(inputs) > 1 else ""
        stats.update({f"{name}{suffix}": value for name, value in step.items()})
    if len(inputs) > 1 and all(f"loss_task_{s}" in stats for s in "ab"):
        stats["loss_task"] = (stats["loss_task_a"] + stats["loss_task_b"]) / 2
    return stats
