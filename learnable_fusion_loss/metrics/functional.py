"""Image-fusion quality metrics, batched and vectorised in torch (CPU and GPU).

Every metric is computed the way the field's common Python evaluators compute it:
on **8-bit grey levels**, i.e. an image in ``[0, 1]`` is mapped to ``round(255 · x)``
(what those evaluators see when they read the saved ``uint8`` file), and all
arithmetic runs in float64 (their numpy arithmetic). The reference conventions are

* the evaluator released with CDDFuse (``Zhaozixiang1228/MMIF-CDDFuse``,
  ``utils/Evaluator.py``; the same file is used by DDFM and EMMA) for EN, SD, SF,
  AG, MI, SCD, VIF, Qabf, SSIM, PSNR and CC;
* the evaluator released with TDFusion (``HaowenBai/TDFusion``, ``Evaluator.py``):
  the same EN, SF, SCD and Qabf, VIF from ``sewar.full_ref.vifp`` (the same
  pixel-domain multi-scale VIF) and SSIM on ``uint8`` images;
* Nabf: B. K. Shreyamsha Kumar's modified fusion-artifact measure as in the MATLAB
  ``analysis_nabf.m`` of Tang et al.'s evaluation code and its common Python port
  (Sobel/8 with mirrored borders, ``Td = 2``, ``Lg = 1.5``);
* MS-SSIM: the ``pytorch_msssim`` convention used by the Python fusion evaluators
  (Gaussian window 11 / σ 1.5, K = (0.01, 0.03), data range 255, five scales with
  weights ``(0.0448, 0.2856, 0.3001, 0.2363, 0.1333)``, 2×2 average pooling with
  zero padding of odd sides, ReLU on every scale's term).

Two-source conventions
----------------------
Metrics that compare the fused image with each source (MI, VIF, SSIM, MS-SSIM)
are reported either as the **mean** over the two sources or as their **sum**:

* ``convention="mean"`` — TDFusion (CVPR 2025, its released ``Evaluator.py``
  averages VIF and SSIM over the two sources); here MI and MS-SSIM are averaged too.
* ``convention="sum"`` — CDDFuse (CVPR 2023), DDFM (ICCV 2023), EMMA (CVPR 2024)
  and every paper that uses the CDDFuse evaluator: MI, VIF and SSIM are
  summed (so SSIM lies in ``[-2, 2]``, e.g. "SSIM 1.03" on TNO); MS-SSIM is summed
  as well, as the Python evaluators derived from Tang et al.'s code do.

Either way CC is the mean of the two correlations and PSNR uses the mean of the
two MSEs (both evaluators do), SCD is by definition the sum of two correlations,
and Qabf/Nabf are joint measures. So ``sum`` = 2 × ``mean`` for MI, VIF, SSIM and
MS-SSIM and the two conventions agree on everything else.

Details that matter for exactness (all documented at the functions):
MI uses the 256-level joint histogram of the grey values and natural logarithms
(``sklearn.metrics.mutual_info_score``, nats); EN uses ``log2``; SD is the
population standard deviation; AG uses one-sided differences at the border
(``np.gradient``); SSIM is scikit-image's default (7×7 uniform window, sample
covariance, data range 255); PSNR (CDDFuse) takes ``max(F)`` as the peak; VIF
returns 1 where the reference has no variance anywhere (CDDFuse; sewar gives NaN).

Colour fused images are compared through their BT.601 luma ``0.299 R + 0.587 G +
0.114 B`` rounded to grey levels (the evaluators read files with OpenCV's
``COLOR_BGR2GRAY``); see :func:`to_grey_levels`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from .._checks import check_image, check_same_shape

Convention = Literal["mean", "sum"]

#: Every metric :func:`fusion_metrics` knows, in the usual reporting order.
ALL_METRICS: tuple[str, ...] = (
    "EN", "SD", "SF", "AG", "MI", "SCD", "VIF", "Qabf", "Nabf", "SSIM", "MS_SSIM", "PSNR", "CC",
)
#: Whether a larger value is better (Nabf measures artifacts: lower is better).
HIGHER_IS_BETTER: dict[str, bool] = {name: name != "Nabf" for name in ALL_METRICS}
#: Metrics that depend on the two-source convention (mean vs sum over the sources).
PER_SOURCE_METRICS: tuple[str, ...] = ("MI", "VIF", "SSIM", "MS_SSIM")

_LUMA = (0.299, 0.587, 0.114)
_MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


# ----------------------------------------------------------------------------- inputs
def to_grey_levels(x: Tensor, name: str = "image", quantize: bool = True,
                   dtype: torch.dtype = torch.float64) -> Tensor:
    """Map an image in ``[0, 1]`` to float grey levels in ``[0, 255]`` (``[B, 1, H, W]``).

    Args:
        x: ``[B, 1, H, W]`` grey or ``[B, 3, H, W]`` RGB, floating, values in ``[0, 1]``.
            RGB is reduced to BT.601 luma ``0.299 R + 0.587 G + 0.114 B`` (OpenCV's
            ``COLOR_BGR2GRAY``) computed on the 8-bit channels.
        name: argument name for error messages.
        quantize: round to integer levels, as the evaluators see a saved ``uint8``
            file. ``False`` keeps ``255 · x`` continuous (EN and MI still bin on rounded
            levels because they are histogram measures).
        dtype: computation dtype; float64 reproduces the numpy evaluators.

    Raises:
        ValueError: wrong shape, NaN/Inf, or values outside ``[0, 1]`` (e.g. an image
            already scaled to ``[0, 255]``).
    """
    check_image(name, x, channels=None)
    if x.shape[1] not in (1, 3):
        raise ValueError(f"{name} must have 1 (grey) or 3 (RGB) channels, got {x.shape[1]}")
    low, high = float(x.min()), float(x.max())
    if low < -1e-6 or high > 1.0 + 1e-6:
        raise ValueError(
            f"{name} must hold values in [0, 1], got range [{low:.4g}, {high:.4g}] "
            "(pass x / 255 for images in [0, 255])"
        )
    levels = x.detach().to(dtype).clamp(0.0, 1.0) * 255.0
    if levels.shape[1] == 3:
        if quantize:  # the evaluators read 8-bit channels, then convert
            levels = torch.round(levels)
        r, g, b = levels.unbind(1)
        levels = (_LUMA[0] * r + _LUMA[1] * g + _LUMA[2] * b).unsqueeze(1)
    return torch.round(levels) if quantize else levels


def _levels_of(x: Tensor, name: str, quantize: bool) -> Tensor:
    return to_grey_levels(x, name=name, quantize=quantize)


def _check_min_size(name: str, x: Tensor, minimum: int, metric: str) -> None:
    if min(x.shape[-2:]) < minimum:
        raise ValueError(
            f"{metric} needs images of at least {minimum}x{minimum} pixels, "
            f"{name} is {x.shape[-1]}x{x.shape[-2]} (W x H)"
        )


# ----------------------------------------------------------------------------- filters
def _gaussian_1d(size: int, sigma: float, like: Tensor) -> Tensor:
    # Normalised 1-D Gaussian; its outer product is the normalised 2-D window
    # (MATLAB fspecial('gaussian')). The evaluators also zero 2-D taps below
    # eps·max, which never triggers for the sizes used here (smallest ratio ~e^-6),
    # so the separable form is the same window.
    coords = torch.arange(size, dtype=like.dtype, device=like.device) - (size - 1) / 2.0
    g = torch.exp(-(coords * coords) / (2.0 * sigma * sigma))
    return g / g.sum()


_BLOCK = 32  # output samples per banded-matrix block (measured: 16-64 are all close)


def _band_matrix(kernel_1d: Tensor, block: int) -> Tensor:
    size = kernel_1d.numel()
    rows = torch.arange(block + size - 1, device=kernel_1d.device).unsqueeze(1)
    offset = rows - torch.arange(block, device=kernel_1d.device).unsqueeze(0)  # [block+K-1, block]
    inside = (offset >= 0) & (offset < size)
    return torch.where(inside, kernel_1d[offset.clamp(0, size - 1)], 0.0)


def _correlate_valid_along(x: Tensor, kernel_1d: Tensor, dim: int) -> Tensor:
    """'valid' 1-D correlation of ``x`` along ``dim`` (-1 or -2) as a blocked banded GEMM."""
    # float64 conv2d on CPU takes torch's slow reference path (no oneDNN for
    # double); cutting the signal into blocks and multiplying by a small banded
    # matrix runs on BLAS instead: ~5x faster here, same sums up to rounding.
    size = kernel_1d.numel()
    length = x.shape[dim]
    out_len = length - size + 1
    blocks = -(-out_len // _BLOCK)
    extra = blocks * _BLOCK + size - 1 - length
    band = _band_matrix(kernel_1d, _BLOCK)
    win = _BLOCK + size - 1
    if dim == -1:
        windows = F.pad(x, (0, extra)).unfold(-1, win, _BLOCK)  # [..., H, n, win]
        # One 2-D GEMM over every window (a batched matmul of the strided view
        # would copy each small batch separately).
        out = torch.mm(windows.reshape(-1, win), band).view(*windows.shape[:-1], _BLOCK)
        return out.flatten(-2)[..., :out_len]
    windows = F.pad(x, (0, 0, 0, extra)).unfold(-2, win, _BLOCK)  # [..., n, W, win]
    out = torch.mm(windows.reshape(-1, win), band).view(*windows.shape[:-1], _BLOCK)
    return out.transpose(-1, -2).flatten(-3, -2)[..., :out_len, :]  # [..., n*block, W]


def _filter_valid(x: Tensor, kernel_1d: Tensor) -> Tensor:
    """Separable 'valid' correlation of ``[..., H, W]`` with a symmetric 1-D kernel."""
    # Two 1-D passes (2k taps instead of the evaluators' k² in convolve2d).
    return _correlate_valid_along(_correlate_valid_along(x, kernel_1d, -2), kernel_1d, -1)


def _box_valid(x: Tensor, size: int) -> Tensor:
    """Mean over every ``size × size`` window lying inside the image (integral image)."""
    # Exact for integer grey levels in float64 (all partial sums < 2^53), so it
    # only differs from skimage's uniform_filter by that filter's own rounding.
    c = F.pad(x, (1, 0, 1, 0)).cumsum(-2).cumsum(-1)
    window = c[..., size:, size:] - c[..., :-size, size:] - c[..., size:, :-size] + c[..., :-size, :-size]
    return window / (size * size)


def _sobel(x: Tensor, padding: str) -> tuple[Tensor, Tensor]:
    """Un-normalised Sobel responses of ``[..., H, W]`` with 'same' output size.

    Returns ``(dx, dy)``: cross-correlations with ``[[1, 0, -1], [2, 0, -2], [1, 0, -1]]``
    (left minus right) and ``[[1, 2, 1], [0, 0, 0], [-1, -2, -1]]`` (top minus bottom);
    ``padding`` is ``"zeros"`` or ``"reflect"`` (mirror without repeating the edge).
    """
    # Separable shifted sums instead of a float64 3x3 conv2d (torch's slow path):
    # on integer levels every partial sum is an exact integer, so the result is
    # bit-identical to scipy's convolve2d.
    shape = x.shape
    flat = x.reshape(-1, 1, shape[-2], shape[-1])
    mode = {"zeros": "constant", "reflect": "reflect"}[padding]
    p = F.pad(flat, (1, 1, 1, 1), mode=mode)[:, 0]
    rows = p[:, :-2, :] + 2 * p[:, 1:-1, :] + p[:, 2:, :]  # vertical [1, 2, 1]
    cols = p[:, :, :-2] + 2 * p[:, :, 1:-1] + p[:, :, 2:]  # horizontal [1, 2, 1]
    dx = rows[:, :, :-2] - rows[:, :, 2:]
    dy = cols[:, :-2, :] - cols[:, 2:, :]
    return dx.reshape(shape), dy.reshape(shape)


def _per_image(x: Tensor) -> Tensor:
    return x.flatten(start_dim=-2)  # [..., H*W]


def _pearson(x: Tensor, y: Tensor) -> Tensor:
    """Pearson correlation over the pixels of each image (``corr2`` in MATLAB)."""
    xc = _per_image(x) - _per_image(x).mean(-1, keepdim=True)
    yc = _per_image(y) - _per_image(y).mean(-1, keepdim=True)
    return (xc * yc).sum(-1) / torch.sqrt((xc * xc).sum(-1) * (yc * yc).sum(-1))


# ----------------------------------------------------------------------------- cores (grey levels)
def _entropy_levels(levels: Tensor) -> Tensor:
    codes = torch.round(levels).long().flatten(1)  # [B, N]
    batch, count = codes.shape
    offsets = torch.arange(batch, device=codes.device).unsqueeze(1) * 256
    hist = torch.bincount((codes + offsets).flatten(), minlength=batch * 256).view(batch, 256)
    p = hist.to(levels.dtype) / count
    return -torch.where(p > 0, p * torch.log2(torch.where(p > 0, p, 1.0)), 0.0).sum(-1)


def _sd_levels(levels: Tensor) -> Tensor:
    return _per_image(levels).flatten(1).std(dim=-1, correction=0)


def _sf_levels(levels: Tensor) -> Tensor:
    row = (levels[..., :, 1:] - levels[..., :, :-1]).pow(2).flatten(1).mean(-1)
    col = (levels[..., 1:, :] - levels[..., :-1, :]).pow(2).flatten(1).mean(-1)
    return torch.sqrt(row + col)


def _ag_levels(levels: Tensor) -> Tensor:
    # np.gradient: central differences inside, one-sided at the border.
    gx = torch.cat([
        levels[..., :, 1:2] - levels[..., :, 0:1],
        (levels[..., :, 2:] - levels[..., :, :-2]) / 2,
        levels[..., :, -1:] - levels[..., :, -2:-1],
    ], dim=-1)
    gy = torch.cat([
        levels[..., 1:2, :] - levels[..., 0:1, :],
        (levels[..., 2:, :] - levels[..., :-2, :]) / 2,
        levels[..., -1:, :] - levels[..., -2:-1, :],
    ], dim=-2)
    return torch.sqrt((gx * gx + gy * gy) / 2).flatten(1).mean(-1)


def _mi_levels(x: Tensor, y: Tensor) -> Tensor:
    """Mutual information (nats) of the 256-level joint histogram of each image pair."""
    # A joint histogram by one bincount over (batch, x, y) codes: the same numbers
    # as sklearn's contingency matrix, without its sparse-matrix round trip.
    cx = torch.round(x).long().flatten(1)
    cy = torch.round(y).long().flatten(1)
    batch, count = cx.shape
    offsets = torch.arange(batch, device=cx.device).unsqueeze(1) * 65536
    joint = torch.bincount((offsets + cx * 256 + cy).flatten(), minlength=batch * 65536)
    p = joint.view(batch, 256, 256).to(x.dtype) / count
    px = p.sum(2, keepdim=True)
    py = p.sum(1, keepdim=True)
    nz = p > 0
    safe = lambda t: torch.where(nz, t, 1.0)  # noqa: E731 - log only where p > 0
    terms = p * (torch.log(safe(p)) - torch.log(safe(px.expand_as(p))) - torch.log(safe(py.expand_as(p))))
    return torch.where(nz, terms, 0.0).flatten(1).sum(-1).clamp_min(0.0)


def _vif_levels(refs: Tensor, dist: Tensor, sigma_nsq: float = 2.0, eps: float = 1e-10) -> Tensor:
    """Pixel-domain VIF of each reference channel of ``refs`` [B, S, H, W] against ``dist`` [B, 1, H, W].

    Four scales, Gaussian windows N = 17, 9, 5, 3 with σ = N / 5, 'valid' filtering,
    downsampling by 2 after smoothing with the current window; σ²_n = 2 (``vifp``).
    """
    num = refs.new_zeros(refs.shape[:2])
    den = refs.new_zeros(refs.shape[:2])
    ref, dst = refs, dist
    for scale in range(1, 5):
        n = 2 ** (4 - scale + 1) + 1
        win = _gaussian_1d(n, n / 5.0, refs)
        if scale > 1:
            ref = _filter_valid(ref, win)[..., ::2, ::2]
            dst = _filter_valid(dst, win)[..., ::2, ::2]
        mu1 = _filter_valid(ref, win)
        mu2 = _filter_valid(dst, win)
        sigma1_sq = _filter_valid(ref * ref, win) - mu1 * mu1
        sigma2_sq = _filter_valid(dst * dst, win) - mu2 * mu2
        sigma12 = _filter_valid(ref * dst, win) - mu1 * mu2
        sigma1_sq = sigma1_sq.clamp_min(0.0)
        sigma2_sq = sigma2_sq.clamp_min(0.0).expand_as(sigma1_sq)
        # The evaluators' sequence of masked assignments, in the same order.
        g = sigma12 / (sigma1_sq + eps)
        sv_sq = sigma2_sq - g * sigma12
        flat_ref = sigma1_sq < eps
        g = torch.where(flat_ref, 0.0, g)
        sv_sq = torch.where(flat_ref, sigma2_sq, sv_sq)
        sigma1_sq = torch.where(flat_ref, 0.0, sigma1_sq)
        flat_dist = sigma2_sq < eps
        g = torch.where(flat_dist, 0.0, g)
        sv_sq = torch.where(flat_dist, 0.0, sv_sq)
        negative = g < 0
        sv_sq = torch.where(negative, sigma2_sq, sv_sq)
        g = torch.where(negative, 0.0, g)
        sv_sq = torch.where(sv_sq <= eps, eps, sv_sq)
        num = num + torch.log10(1.0 + g * g * sigma1_sq / (sv_sq + sigma_nsq)).flatten(2).sum(-1)
        den = den + torch.log10(1.0 + sigma1_sq / sigma_nsq).flatten(2).sum(-1)
    vif = num / den
    return torch.where(torch.isnan(vif), 1.0, vif)  # flat reference: CDDFuse returns 1


def _ssim_levels(refs: Tensor, dist: Tensor, data_range: float = 255.0, win_size: int = 7) -> Tensor:
    """scikit-image ``structural_similarity`` defaults, per reference channel: [B, S]."""
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2
    cov_norm = win_size * win_size / (win_size * win_size - 1.0)  # sample covariance
    ux = _box_valid(refs, win_size)
    uy = _box_valid(dist, win_size)
    uxx = _box_valid(refs * refs, win_size)
    uyy = _box_valid(dist * dist, win_size)
    uxy = _box_valid(refs * dist, win_size)
    vx = cov_norm * (uxx - ux * ux)
    vy = cov_norm * (uyy - uy * uy)
    vxy = cov_norm * (uxy - ux * uy)
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    # skimage crops (win-1)/2 border pixels of its reflect-padded map: that is the valid map.
    return s.flatten(2).mean(-1)


def _ms_ssim_levels(refs: Tensor, dist: Tensor, data_range: float = 255.0) -> Tensor:
    """pytorch_msssim's ``ms_ssim`` per reference channel: [B, S]."""
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2
    win = _gaussian_1d(11, 1.5, refs)
    weights = torch.tensor(_MS_SSIM_WEIGHTS, dtype=refs.dtype, device=refs.device)
    x, y = refs, dist  # y's own moments are computed once and broadcast
    terms = []
    for level in range(len(_MS_SSIM_WEIGHTS)):
        mu1 = _filter_valid(x, win)
        mu2 = _filter_valid(y, win)
        sigma1_sq = _filter_valid(x * x, win) - mu1 * mu1
        sigma2_sq = _filter_valid(y * y, win) - mu2 * mu2
        sigma12 = _filter_valid(x * y, win) - mu1 * mu2
        cs_map = (2 * sigma12 + c2) / (sigma1_sq + sigma2_sq + c2)
        if level < len(_MS_SSIM_WEIGHTS) - 1:
            terms.append(torch.relu(cs_map.flatten(2).mean(-1)))
            padding = (x.shape[-2] % 2, x.shape[-1] % 2)
            x = F.avg_pool2d(x, 2, padding=padding)
            y = F.avg_pool2d(y, 2, padding=padding)
        else:
            ssim_map = (2 * mu1 * mu2 + c1) / (mu1 * mu1 + mu2 * mu2 + c1) * cs_map
            terms.append(torch.relu(ssim_map.flatten(2).mean(-1)))
    stacked = torch.stack(terms, dim=0)  # [levels, B, S]
    return torch.prod(stacked ** weights.view(-1, 1, 1), dim=0)


