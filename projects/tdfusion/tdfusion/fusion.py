"""Fusion "networks" for the TDFusion ablation V and for the trivial baselines."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from learnable_fusion_loss._checks import check_image, check_same_shape
from learnable_fusion_loss.registry import MODELS

__all__ = ["WeightedSumFusion", "SourceBaselineFusion", "BASELINE_RULES"]

#: Rules of :class:`SourceBaselineFusion`.
BASELINE_RULES: tuple[str, ...] = ("a", "b", "mean", "max")


@MODELS.register_module()
class WeightedSumFusion(nn.Module):
    """Ablation V: ``F(a, b) = w_a * a + w_b * b`` with ``(w_a, w_b) = W(a, b)``.

    ``W`` is any weight network producing per-pixel softmax weights ``[B, 2, H, W]``
    (by default the same Restormer LPN as the loss generator, with its own
    parameters). Trained by the fusion loss like any F, the fused image can only
    be a per-pixel convex combination of the sources.

    Args:
        weight_net: config or module of W (default ``dict(type='TDFusionLPN')``).
    """

    def __init__(self, weight_net: nn.Module | Mapping | None = None) -> None:
        super().__init__()
        if weight_net is None:
            weight_net = dict(type="TDFusionLPN")
        self.weight_net = MODELS.build(dict(weight_net)) if isinstance(weight_net, Mapping) else weight_net

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        check_image("a", a, channels=1)
        check_image("b", b, channels=1)
        check_same_shape(a=a, b=b)
        weights = self.weight_net(a, b)
        if weights.shape[1] != 2 or weights.shape[-2:] != a.shape[-2:]:
            raise ValueError(f"weight_net must return [B, 2, H, W], got {tuple(weights.shape)}")
        return weights[:, :1] * a + weights[:, 1:] * b


@MODELS.register_module()
class SourceBaselineFusion(nn.Module):
    """A fixed fusion rule without parameters: ``a`` alone, ``b`` alone, mean or max.

    With it, :class:`~learnable_fusion_loss.engine.MetaFusionModel` trains only T
    (set ``meta_steps=0``), which gives the task baseline of each rule under the
    same schedule as the method.

    Args:
        rule: ``"a"`` (IR alone), ``"b"`` (VIS alone), ``"mean"`` or ``"max"``.
    """

    def __init__(self, rule: str = "mean") -> None:
        super().__init__()
        if rule not in BASELINE_RULES:
            raise ValueError(f"rule must be one of {BASELINE_RULES}, got {rule!r}")
        self.rule = rule

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        check_image("a", a, channels=1)
        check_image("b", b, channels=1)
        check_same_shape(a=a, b=b)
        if self.rule == "a":
            return a.clone()
        if self.rule == "b":
            return b.clone()
        if self.rule == "mean":
            return (a + b) / 2
        return torch.maximum(a, b)

    def extra_repr(self) -> str:
        return f"rule={self.rule!r}"
