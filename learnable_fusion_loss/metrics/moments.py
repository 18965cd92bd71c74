"""Pixel-moment measures on grey levels: SD, CC, SCD and PSNR, and the exact integer moments they share."""

from __future__ import annotations

import torch
from torch import Tensor


def _per_image(x: Tensor) -> Tensor:
    return x.flatten(start_dim=-2)  # [..., H*W]


def pearson(x: Tensor, y: Tensor) -> Tensor:
    """Pearson correlation over the pixels of each image (``corr2`` in MATLAB)."""
    xc = _per_image(x) - _per_image(x).mean(-1, keepdim=True)
    yc = _per_image(y) - _per_image(y).mean(-1, keepdim=True)
    return (xc * yc).sum(-1) / torch.sqrt((xc * xc).sum(-1) * (yc * yc).sum(-1))


def sd_levels(levels: Tensor) -> Tensor:
    return _per_image(levels).flatten(1).std(dim=-1, correction=0)


def psnr_levels(fused: Tensor, a: Tensor, b: Tensor) -> Tensor:
    mse = ((a - fused).pow(2).flatten(1).mean(-1) + (b - fused).pow(2).flatten(1).mean(-1)) / 2
    return psnr_from_mse(mse, fused)


def scd_levels(fused: Tensor, a: Tensor, b: Tensor) -> Tensor:
    return pearson(a, fused - b).flatten(1).sum(-1) + pearson(b, fused - a).flatten(1).sum(-1)


#: Largest image (pixels) for which :class:`IntegerMoments` is exact in int64:
#: ``n · Σxy ≤ n² · 255² < 2^63``.
_EXACT_MOMENT_PIXELS = 11_000_000


class IntegerMoments:
    """Exact pixel sums and products of integer grey-level maps ``[B, C, H, W]``, per image.

    Why: CC, SCD, SD and PSNR are all functions of ``Σx_i`` and ``Σx_i·x_j`` over the
    pixels. For integer levels in ``[0, 255]`` every partial sum of those is an integer
    below 2^53, so one float64 ``bmm`` (a ``C × C`` Gram matrix) gives them exactly in
    any summation order, and the centred moments ``n·Σxy − Σx·Σy`` follow exactly in
    int64. Each metric is then a few integers with one rounding each, instead of
    two-pass float64 sums over every pixel, and the four metrics share one pass.
    """

    def __init__(self, maps: Tensor) -> None:
        flat = maps.flatten(2)  # [B, C, n]
        self.count = flat.shape[-1]
        self.sums = flat.sum(-1).to(torch.int64)  # [B, C]
        self.gram = torch.bmm(flat, flat.transpose(1, 2)).to(torch.int64)  # [B, C, C]
        self.centred = self.count * self.gram - self.sums.unsqueeze(2) * self.sums.unsqueeze(1)

    @staticmethod
    def applies(levels: Tensor, integer_levels: bool) -> bool:
        return integer_levels and levels.shape[-2] * levels.shape[-1] <= _EXACT_MOMENT_PIXELS

    def _form(self, matrix: Tensor, u: dict[int, int], v: dict[int, int]) -> Tensor:
        """``uᵀ M v`` for integer coefficient vectors given as ``{channel: coefficient}``."""
        return sum(cu * cv * matrix[:, i, j] for i, cu in u.items() for j, cv in v.items())

    def pearson(self, u: dict[int, int], v: dict[int, int]) -> Tensor:
        """Correlation of the maps ``Σ u_i x_i`` and ``Σ v_j x_j`` (NaN if one is constant)."""
        cov = self._form(self.centred, u, v).double()
        scale = self._form(self.centred, u, u).double().sqrt() * self._form(self.centred, v, v).double().sqrt()
        return cov / scale

    def std(self, channel: int) -> Tensor:
        """Population standard deviation of one map: ``sqrt(n Σx² − (Σx)²) / n``."""
        return self.centred[:, channel, channel].double().sqrt() / self.count

    def mean_square(self, u: dict[int, int]) -> Tensor:
        """``mean((Σ u_i x_i)²)`` over the pixels."""
        return self._form(self.gram, u, u).double() / self.count


def psnr_from_mse(mse: Tensor, fused: Tensor) -> Tensor:
    peak = fused.flatten(1).amax(-1)
    return 10 * torch.log10(peak * peak / mse)