def _sobel_strength_angle_qabf(levels: Tensor) -> tuple[Tensor, Tensor]:
    # convolve2d(img, h3 / h1, 'same') with zero fill == correlation with the flipped
    # kernels: sx with [[1,0,-1],[2,0,-2],[1,0,-1]], sy with [[-1,-2,-1],[0,0,0],[1,2,1]].
    sx, dy = _sobel(levels, "zeros")
    sy = -dy
    strength = torch.sqrt(sx * sx + sy * sy)
    angle = torch.where(sx == 0, math.pi / 2, torch.atan(sy / torch.where(sx == 0, 1.0, sx)))
    return strength, angle


def _qabf_levels(fused: Tensor, a: Tensor, b: Tensor) -> Tensor:
    tg, kg, dg = 0.9994, -15.0, 0.5
    ta, ka, da = 0.9879, -22.0, 0.8
    g, alpha = _sobel_strength_angle_qabf(torch.cat([a, b, fused], dim=1))  # [B, 3, H, W]
    g_src, g_f = g[:, :2], g[:, 2:]
    a_src, a_f = alpha[:, :2], alpha[:, 2:]
    # Relative strength: min/max, except where equal the evaluators take gF itself.
    ratio = torch.where(
        g_src > g_f, g_f / torch.where(g_src > g_f, g_src, 1.0),
        torch.where(g_src == g_f, g_f, g_src / torch.where(g_src < g_f, g_f, 1.0)),
    )
    orientation = 1 - torch.abs(a_src - a_f) / (math.pi / 2)
    q = tg / (1 + torch.exp(kg * (ratio - dg))) * (ta / (1 + torch.exp(ka * (orientation - da))))
    return (q * g_src).flatten(1).sum(-1) / g_src.flatten(1).sum(-1)


