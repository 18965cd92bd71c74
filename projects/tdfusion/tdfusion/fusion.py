"""Fusion "networks" for the TDFusion ablation V and for the trivial baselines."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from learnable_fusion_loss._checks import check_image, check_same_shape
from learnable_fusion_loss.registry import MODELS, build_module

__all__ = ["WeightedSumFusion", "SourceBaselineFusion", "BASELINE_RULES"]

#: Rules of :class:`SourceBaselineFusion`.
BASELINE_RULES: tuple[str, ...] = ("a", "b", "mean", "max")


@MODELS.register_module()
class WeightedSumFusion(nn.Module):
    """Ablation V: the fused image is ``I_f = w_a · I_a + w_b · I_b``.

    The paper (Table 3, V) replaces the fusion network by this weighted sum and does
    not say where ``w`` comes from; both readings are offered:

    * ``weight_net=None`` (default): ``w = G(a, b)``, the loss generator's own
      meta-learned weights (``w_a``, ``w_b`` name G's outputs everywhere else in the
      paper). There is no F: this module has no parameters, the meta step's
      hypergradient is the direct derivative of the task loss through the weighted
      sum, and the fusion phase trains T only. :class:`MetaFusionModel` hands G over
      through :meth:`bind_generator` (a reference, not a registered sub-module, so G's
      parameters are trained and checkpointed once, as G).
    * ``weight_net=<config or module>``: a separate weight network W (e.g.
      ``dict(type='TDFusionLPN')``) with its own parameters, trained by the learnable
      fusion loss like any F.

    Args:
        weight_net: None (G's weights) or the separate weight network W.

    >>> import torch
    >>> from learnable_fusion_loss.generators import ConstantWeights
    >>> fusion = WeightedSumFusion()
    >>> fusion.bind_generator(ConstantWeights((0.25, 0.75)))
    >>> a, b = torch.zeros(1, 1, 4, 4), torch.ones(1, 1, 4, 4)
    >>> float(fusion(a, b).mean())
    0.75
    """

    def __init__(self, weight_net: nn.Module | Mapping | None = None) -> None:
        super().__init__()
        self.uses_generator = weight_net is None
        self._generator: list[nn.Module] = []  # a list: nn.Module would register G as ours
        if weight_net is not None:
            self.weight_net = build_module(weight_net)

    def bind_generator(self, generator: nn.Module) -> None:
        """Use ``generator``'s weights (only for ``weight_net=None``; else a no-op)."""
        if self.uses_generator:
            self._generator[:] = [generator]

    def weights(self, a: Tensor, b: Tensor) -> Tensor:
        """``[B, 2, H, W]`` per-pixel weights ``(w_a, w_b)`` of the sum."""
        if self.uses_generator:
            if not self._generator:
                raise RuntimeError(
                    "WeightedSumFusion(weight_net=None) fuses with G's weights: call "
                    "bind_generator(G) first (MetaFusionModel does)")
            return self._generator[0](a, b)
        return self.weight_net(a, b)

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        check_image("a", a, channels=1)
        check_image("b", b, channels=1)
        check_same_shape(a=a, b=b)
        weights = self.weights(a, b)
        if weights.shape[1] != 2 or weights.shape[-2:] != a.shape[-2:]:
            raise ValueError(f"the weights must be [B, 2, H, W], got {tuple(weights.shape)}")
        return weights[:, :1] * a + weights[:, 1:] * b

    def extra_repr(self) -> str:
        return "weights=G (the loss generator)" if self.uses_generator else ""


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
