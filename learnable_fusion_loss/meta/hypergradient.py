"""What one meta step computes before anything is applied: the hypergradient ``∂L_t/∂φ``."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ..losses.learnable import LossOutput
from .guard import all_finite

__all__ = ["Hypergradient", "weight_means", "zeros_where_none"]


@dataclass
class Hypergradient:
    """The result of one inner → T' → outer pass (nothing applied yet)."""

    grads: list[Tensor]
    loss_task: Tensor
    inner: LossOutput

    @property
    def norm(self) -> float:
        if not self.grads:
            return 0.0
        return float(torch.linalg.vector_norm(torch.stack([g.norm() for g in self.grads])))

    @property
    def finite(self) -> bool:
        return all_finite(self.grads)


def zeros_where_none(grads: Sequence[Tensor | None], like: Iterable[Tensor]) -> list[Tensor]:
    """``autograd.grad(..., allow_unused=True)``'s result with zeros for unused inputs.

    >>> zeros_where_none([None, torch.ones(2)], [torch.empty(3), torch.empty(2)])
    [tensor([0., 0., 0.]), tensor([1., 1.])]
    """
    return [torch.zeros_like(t) if g is None else g for t, g in zip(like, grads, strict=True)]


def weight_means(weight_maps: Tensor | None) -> dict[str, float]:
    """Mean generated weight per source of ``[B, S, H, W]`` weight maps (``{}`` for others).

    >>> weight_means(torch.stack([torch.full((1, 2, 2), 0.25), torch.full((1, 2, 2), 0.75)], 1))
    {'weight_0': 0.25, 'weight_1': 0.75}
    """
    if weight_maps is None or weight_maps.ndim != 4:
        return {}
    means = weight_maps.detach().mean(dim=(0, 2, 3))
    return {f"weight_{i}": float(m) for i, m in enumerate(means)}