def _nabf_levels(fused: Tensor, a: Tensor, b: Tensor) -> Tensor:
    td, lg = 2.0, 1.5
    nrg, kg, sg = 0.9999, 19.0, 0.5
    nra, ka, sa = 0.9995, 22.0, 0.5
    # The port's sobel_fn: mirrored border, convolve2d with the Sobel kernels / 8, i.e.
    # gv = dx / 8 and gh = dy / 8 (scaling by 1/8 is exact in binary floating point).
    dx, dy = _sobel(torch.cat([a, b, fused], dim=1), "reflect")  # [B, 3, H, W]
    gv, gh = dx * 0.125, dy * 0.125
    g = torch.sqrt(gh * gh + gv * gv)
    both_zero = (gv == 0) & (gh == 0)
    angle = torch.where(both_zero, 0.0, torch.atan(gv / torch.where(both_zero, 1.0, gh)))
    g_src, g_f = g[:, :2], g[:, 2:]
    a_src, a_f = angle[:, :2], angle[:, 2:]
    undefined = (g_src == 0) | (g_f == 0)
    safe_src = torch.where(undefined, 1.0, g_src)
    safe_f = torch.where(undefined, 1.0, g_f)
    ratio = torch.where(undefined, 0.0, torch.where(g_src > g_f, safe_f / safe_src, safe_src / safe_f))
    orientation = torch.abs(torch.abs(a_src - a_f) - math.pi / 2) * 2 / math.pi
    qg = nrg / (1 + torch.exp(-kg * (ratio - sg)))
    qa = nra / (1 + torch.exp(-ka * (orientation - sa)))
    q = torch.sqrt(qg * qa)
    weight = torch.where(g_src >= td, g_src ** lg, 0.0)
    artifact = (g_f > g_src[:, :1]) & (g_f > g_src[:, 1:2])
    numerator = torch.where(artifact, (1 - q) * weight, 0.0).flatten(1).sum(-1)
    return numerator / weight.flatten(1).sum(-1)


