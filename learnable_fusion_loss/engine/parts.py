"""The parts of a :class:`~learnable_fusion_loss.engine.MetaFusionModel` built from configs.

The task adapter is built from ``MODELS`` under a default scope of its own (an
mmseg model config names unscoped mmseg types), on the device MMEngine will put the
model on; :func:`task_module` finds the ``nn.Module`` holding T's parameters.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from torch import nn

from ..registry import MODELS, build_module
from ..tasks.base import CallableTask

__all__ = ["build_task", "with_device", "task_module"]


def build_task(task: Any, scope: str | None) -> Any:
    """The task adapter: its class from ``MODELS``, instantiated under ``scope``."""
    if not isinstance(task, Mapping):
        return build_module(task, "task")
    if scope is None:
        return MODELS.build(dict(task))
    from mmengine.registry import DefaultScope

    args = dict(task)
    cls = args.pop("type")
    if isinstance(cls, str):
        cls = MODELS.get(cls)
        if cls is None:
            raise KeyError(f"task type {task['type']!r} is not registered in {MODELS.name}")
    with DefaultScope.overwrite_default_scope(scope):
        return cls(**args)


def with_device(task: Any) -> Any:
    """A task config without ``device`` gets MMEngine's device (where the runner puts the model).

    The adapters keep tensors (normalisation constants, loss buffers) on the device
    they were built on, so they must be built where the runner will move their net.
    """
    if not isinstance(task, Mapping) or "device" in task:
        return task
    cls = MODELS.get(task["type"]) if isinstance(task.get("type"), str) else task.get("type")
    try:
        accepts = cls is not None and "device" in inspect.signature(cls).parameters
    except (TypeError, ValueError):
        accepts = False
    if not accepts:
        return task
    from mmengine.device import get_device

    return {**task, "device": get_device()}


def task_module(task: Any) -> nn.Module | None:
    """The ``nn.Module`` that owns T's parameters (None for a parameter-free task)."""
    if isinstance(task, nn.Module):
        return task
    net = getattr(task, "net", None)
    if isinstance(net, nn.Module):
        return net
    if isinstance(task, CallableTask):
        return None
    raise TypeError(
        f"task {type(task).__name__} is neither an nn.Module nor has an nn.Module `.net`; "
        "the model cannot checkpoint or move its parameters"
    )
