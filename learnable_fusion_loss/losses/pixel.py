"""A per-pixel weighted reconstruction loss whose weights come from a generator G."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from ..registry import MODELS
from .learnable import LearnableLoss

__all__ = ["PIXEL_BASES", "PixelWeightedLoss", "pixel_error"]

PixelBase = Literal["l1", "l2", "charbonnier"]
PIXEL_BASES: tuple[str, ...] = ("l1", "l2", "charbonnier")


def pixel_error(output: Tensor, reference: Tensor, base: PixelBase = "l1", eps: float = 1e-3) -> Tensor:
    """The elementwise error of ``output`` against ``reference``.

    ``"l1"``: ``|o − r|``; ``"l2"``: ``(o − r)²``; ``"charbonnier"``: ``√((o − r)² + ε²) − ε``
    (a smooth L1, twice differentiable everywhere: the one for exact hypergradient checks).

    >>> pixel_error(torch.tensor([3.0]), torch.tensor([1.0]), "l2")
    tensor([4.])
    """
    if base not in PIXEL_BASES:
        raise ValueError(f"base must be one of {PIXEL_BASES}, got {base!r}")
    if output.shape != reference.shape:
        raise ValueError(f"output {tuple(output.shape)} and reference {tuple(reference.shape)} differ in shape")
    diff = output - reference
    if base == "l1":
        return diff.abs()
    if base == "l2":
        return diff * diff
    return torch.sqrt(diff * diff + eps * eps) - eps


@MODELS.register_module()
class PixelWeightedLoss(LearnableLoss):
    """``mean(w ⊙ error(output, reference))`` with per-pixel weights ``w`` from G.

    Called as ``loss(output, reference, *more)``: the reference is the first input
    (the clean image of a restoration task, the ground truth of any pixel loss); G
    sees the inputs at ``generator_inputs`` (default: the reference alone). ``w``
    is ``[B, 1, H, W]`` (broadcast over channels) or ``[B, C, H, W]``.

    Args:
        generator: G, a module or a ``MODELS`` config (e.g. ``PixelWeightGenerator``).
        base: the elementwise error, ``"l1"``, ``"l2"`` or ``"charbonnier"``.
        generator_inputs: positions of the inputs G sees; default ``(0,)``.
        eps: the Charbonnier ε.

    >>> from learnable_fusion_loss.generators import PixelWeightGenerator
    >>> loss = PixelWeightedLoss(PixelWeightGenerator(hidden=4), base="l1")
    >>> out = loss(torch.ones(1, 1, 4, 4), torch.zeros(1, 1, 4, 4))
    >>> float(out.loss), sorted(out.terms)   # G starts with every weight 1: plain L1
    (1.0, ['loss', 'loss_pixel'])
    """

    def __init__(
        self,
        generator: nn.Module | dict,
        base: PixelBase = "l1",
        generator_inputs: Sequence[int] | None = (0,),
        eps: float = 1e-3,
    ) -> None:
        if base not in PIXEL_BASES:
            raise ValueError(f"base must be one of {PIXEL_BASES}, got {base!r}")
        if not eps > 0:
            raise ValueError(f"eps must be > 0, got {eps}")
        super().__init__(generator, self._criterion, generator_inputs=generator_inputs)
        self.base = base
        self.eps = float(eps)

    def _criterion(self, output: Tensor, inputs: tuple[Tensor, ...], weights: Tensor) -> dict[str, Tensor]:
        if not inputs:
            raise ValueError("PixelWeightedLoss needs the reference image: loss(output, reference)")
        error = pixel_error(output, inputs[0], self.base, self.eps)
        if weights.ndim != 4 or weights.shape[0] != error.shape[0] or weights.shape[2:] != error.shape[2:] \
                or weights.shape[1] not in (1, error.shape[1]):
            raise ValueError(f"G's weights {tuple(weights.shape)} do not fit the error {tuple(error.shape)}: "
                             "need [B, 1 or C, H, W]")
        value = (weights * error).mean()
        return {"loss": value, "loss_pixel": value}