def _psnr_levels(fused: Tensor, a: Tensor, b: Tensor) -> Tensor:
    mse = ((a - fused).pow(2).flatten(1).mean(-1) + (b - fused).pow(2).flatten(1).mean(-1)) / 2
    peak = fused.flatten(1).amax(-1)
    return 10 * torch.log10(peak * peak / mse)


def _scd_levels(fused: Tensor, a: Tensor, b: Tensor) -> Tensor:
    return _pearson(a, fused - b).flatten(1).sum(-1) + _pearson(b, fused - a).flatten(1).sum(-1)


# ----------------------------------------------------------------------------- public, one image
def entropy(x: Tensor, quantize: bool = True) -> Tensor:
    """EN: Shannon entropy (bits) of the 256-bin grey-level histogram. ``[B, 1|3, H, W] -> [B]``."""
    return _entropy_levels(_levels_of(x, "x", quantize))


def standard_deviation(x: Tensor, quantize: bool = True) -> Tensor:
    """SD: population standard deviation of the grey levels (``np.std``). ``-> [B]``."""
    return _sd_levels(_levels_of(x, "x", quantize))


def spatial_frequency(x: Tensor, quantize: bool = True) -> Tensor:
    """SF: ``sqrt(mean(Δ_row²) + mean(Δ_col²))`` of horizontal/vertical neighbour differences."""
    return _sf_levels(_levels_of(x, "x", quantize))


