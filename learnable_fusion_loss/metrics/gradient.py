"""Gradient measures on grey levels: SF, AG and the Sobel-based Qabf and Nabf."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .filters import sobel


def sf_levels(levels: Tensor) -> Tensor:
    row = (levels[..., :, 1:] - levels[..., :, :-1]).pow(2).flatten(1).mean(-1)
    col = (levels[..., 1:, :] - levels[..., :-1, :]).pow(2).flatten(1).mean(-1)
    return torch.sqrt(row + col)


def ag_levels(levels: Tensor) -> Tensor:
    # np.gradient: central differences inside, one-sided at the border, written
    # straight into one map per direction.
    gx, gy = torch.empty_like(levels), torch.empty_like(levels)
    torch.sub(levels[..., :, 2:], levels[..., :, :-2], out=gx[..., :, 1:-1]).div_(2)
    torch.sub(levels[..., :, 1:2], levels[..., :, 0:1], out=gx[..., :, 0:1])
    torch.sub(levels[..., :, -1:], levels[..., :, -2:-1], out=gx[..., :, -1:])
    torch.sub(levels[..., 2:, :], levels[..., :-2, :], out=gy[..., 1:-1, :]).div_(2)
    torch.sub(levels[..., 1:2, :], levels[..., 0:1, :], out=gy[..., 0:1, :])
    torch.sub(levels[..., -1:, :], levels[..., -2:-1, :], out=gy[..., -1:, :])
    return gx.square_().add_(gy.square_()).div_(2).sqrt_().flatten(1).mean(-1)


# Qabf and Nabf are chains of ~25 elementwise operations on three full-size
# gradient maps, so memory traffic decides their speed. Their inputs are exact in
# float32: Sobel responses of 8-bit levels are integers with |d| <= 1020, and
# squared strengths dx² + dy² <= 2.1e6 < 2^24. So every comparison the evaluators
# make (equal or larger strength, zero gradient, the Nabf threshold Td) is made
# exactly on those squared integers, and only smooth functions (sqrt, atan, the
# sigmoids) run in float32, with float64 sums: relative error ~1e-8 of the result,
# at half the memory traffic and twice the SIMD width of float64. (With
# quantize=False the levels are not integers and the comparisons are float32 ones.)
_EDGE_DTYPE = torch.float32


def _edge_maps(fused: Tensor, a: Tensor, b: Tensor, padding: str) -> tuple[Tensor, Tensor]:
    stacked = torch.cat([a, b, fused], dim=1).to(_EDGE_DTYPE)  # [B, 3, H, W]
    return sobel(stacked, padding)


def _weighted_mean(values: Tensor, weights: Tensor) -> Tensor:
    """``Σ values·weights / Σ weights`` over everything but the batch axis, summed in float64."""
    num = (values * weights).flatten(1).sum(-1, dtype=torch.float64)
    return num / weights.flatten(1).sum(-1, dtype=torch.float64)


def qabf_levels(fused: Tensor, a: Tensor, b: Tensor) -> Tensor:
    tg, kg, dg = 0.9994, -15.0, 0.5
    ta, ka, da = 0.9879, -22.0, 0.8
    # convolve2d(img, h3 / h1, 'same') with zero fill == correlation with the flipped
    # kernels: sx with [[1,0,-1],[2,0,-2],[1,0,-1]] = −dx, sy with [[-1,-2,-1],[0,0,0],
    # [1,2,1]] = dy. The sign of sx matters: atan(sy / sx) is set to +π/2 where sx = 0,
    # so with dx's sign every other angle would flip against it.
    dx, sy = _edge_maps(fused, a, b, "zeros")
    sx = dx.neg_()
    g2 = sx * sx + sy * sy  # exact integers
    vertical = sx == 0
    alpha = torch.atan(sy.div_(sx.masked_fill(vertical, 1.0))).masked_fill_(vertical, math.pi / 2)
    g2_src, g2_f = g2[:, :2], g2[:, 2:]
    g_src = g2_src.sqrt()
    # Relative strength min(g)/max(g) as sqrt(min(g²)/max(g²)) (one root, no second
    # quotient), except where equal the evaluators take gF itself.
    ratio = torch.minimum(g2_src, g2_f).div_(torch.maximum(g2_src, g2_f).clamp_min_(1e-30)).sqrt_()
    ratio = torch.where(g2_src == g2_f, g2_f.sqrt(), ratio)
    orientation = (alpha[:, :2] - alpha[:, 2:]).abs_().mul_(-2 / math.pi).add_(1.0)
    q_g = ratio.sub_(dg).mul_(kg).exp_().add_(1.0).reciprocal_().mul_(tg)
    q_a = orientation.sub_(da).mul_(ka).exp_().add_(1.0).reciprocal_().mul_(ta)
    return _weighted_mean(q_g.mul_(q_a), g_src)


def nabf_levels(fused: Tensor, a: Tensor, b: Tensor) -> Tensor:
    td, lg = 2.0, 1.5
    nrg, kg, sg = 0.9999, 19.0, 0.5
    nra, ka, sa = 0.9995, 22.0, 0.5
    # The port's sobel_fn: mirrored border, convolve2d with the Sobel kernels / 8, i.e.
    # gv = −dx / 8 and gh = −dy / 8 (convolution flips the kernels; exact scalings).
    dx, dy = _edge_maps(fused, a, b, "reflect")  # [B, 3, H, W], float32 integers
    g2 = dx * dx + dy * dy  # exact integers, = 64 · g²
    g2_src, g2_f = g2[:, :2], g2[:, 2:]
    # Denominator over all pixels: w = g^Lg where g >= Td, i.e. where 64 g² >= 64 Td².
    g_map = g2_src.sqrt().mul_(0.125)
    weight = g_map.sqrt().mul_(g_map).masked_fill_(g2_src < 64 * td * td, 0.0)  # g^Lg = g·√g
    denominator = weight.flatten(1).sum(-1, dtype=torch.float64)
    # Numerator: only artifact pixels (fused edge stronger than both sources) count,
    # usually a small share. The evaluators' chain (angles, strength ratio, two
    # sigmoids, 1 − sqrt(q_g q_a)) runs on just those pixels, in float64: 1 − q is
    # ~3e-4 at best, so float32 would lose three digits to cancellation.
    artifact = (g2_f > g2_src[:, :1]) & (g2_f > g2_src[:, 1:2])  # [B, 1, H, W]
    image, pixel = artifact.flatten(1).nonzero(as_tuple=True)
    # The port's signs: the angle atan(gv / gh) = atan(gx / gy) does not see a common
    # sign except where gh = 0 < |gv|, where the port's +0 (equal neighbours) gives
    # atan(±inf) with gv's sign. So gx, gy = 0 − dx, 0 − dy: exact negations that keep
    # that +0 (−dy would make it −0 and flip ±π/2).
    gx = 0.0 - dx.flatten(2)[image, :, pixel].double()  # [n, 3]: gathered, never stacked whole
    gy = 0.0 - dy.flatten(2)[image, :, pixel].double()
    strength = torch.sqrt((gx * 0.125) ** 2 + (gy * 0.125) ** 2)
    flat = (gx == 0) & (gy == 0)
    # gh = 0 < |gv| gives atan(±inf) = ±π/2, as numpy does.
    angle = torch.where(flat, 0.0, torch.atan(gx / torch.where(flat, 1.0, gy)))
    g_src, g_f = strength[:, :2], strength[:, 2:]  # g_f > g_src >= 0 on artifact pixels
    ratio = torch.where(g_src == 0, 0.0, g_src / g_f)
    orientation = torch.abs(torch.abs(angle[:, :2] - angle[:, 2:]) - math.pi / 2) * 2 / math.pi
    q_g = nrg / (1 + torch.exp(-kg * (ratio - sg)))
    q_a = nra / (1 + torch.exp(-ka * (orientation - sa)))
    w = torch.where(g_src >= td, g_src**lg, 0.0)
    contributions = ((1 - torch.sqrt(q_g * q_a)) * w).sum(-1)
    numerator = denominator.new_zeros(denominator.shape).index_add_(0, image, contributions)
    return numerator / denominator
