"""Downstream task adapters (the task net T and its loss)."""

from .base import CallableTask, ModuleTask, TaskAdapter, TaskSnapshot, as_task

__all__ = ["TaskAdapter", "TaskSnapshot", "ModuleTask", "CallableTask", "as_task"]