def average_gradient(x: Tensor, quantize: bool = True) -> Tensor:
    """AG: mean of ``sqrt((G_x² + G_y²) / 2)`` with ``np.gradient`` differences (CDDFuse)."""
    levels = _levels_of(x, "x", quantize)
    _check_min_size("x", levels, 2, "AG")
    return _ag_levels(levels)


# ----------------------------------------------------------------------------- public, image pairs
def _pair(x: Tensor, y: Tensor, quantize: bool) -> tuple[Tensor, Tensor]:
    lx, ly = _levels_of(x, "x", quantize), _levels_of(y, "y", quantize)
    check_same_shape(x=lx, y=ly)
    return lx, ly


def mutual_information(x: Tensor, y: Tensor, quantize: bool = True) -> Tensor:
    """MI (nats) of the 256×256 joint grey-level histogram (``sklearn`` ``mutual_info_score``)."""
    lx, ly = _pair(x, y, quantize)
    return _mi_levels(lx, ly)


def correlation_coefficient(x: Tensor, y: Tensor, quantize: bool = True) -> Tensor:
    """Pearson correlation of the pixels of each pair (MATLAB ``corr2``). ``-> [B]``."""
    lx, ly = _pair(x, y, quantize)
    return _pearson(lx, ly).flatten(1).sum(-1)


