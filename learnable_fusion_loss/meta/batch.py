"""The batches the meta learner consumes: any model's (:class:`MetaBatch`) and fusion's.

The learner needs three things of a batch, and nothing else:

* ``inputs``: how the model is called for the loss, ``model(*inputs)`` (a tuple) or
  ``model(**inputs)`` (a mapping of named inputs);
* ``loss_inputs``: what the learnable loss is given besides the model's output,
  ``loss(output, *loss_inputs)`` (and what its generator G sees);
* ``task_inputs`` and ``target``: how the model is called for the task, and the
  task's target, ``task.loss(model(*task_inputs), target)``.

:class:`MetaBatch` holds them for any model (a denoiser, a super-resolver, ...);
:class:`FusionBatch` is the fusion instance, two sources seen by the model, the
loss and the task alike.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from torch import Tensor

from .._checks import check_image, check_same_shape

__all__ = ["Batch", "FusionBatch", "Inputs", "MetaBatch", "call_model"]

#: A model's inputs: positional (``model(*inputs)``) or named (``model(**inputs)``).
Inputs = tuple[Any, ...] | Mapping[str, Any]


def call_model(model: Callable[..., Tensor], inputs: Inputs) -> Tensor:
    """``model(*inputs)`` for a tuple, ``model(**inputs)`` for a mapping of named inputs.

    >>> import torch
    >>> call_model(torch.add, (torch.ones(1), torch.ones(1)))
    tensor([2.])
    >>> call_model(lambda image, scale: image * scale, {"image": torch.ones(1), "scale": 3})
    tensor([3.])
    """
    if isinstance(inputs, Mapping):
        return model(**inputs)
    if isinstance(inputs, tuple):
        return model(*inputs)
    raise TypeError(f"model inputs must be a tuple or a mapping of named inputs, got {type(inputs).__name__}")


@runtime_checkable
class Batch(Protocol):
    """What :class:`~learnable_fusion_loss.meta.MetaLossLearner` reads of a batch."""

    @property
    def inputs(self) -> Inputs: ...

    @property
    def loss_inputs(self) -> tuple[Tensor, ...]: ...

    @property
    def task_inputs(self) -> Inputs: ...

    @property
    def target(self) -> Any: ...


@dataclass
class MetaBatch:
    """A batch for any model trained with a learnable loss.

    Attributes:
        inputs: the model's inputs for the loss, a tuple or a mapping of named inputs.
        loss_inputs: what the loss sees besides the output (e.g. ``(degraded, clean)``
            for a restoration loss whose weights G computes from the degraded image);
            default: ``inputs`` when it is a tuple.
        target: whatever the task's ``loss`` expects (boxes, masks, labels, ...).
        task_inputs: the model's inputs for the task view; default ``inputs``.

    >>> import torch
    >>> noisy, clean = torch.rand(2, 1, 1, 4, 4)
    >>> batch = MetaBatch(inputs=(noisy,), loss_inputs=(noisy, clean), target=None)
    >>> batch.task_inputs is batch.inputs
    True
    """

    inputs: Inputs
    loss_inputs: tuple[Tensor, ...] | None = None
    target: Any = None
    task_inputs: Inputs | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.inputs, (tuple, Mapping)):
            raise TypeError(f"inputs must be a tuple or a mapping, got {type(self.inputs).__name__}")
        if self.loss_inputs is None:
            if not isinstance(self.inputs, tuple):
                raise ValueError("loss_inputs is required when inputs are named (a mapping)")
            self.loss_inputs = self.inputs
        if not isinstance(self.loss_inputs, tuple):
            raise TypeError(f"loss_inputs must be a tuple, got {type(self.loss_inputs).__name__}")
        if self.task_inputs is None:
            self.task_inputs = self.inputs


@dataclass
class FusionBatch:
    """A batch of paired sources plus the task's target: fusion's :class:`Batch`.

    Attributes:
        a: source A (e.g. infrared), ``[B, 1, H, W]`` in [0, 1]; the view the
            fusion loss sees (e.g. a random 256×256 crop).
        b: source B (e.g. visible luminance), same shape as ``a``.
        target: whatever the task's ``loss`` expects (masks, boxes, ...).
        task_a: the view of A the task sees (e.g. the whole image resized);
            defaults to ``a``.
        task_b: the view of B the task sees; defaults to ``b``.

    >>> import torch
    >>> a, b = torch.rand(2, 1, 1, 8, 8)
    >>> batch = FusionBatch(a, b)
    >>> len(batch.inputs), batch.loss_inputs == batch.inputs, batch.task_inputs == batch.inputs
    (2, True, True)
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
    def inputs(self) -> tuple[Tensor, Tensor]:
        """F is called on the two sources: ``F(a, b)``."""
        return self.a, self.b

    @property
    def loss_inputs(self) -> tuple[Tensor, Tensor]:
        """The fusion loss compares the fused image with both sources."""
        return self.a, self.b

    @property
    def task_sources(self) -> tuple[Tensor, Tensor]:
        """The task view ``(A, B)``, falling back to the fusion-loss view."""
        if self.task_a is None:
            return self.a, self.b
        return self.task_a, self.task_b  # type: ignore[return-value]

    @property
    def task_inputs(self) -> tuple[Tensor, Tensor]:
        """F's inputs for the task view (:attr:`task_sources`)."""
        return self.task_sources
