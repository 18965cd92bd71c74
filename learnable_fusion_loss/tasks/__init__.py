"""Downstream task adapters (the task net T and its loss)."""

from .base import CallableTask, ModuleTask, NetTask, TaskAdapter, TaskSnapshot, as_task, finite_step

__all__ = ["TaskAdapter", "TaskSnapshot", "NetTask", "ModuleTask", "CallableTask", "as_task", "finite_step"]