def vif(reference: Tensor, distorted: Tensor, quantize: bool = True) -> Tensor:
    """VIF: pixel-domain multi-scale VIF (``sewar.full_ref.vifp``, σ²_n = 2). ``-> [B]``.

    Not symmetric: the fusion VIF uses each source as ``reference`` and the fused image
    as ``distorted``. Returns 1 where the reference is flat everywhere (CDDFuse's rule).
    """
    lr, ld = _pair(reference, distorted, quantize)
    _check_min_size("reference", lr, 41, "VIF")
    return _vif_levels(lr, ld)[:, 0]


def ssim(x: Tensor, y: Tensor, quantize: bool = True, data_range: float = 255.0) -> Tensor:
    """SSIM as scikit-image's ``structural_similarity`` defaults (7×7 uniform window,
    sample covariance, K = (0.01, 0.03)) on grey levels with ``data_range`` 255. ``-> [B]``."""
    lx, ly = _pair(x, y, quantize)
    _check_min_size("x", lx, 7, "SSIM")
    return _ssim_levels(lx, ly, data_range)[:, 0]


def ms_ssim(x: Tensor, y: Tensor, quantize: bool = True, data_range: float = 255.0) -> Tensor:
    """MS-SSIM with ``pytorch_msssim``'s conventions (see the module docstring). ``-> [B]``.

    Needs the shorter side to exceed 160 pixels (four 2× reductions of an 11-tap window).
    """
    lx, ly = _pair(x, y, quantize)
    _check_min_size("x", lx, 161, "MS-SSIM")
    return _ms_ssim_levels(lx, ly, data_range)[:, 0]


