"""Downstream task adapters (the task net T, its loss and its target codec)."""

from .base import CallableTask, ModuleTask, NetTask, TaskAdapter, TaskSnapshot, as_task, finite_step
from .multi import MultiTask
from .targets import TargetCodec, collate_for, split_batch_target, split_for, stack_targets

__all__ = [
    "TaskAdapter",
    "TaskSnapshot",
    "NetTask",
    "ModuleTask",
    "CallableTask",
    "MultiTask",
    "as_task",
    "finite_step",
    "TargetCodec",
    "collate_for",
    "split_for",
    "stack_targets",
    "split_batch_target",
]
