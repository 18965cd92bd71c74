"""Structural similarity on grey levels: SSIM (scikit-image) and MS-SSIM (pytorch_msssim)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from . import native
from .filters import box_sum_valid_t, gaussian_1d, local_moments

_MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def ssim_levels(refs: Tensor, dist: Tensor, data_range: float = 255.0, win_size: int = 7,
                 integer_levels: bool = False) -> Tensor:
    """scikit-image ``structural_similarity`` defaults, per reference channel: [B, S].

    ``integer_levels`` (torch path only): the maps hold integer grey levels in
    ``[0, 255]``. Then every window sum of ``x``, ``x²`` and ``x·y`` is an integer
    below 7²·255² < 2^24, exact in float32, so the five box filters run in float32
    (half the memory traffic, bit-identical sums) and only the SSIM formula runs in
    float64. The compiled path needs no such trick: it forms all five in one pass.
    """
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2
    cov_norm = win_size * win_size / (win_size * win_size - 1.0)  # sample covariance
    if native.available(refs, dist):
        # skimage's uniform_filter moments (weights 1/win per axis) and the SSIM
        # formula in one compiled pass: the same float64 arithmetic as its numpy
        # path up to summation order.
        box = torch.full((win_size,), 1.0 / win_size, dtype=torch.float64)
        return native.ssim_means(refs, dist, box, c1, c2, cov_norm)[1]
    ux_sq, uy_sq, uxy, vx, vy, vxy = _box_moments(refs, dist, win_size, cov_norm, integer_levels)
    numerator = uxy.mul_(2).add_(c1).mul_(vxy.mul_(2).add_(c2))
    s = numerator.div_(ux_sq.add_(uy_sq).add_(c1).mul_(vx.add_(vy).add_(c2)))
    # skimage crops (win-1)/2 border pixels of its reflect-padded map: that is the valid map.
    return s.mean((-2, -1))


def _box_moments(refs: Tensor, dist: Tensor, win_size: int, cov_norm: float, integer_levels: bool
                 ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """SSIM's ``μx², μy², μxμy, σx², σy², σxy`` from box sums in torch (transposed)."""
    area = float(win_size * win_size)
    exact32 = integer_levels and win_size * win_size * 255**2 < 2**24
    if exact32:
        refs, dist = refs.float(), dist.float()

    def window_mean(t: Tensor) -> Tensor:
        return box_sum_valid_t(t, win_size).to(torch.float64 if exact32 else t.dtype).div_(area)

    # Each product of means is formed once, and everything runs in place where a map
    # is not needed again (each is ~20 MB at 640x480).
    ux = window_mean(refs)
    uy = window_mean(dist)
    ux_sq, uy_sq, uxy = ux * ux, uy * uy, ux * uy
    del ux, uy
    vx = window_mean(refs * refs).sub_(ux_sq).mul_(cov_norm)
    vy = window_mean(dist * dist).sub_(uy_sq).mul_(cov_norm)
    vxy = window_mean(refs * dist).sub_(uxy).mul_(cov_norm)
    return ux_sq, uy_sq, uxy, vx, vy, vxy


def _average_pool2(x: Tensor) -> Tensor:
    """pytorch_msssim's 2×2 average pooling (zero padding of odd sides, counted in the mean)."""
    if x.shape[-2] % 2 or x.shape[-1] % 2:
        return F.avg_pool2d(x, 2, padding=(x.shape[-2] % 2, x.shape[-1] % 2))
    # Even sides: four strided adds, the same sums in the same order as avg_pool2d
    # (bit-identical) at half its time for float64 on CPU.
    total = (x[..., 0::2, 0::2] + x[..., 0::2, 1::2]).add_(x[..., 1::2, 0::2])
    return total.add_(x[..., 1::2, 1::2]).mul_(0.25)


def ms_ssim_levels(refs: Tensor, dist: Tensor, data_range: float = 255.0) -> Tensor:
    """pytorch_msssim's ``ms_ssim`` per reference channel: [B, S]."""
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2
    win = gaussian_1d(11, 1.5, refs)
    weights = torch.tensor(_MS_SSIM_WEIGHTS, dtype=refs.dtype, device=refs.device)
    x, y = refs, dist  # y's own moments are computed once and broadcast
    terms = []
    for level in range(len(_MS_SSIM_WEIGHTS)):
        last = level == len(_MS_SSIM_WEIGHTS) - 1
        if level:
            x, y = _average_pool2(x), _average_pool2(y)
        if native.available(x, y):  # the formula evaluated inside the filter, no maps
            cs, ssim_value = native.ssim_means(x, y, win, c1, c2, 1.0)
            terms.append(torch.relu(ssim_value if last else cs))
            continue
        mu1, mu2, sigma1_sq, sigma2_sq, sigma12 = local_moments(x, y, win)
        cs_map = sigma12.mul_(2).add_(c2).div_(sigma1_sq.add_(sigma2_sq).add_(c2))
        if not last:
            terms.append(torch.relu(cs_map.mean((-2, -1))))
        else:
            ssim_map = (2 * mu1 * mu2 + c1) / (mu1 * mu1 + mu2 * mu2 + c1) * cs_map
            terms.append(torch.relu(ssim_map.mean((-2, -1))))
    stacked = torch.stack(terms, dim=0)  # [levels, B, S]
    return torch.prod(stacked ** weights.view(-1, 1, 1), dim=0)