# ----------------------------------------------------------------------------- public, fusion triplets
def _triplet(fused: Tensor, a: Tensor, b: Tensor, quantize: bool) -> tuple[Tensor, Tensor, Tensor]:
    lf = _levels_of(fused, "fused", quantize)
    la = _levels_of(a, "a", quantize)
    lb = _levels_of(b, "b", quantize)
    check_same_shape(fused=lf, a=la, b=lb)
    return lf, la, lb


def scd(fused: Tensor, a: Tensor, b: Tensor, quantize: bool = True) -> Tensor:
    """SCD: ``corr(F − B, A) + corr(F − A, B)``. NaN where a difference image is constant
    (e.g. ``F == A``), as in the evaluators. ``-> [B]``."""
    return _scd_levels(*_triplet(fused, a, b, quantize))


def qabf(fused: Tensor, a: Tensor, b: Tensor, quantize: bool = True) -> Tensor:
    """Qabf (Xydeas–Petrović edge preservation), the evaluators' constants
    (Tg 0.9994, kg −15, Dg 0.5, Ta 0.9879, ka −22, Da 0.8; zero-padded Sobel). ``-> [B]``."""
    return _qabf_levels(*_triplet(fused, a, b, quantize))


def nabf(fused: Tensor, a: Tensor, b: Tensor, quantize: bool = True) -> Tensor:
    """Nabf: Kumar's modified fusion-artifact measure (lower is better). ``-> [B]``."""
    lf, la, lb = _triplet(fused, a, b, quantize)
    _check_min_size("fused", lf, 2, "Nabf")
    return _nabf_levels(lf, la, lb)


