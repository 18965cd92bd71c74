"""Task targets between their per-sample form and a task's batch format (the target codec).

Datasets and ``collate_paired`` carry targets *per sample*, in a form that names no
task library: a class map ``[H, W]`` (segmentation), or pixel boxes ``[N, 4]`` ``x1, y1,
x2, y2`` with labels ``[N]`` (detection, ``{"bboxes": ..., "labels": ...}``), in the
frame of the task image. The engine passes them through as they are; the task
adapter owns the conversion to the format its loss takes:

* ``collate_targets(targets, image_size)``: a list with one target per sample → the
  task's batch target (for a batch whose task images are ``image_size`` = ``(H, W)``);
* ``split_targets(target, count, image_size)``: the inverse, a batch target → one
  target per sample (for a batch given already collated).

An adapter without these methods gets the default codec, :func:`stack_targets` and
:func:`split_batch_target` (tensors of one shape stacked, dicts field by field).
:func:`collate_for` and :func:`split_for` pick the adapter's codec or the default.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

__all__ = ["TargetCodec", "stack_targets", "split_batch_target", "collate_for", "split_for"]


@runtime_checkable
class TargetCodec(Protocol):
    """The optional part of a :class:`~.base.TaskAdapter` that converts its targets."""

    def collate_targets(self, targets: Sequence[Any], image_size: tuple[int, int]) -> Any: ...

    def split_targets(self, target: Any, count: int, image_size: tuple[int, int]) -> list[Any]: ...


def stack_targets(targets: Sequence[Any]) -> Any:
    """One batch of per-sample targets: same-shape tensors stacked, dicts field by field.

    Anything else (tensors of different shapes, strings, ...) stays a list.

    >>> stack_targets([torch.zeros(2, 3), torch.ones(2, 3)]).shape
    torch.Size([2, 2, 3])
    >>> stack_targets([{"m": torch.zeros(2)}, {"m": torch.ones(2)}])["m"].tolist()
    [[0.0, 0.0], [1.0, 1.0]]
    >>> stack_targets(["a", "b"])
    ['a', 'b']
    """
    if not targets:
        raise ValueError("there are no targets to batch")
    first = targets[0]
    if all(isinstance(t, Tensor) for t in targets) and len({tuple(t.shape) for t in targets}) == 1:
        return torch.stack(list(targets))
    if all(isinstance(t, Mapping) and set(t) == set(first) for t in targets):
        return {key: stack_targets([t[key] for t in targets]) for key in first}
    return list(targets)


def split_batch_target(target: Any, count: int, key: str | None = None) -> list[Any]:
    """Entry ``i`` of a batch target, for ``i < count``: the inverse of :func:`stack_targets`.

    Tensors and lists are indexed along their first axis, dicts field by field;
    a value that is not per sample (a scalar, a string) is repeated, or, when
    ``key`` names the batch entry, refused with a ``ValueError`` naming it (and
    the field, ``key.field``).

    >>> [t.tolist() for t in split_batch_target(torch.tensor([[1, 2], [3, 4]]), 2)]
    [[1, 2], [3, 4]]
    >>> split_batch_target({"id": ["a", "b"], "scale": 2.0}, 2)
    [{'id': 'a', 'scale': 2.0}, {'id': 'b', 'scale': 2.0}]
    >>> split_batch_target({"id": ["a", "b"], "scale": 2.0}, 2, key="meta")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
        ...
    ValueError: batch entry 'meta.scale' (float) does not hold one target per sample (2); ...
    """
    if isinstance(target, Tensor) and target.ndim > 0 and target.shape[0] == count:
        return [target[i] for i in range(count)]
    if isinstance(target, (list, tuple)) and len(target) == count:
        return list(target)
    if isinstance(target, Mapping):
        fields = {name: split_batch_target(value, count, None if key is None else f"{key}.{name}")
                  for name, value in target.items()}
        return [{name: values[i] for name, values in fields.items()} for i in range(count)]
    if key is not None:
        shape = tuple(target.shape) if isinstance(target, Tensor) else type(target).__name__
        raise ValueError(
            f"batch entry {key!r} ({shape}) does not hold one target per sample ({count}); the engine "
            "takes targets per sample (collate_paired keeps them so) and the task adapter batches them"
        )
    return [target] * count


def collate_for(task: Any, targets: Sequence[Any], image_size: Sequence[int]) -> Any:
    """``task``'s batch target of per-sample ``targets`` (its codec, else :func:`stack_targets`)."""
    collate = getattr(task, "collate_targets", None)
    if callable(collate):
        return collate(targets, tuple(int(s) for s in image_size))
    return stack_targets(targets)


def split_for(task: Any, target: Any, count: int, image_size: Sequence[int]) -> list[Any]:
    """Per-sample targets of ``task``'s batch ``target`` (its codec, else :func:`split_batch_target`)."""
    split = getattr(task, "split_targets", None)
    if callable(split):
        return split(target, count, tuple(int(s) for s in image_size))
    return split_batch_target(target, count)
