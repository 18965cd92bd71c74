"""The batch the meta learner consumes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor

from .._checks import check_image, check_same_shape


@dataclass
class FusionBatch:
    """A batch of paired sources plus the task's target.

    Attributes:
        a: source A (e.g. infrared), ``[B, 1, H, W]`` in [0, 1]; the view the
            fusion loss sees (e.g. a random 256×256 crop).
        b: source B (e.g. visible luminance), same shape as ``a``.
        target: whatever the task's ``loss`` expects (masks, boxes, ...).
        task_a: the view of A the task sees (e.g. the whole image resized);
            defaults to ``a``.
        task_b: the view of B the task sees; defaults to ``b``.
    """

    a: Tensor
    b: Tensor
    target: Any = None
    task_a: Tensor | None = None
    task_b: Tensor | None = None

    def __post_init__(self) -> None:
        check_image("a", self.a, channels=None)
        check_image("b", self.b, channels=None)
        check_same_shape(a=self.a, b=self.b)
        if (self.task_a is None) != (self.task_b is None):
            raise ValueError("task_a and task_b must be given together")
        if self.task_a is not None:
            check_image("task_a", self.task_a, channels=None)
            check_image("task_b", self.task_b, channels=None)
            check_same_shape(task_a=self.task_a, task_b=self.task_b)

    @property
    def task_sources(self) -> tuple[Tensor, Tensor]:
        """The task view ``(A, B)``, falling back to the fusion-loss view."""
        if self.task_a is None:
            return self.a, self.b
        return self.task_a, self.task_b  # type: ignore[return-value]