def fusion_psnr(fused: Tensor, a: Tensor, b: Tensor, quantize: bool = True) -> Tensor:
    """PSNR (CDDFuse): ``10 log10(max(F)² / ((MSE(A,F) + MSE(B,F)) / 2))`` in dB. ``-> [B]``."""
    return _psnr_levels(*_triplet(fused, a, b, quantize))


def _reduce(per_source: Tensor, convention: Convention) -> Tensor:
    return per_source.sum(-1) if convention == "sum" else per_source.mean(-1)


def fusion_metrics(
    fused: Tensor,
    a: Tensor,
    b: Tensor,
    metrics: Iterable[str] = ALL_METRICS,
    convention: Convention = "mean",
    quantize: bool = True,
) -> dict[str, Tensor]:
    """Compute fusion metrics for a batch of triplets.

    Args:
        fused: fused images ``[B, 1|3, H, W]`` in ``[0, 1]`` (RGB is reduced to luma).
        a, b: the two sources (e.g. IR and VIS), same size.
        metrics: names from :data:`ALL_METRICS` (case-insensitive; ``"MS-SSIM"`` accepted).
        convention: ``"mean"`` (TDFusion) or ``"sum"`` (CDDFuse) over the two sources for
            MI, VIF, SSIM and MS-SSIM; see the module docstring.
        quantize: evaluate on rounded 8-bit grey levels (what a saved file holds).

    Returns:
        ``{name: Tensor[B]}`` in float64 on the input's device, in the order asked.
    """
    if convention not in ("mean", "sum"):
        raise ValueError(f"convention must be 'mean' or 'sum', got {convention!r}")
    lookup = {name.upper().replace("-", "_"): name for name in ALL_METRICS}
    names = []
    for name in metrics:
        key = str(name).upper().replace("-", "_")
        if key not in lookup:
            raise ValueError(f"unknown metric {name!r}; choose from {list(ALL_METRICS)}")
        names.append(lookup[key])
    lf, la, lb = _triplet(fused, a, b, quantize)
    if "VIF" in names:
        _check_min_size("fused", lf, 41, "VIF")
    if "MS_SSIM" in names:
        _check_min_size("fused", lf, 161, "MS-SSIM")
    if "SSIM" in names:
        _check_min_size("fused", lf, 7, "SSIM")
    if "AG" in names or "Nabf" in names:
        _check_min_size("fused", lf, 2, "AG/Nabf")
    sources = torch.cat([la, lb], dim=1)  # [B, 2, H, W]
    compute = {
        "EN": lambda: _entropy_levels(lf),
        "SD": lambda: _sd_levels(lf),
        "SF": lambda: _sf_levels(lf),
        "AG": lambda: _ag_levels(lf),
        "MI": lambda: _reduce(torch.stack([_mi_levels(la, lf), _mi_levels(lb, lf)], -1), convention),
        "SCD": lambda: _scd_levels(lf, la, lb),
        "VIF": lambda: _reduce(_vif_levels(sources, lf), convention),
        "Qabf": lambda: _qabf_levels(lf, la, lb),
        "Nabf": lambda: _nabf_levels(lf, la, lb),
        "SSIM": lambda: _reduce(_ssim_levels(sources, lf), convention),
        "MS_SSIM": lambda: _reduce(_ms_ssim_levels(sources, lf), convention),
        "PSNR": lambda: _psnr_levels(lf, la, lb),
        "CC": lambda: _pearson(sources, lf).mean(-1),
    }
    return {name: compute[name]() for name in names}


__all__ = [
    "ALL_METRICS",
    "HIGHER_IS_BETTER",
    "PER_SOURCE_METRICS",
    "Convention",
    "to_grey_levels",
    "entropy",
    "standard_deviation",
    "spatial_frequency",
    "average_gradient",
    "mutual_information",
    "correlation_coefficient",
    "vif",
    "ssim",
    "ms_ssim",
    "scd",
    "qabf",
    "nabf",
    "fusion_psnr",
    "fusion_metrics",
]
