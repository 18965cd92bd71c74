"""Image-fusion quality metrics, batched and vectorised in torch (CPU and GPU).

Every metric is computed the way the field's common Python evaluators compute it:
on **8-bit grey levels**, i.e. an image in ``[0, 1]`` is mapped to ``round(255 · x)``
(what those evaluators see when they read the saved ``uint8`` file), and the
arithmetic runs in float64 (their numpy arithmetic). One exception, for speed:
Qabf and Nabf make every comparison exactly, on integer squared Sobel strengths,
but evaluate Qabf's smooth parts (sqrt, atan, sigmoids) and Nabf's edge weights in
float32 with float64 sums, which moves them by ~1e-8 relative (see ``_edge_maps``).
The reference conventions are

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
On 8-bit levels :func:`fusion_metrics` takes CC, SCD, SD and PSNR from exact integer
pixel moments, shared by the four (see ``_IntegerMoments``). On CPU, VIF, SSIM and
MS-SSIM filter with the compiled kernels of :mod:`.native` when a C compiler is
there (the same sums in another order), else with banded GEMMs in torch.

Why not torchmetrics or kornia (measured by ``benchmarks/metric_libraries.py``):
torchmetrics' VIF is the same vifp but ~70× slower on CPU; its SSIM and MS-SSIM,
and kornia's SSIM, follow other window and border conventions (0.4–5 % from the
evaluators); its MI is sklearn's in float32 and slower; ``pearson_corrcoef`` gives the
same CC (and SCD), which here come from the integer moments shared with SD and
PSNR. EN, SF, AG (``np.gradient``), Qabf, Nabf and the evaluators' PSNR (peak
``max(F)``) have no equivalent there.

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
from . import native

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
    # One pass over the data validates it: aminmax propagates NaN, and an Inf
    # falls outside [0, 1] (an isfinite pass plus min and max cost three).
    check_image(name, x, channels=None, finite=False)
    if x.shape[1] not in (1, 3):
        raise ValueError(f"{name} must have 1 (grey) or 3 (RGB) channels, got {x.shape[1]}")
    low, high = (float(v) for v in torch.aminmax(x.detach()))
    if math.isnan(low) or math.isnan(high) or math.isinf(low) or math.isinf(high):
        raise ValueError(f"{name} contains NaN or Inf values")
    if low < -1e-6 or high > 1.0 + 1e-6:
        raise ValueError(
            f"{name} must hold values in [0, 1], got range [{low:.4g}, {high:.4g}] "
            "(pass x / 255 for images in [0, 255])"
        )
    levels = x.detach().to(dtype).mul(255.0)  # a new tensor: the in-place steps below never touch x
    if levels.shape[1] == 3:
        if quantize:  # the evaluators read 8-bit channels, then convert
            levels = levels.round_().clamp_(0.0, 255.0)
        r, g, b = levels.unbind(1)
        levels = (_LUMA[0] * r + _LUMA[1] * g + _LUMA[2] * b).unsqueeze(1)
    # The range check allows 1e-6 of slack, which rounds to 0 or 255; clamping
    # after rounding also turns -0.0 into 0.0.
    return levels.round_().clamp_(0.0, 255.0) if quantize else levels.clamp_(0.0, 255.0)


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


_BLOCK = 16  # output rows per banded-matrix block (measured on 640x480: 16 beats 8 and 32 by ~10-20 %)


def _band_matrix(kernel_1d: Tensor, block: int, stride: int) -> Tensor:
    """``[block, stride·(block−1) + K]``: row ``j`` holds the kernel at column ``stride·j``."""
    size = kernel_1d.numel()
    cols = torch.arange(stride * (block - 1) + size, device=kernel_1d.device).unsqueeze(0)
    offset = cols - stride * torch.arange(block, device=kernel_1d.device).unsqueeze(1)
    inside = (offset >= 0) & (offset < size)
    return torch.where(inside, kernel_1d[offset.clamp(0, size - 1)], 0.0)


def _correlate_dim0(matrix: Tensor, kernel_1d: Tensor, stride: int, alloc_rows: int | None = None) -> Tensor:
    """'valid' correlation of ``[R, C]`` along its rows (every ``stride``-th output row).

    ``matrix`` may be any strided 2-D view with one unit stride (e.g. a transpose).
    Returns a new ``[alloc_rows, C]`` tensor (default: the ``(R − K) // stride + 1``
    output rows); rows past the output are left uninitialised.
    """
    # float64 conv2d on CPU takes torch's slow reference path (no oneDNN for
    # double). Instead every block of _BLOCK output rows is one GEMM of a small
    # banded matrix with a copy-free strided view of the input rows it reads, all
    # in a single bmm written straight into the output. BLAS takes a transposed
    # input through its strides, so no pass ever copies its input.
    size = kernel_1d.numel()
    computed = (matrix.shape[0] - size) // stride + 1
    span = stride * (_BLOCK - 1) + size
    band = _band_matrix(kernel_1d, _BLOCK, stride)
    out = matrix.new_empty(computed if alloc_rows is None else alloc_rows, matrix.shape[1])
    full = computed // _BLOCK
    rest = computed - full * _BLOCK
    if full:
        windows = matrix.unfold(0, span, stride * _BLOCK)[:full].transpose(1, 2)  # [full, span, C]
        torch.matmul(band, windows, out=out[: full * _BLOCK].view(full, _BLOCK, matrix.shape[1]))
    if rest:
        start, reach = full * _BLOCK * stride, stride * (rest - 1) + size
        torch.mm(band[:rest, :reach], matrix[start : start + reach], out=out[full * _BLOCK : computed])
    return out


def _rows_pass(x: Tensor, kernel_1d: Tensor, stride: int) -> tuple[Tensor, int, int]:
    """'valid' correlation of ``[..., H, W]`` along H, keeping every ``stride``-th output row.

    Returns ``(buffer, rows, valid)``: ``buffer`` is ``[N·rows, W]`` (N images of
    ``rows`` rows each, stacked) of which each image's first ``valid`` rows are the result.
    """
    # All images are stacked into one tall [N·H, W] matrix and filtered at once.
    # Blocks that straddle two images compute rows nobody reads (K − 1 per image),
    # which costs less than a loop over images.
    if x.shape[-2] % stride:  # keep every image's first row on the output grid
        x = F.pad(x, (0, 0, 0, stride - x.shape[-2] % stride))
    height, width = x.shape[-2:]
    stacked = x.reshape(-1, width)
    buffer = _correlate_dim0(stacked, kernel_1d, stride, alloc_rows=stacked.shape[0] // stride)
    return buffer, height // stride, (height - kernel_1d.numel()) // stride + 1


def _cols_pass_t(rows: Tensor, kernel_1d: Tensor, stride: int) -> Tensor:
    """'valid' correlation of every row of ``[M, W]`` (stride ``stride``), returned as ``[W', M]``."""
    if rows.shape[1] % stride:
        rows = F.pad(rows, (0, stride - rows.shape[1] % stride))
    return _correlate_dim0(rows.t(), kernel_1d, stride)


def _filter_valid_t(x: Tensor, kernel_1d: Tensor, stride: int = 1) -> Tensor:
    """Separable 'valid' correlation of ``[..., H, W]`` with a symmetric 1-D kernel, **transposed**.

    Returns ``[..., W', H']``: the filtered map (subsampled by ``stride`` in both
    directions, i.e. ``filtered[..., ::stride, ::stride]``) with its axes swapped, as
    a strided view (its last axis is contiguous; reduce it with ``sum((-2, -1))``).
    """
    # Callers combine maps elementwise and sum them, which does not care about
    # orientation, as long as every map of one formula went through the same number
    # of filters (each call flips the axes).
    buffer, rows, valid = _rows_pass(x, kernel_1d, stride)
    out = _cols_pass_t(buffer, kernel_1d, stride)  # [W', N·rows]
    return out.view(out.shape[0], -1, rows)[:, :, :valid].permute(1, 0, 2).unflatten(0, x.shape[:-2])


def _box_sum_valid_t(x: Tensor, size: int) -> Tensor:
    """Sum over every ``size × size`` window inside the image, transposed like
    :func:`_filter_valid_t`. Exact for integer grey levels in float64 (every partial
    sum is an integer below 2^53), whatever the order of the additions."""
    return _filter_valid_t(x, torch.ones(size, dtype=x.dtype, device=x.device))


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
    # log of the marginals on their 256 entries, broadcast (a marginal is 0 only where
    # its whole row or column of p is, and those terms are masked out below)
    px, py = p.sum(2, keepdim=True), p.sum(1, keepdim=True)
    log_px = torch.where(px > 0, px, 1.0).log_()
    log_py = torch.where(py > 0, py, 1.0).log_()
    nz = p > 0
    terms = p * torch.where(nz, p, 1.0).log_().sub_(log_px).sub_(log_py)
    return torch.where(nz, terms, 0.0).flatten(1).sum(-1).clamp_min(0.0)


def _sum_log10(terms: Tensor, group: int = 16) -> Tensor:
    """``log10(terms).sum((-2, -1))`` for terms in ``[1, 10^19]``, as the log of products.

    ``log10`` is the costliest step of VIF's per-pixel chain; taking it of products of
    ``group`` neighbours evaluates it on 16× fewer values. VIF's terms are ``1 + x``
    with ``x ≤ σ²_max / σ²_n ≈ 8·10³`` on 8-bit levels, so a product of 16 stays below
    10^63 (terms up to 10^19 would stay below float64's 1.8e308), and the sum changes
    only by rounding (~1e-16).
    """
    length = terms.shape[-1] - terms.shape[-1] % group
    products = terms[..., :length].unflatten(-1, (-1, group)).prod(-1)
    return torch.log10(products).sum((-2, -1)) + torch.log10(terms[..., length:]).sum((-2, -1))


def _local_moments(x: Tensor, y: Tensor, win: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Gaussian-window ``μx, μy, σx², σy², σxy`` ('valid', transposed like
    :func:`_filter_valid_t`) of ``x`` [B, S, H, W] and ``y`` [B, 1, H, W] (broadcast).

    The variances are ``E[x²] − μ²`` updated in place: each map is ~20 MB at
    640×480, so fewer temporaries means fewer passes over memory.
    """
    mu_x = _filter_valid_t(x, win)
    mu_y = _filter_valid_t(y, win)
    var_x = _filter_valid_t(x * x, win).sub_(mu_x * mu_x)
    var_y = _filter_valid_t(y * y, win).sub_(mu_y * mu_y)
    cov = _filter_valid_t(x * y, win).sub_(mu_x * mu_y)
    return mu_x, mu_y, var_x, var_y, cov


def _filter_valid(x: Tensor, kernel_1d: Tensor, stride: int = 1) -> Tensor:
    """``filtered[..., ::stride, ::stride]``: compiled where it can, else
    :func:`_filter_valid_t`. The two differ in orientation (compiled: as is; torch:
    transposed), which VIF's per-image sums do not see."""
    if native.available(x):
        return native.filter_valid(x, kernel_1d, stride)
    return _filter_valid_t(x, kernel_1d, stride)


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
            ref = _filter_valid(ref, win, stride=2)  # filtered[::2, ::2]
            dst = _filter_valid(dst, win, stride=2)
        if native.available(ref, dst):  # the same formula, evaluated inside the filter
            scale_num, scale_den = native.vif_log_sums(ref, dst, win, sigma_nsq, eps)
            num, den = num + scale_num, den + scale_den
            continue
        _, _, sigma1_sq, sigma2_sq, sigma12 = _local_moments(ref, dst, win)
        sigma1_sq.clamp_min_(0.0)
        sigma2_sq.clamp_min_(0.0)
        # The evaluators' masked assignments, folded: g is zeroed where the
        # reference or the distorted window is flat or g < 0, and every pixel with
        # g = 0 adds log10(1) = 0 to the numerator whatever sv² is, so only the
        # surviving pixels need sv² = max(σ2² − g·σ12, eps). Same values up to the
        # rounding of a fused multiply-add.
        g = sigma12 / (sigma1_sq + eps)
        keep = (sigma1_sq >= eps) & (sigma2_sq >= eps) & (g >= 0)
        g.mul_(keep)
        sv_sq = torch.addcmul(sigma2_sq, g, sigma12, value=-1.0).clamp_min_(eps)
        signal = sigma1_sq.masked_fill_(sigma1_sq < eps, 0.0)
        num = num + _sum_log10(g.square_().mul_(signal).div_(sv_sq.add_(sigma_nsq)).add_(1.0))
        den = den + _sum_log10(signal.div_(sigma_nsq).add_(1.0))
    vif = num / den
    return torch.where(torch.isnan(vif), 1.0, vif)  # flat reference: CDDFuse returns 1


def _ssim_levels(refs: Tensor, dist: Tensor, data_range: float = 255.0, win_size: int = 7,
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
        return _box_sum_valid_t(t, win_size).to(torch.float64 if exact32 else t.dtype).div_(area)

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


def _ms_ssim_levels(refs: Tensor, dist: Tensor, data_range: float = 255.0) -> Tensor:
    """pytorch_msssim's ``ms_ssim`` per reference channel: [B, S]."""
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2
    win = _gaussian_1d(11, 1.5, refs)
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
        mu1, mu2, sigma1_sq, sigma2_sq, sigma12 = _local_moments(x, y, win)
        cs_map = sigma12.mul_(2).add_(c2).div_(sigma1_sq.add_(sigma2_sq).add_(c2))
        if not last:
            terms.append(torch.relu(cs_map.mean((-2, -1))))
        else:
            ssim_map = (2 * mu1 * mu2 + c1) / (mu1 * mu1 + mu2 * mu2 + c1) * cs_map
            terms.append(torch.relu(ssim_map.mean((-2, -1))))
    stacked = torch.stack(terms, dim=0)  # [levels, B, S]
    return torch.prod(stacked ** weights.view(-1, 1, 1), dim=0)


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
    return _sobel(stacked, padding)


def _weighted_mean(values: Tensor, weights: Tensor) -> Tensor:
    """``Σ values·weights / Σ weights`` over everything but the batch axis, summed in float64."""
    num = (values * weights).flatten(1).sum(-1, dtype=torch.float64)
    return num / weights.flatten(1).sum(-1, dtype=torch.float64)


def _qabf_levels(fused: Tensor, a: Tensor, b: Tensor) -> Tensor:
    tg, kg, dg = 0.9994, -15.0, 0.5
    ta, ka, da = 0.9879, -22.0, 0.8
    # convolve2d(img, h3 / h1, 'same') with zero fill == correlation with the flipped
    # kernels: sx with [[1,0,-1],[2,0,-2],[1,0,-1]], sy with [[-1,-2,-1],[0,0,0],[1,2,1]].
    sx, dy = _edge_maps(fused, a, b, "zeros")
    sy = dy.neg_()
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


def _nabf_levels(fused: Tensor, a: Tensor, b: Tensor) -> Tensor:
    td, lg = 2.0, 1.5
    nrg, kg, sg = 0.9999, 19.0, 0.5
    nra, ka, sa = 0.9995, 22.0, 0.5
    # The port's sobel_fn: mirrored border, convolve2d with the Sobel kernels / 8, i.e.
    # gv = dx / 8 and gh = dy / 8 (exact scalings; the angle atan(gv / gh) = atan(dx / dy)).
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
    gx = dx.flatten(2)[image, :, pixel].double()  # [n, 3]: gathered, never stacked whole
    gy = dy.flatten(2)[image, :, pixel].double()
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


def _psnr_levels(fused: Tensor, a: Tensor, b: Tensor) -> Tensor:
    mse = ((a - fused).pow(2).flatten(1).mean(-1) + (b - fused).pow(2).flatten(1).mean(-1)) / 2
    return _psnr_from_mse(mse, fused)


def _scd_levels(fused: Tensor, a: Tensor, b: Tensor) -> Tensor:
    return _pearson(a, fused - b).flatten(1).sum(-1) + _pearson(b, fused - a).flatten(1).sum(-1)


#: Largest image (pixels) for which :class:`_IntegerMoments` is exact in int64:
#: ``n · Σxy ≤ n² · 255² < 2^63``.
_EXACT_MOMENT_PIXELS = 11_000_000


class _IntegerMoments:
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


def _psnr_from_mse(mse: Tensor, fused: Tensor) -> Tensor:
    peak = fused.flatten(1).amax(-1)
    return 10 * torch.log10(peak * peak / mse)


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
    return _ssim_levels(lx, ly, data_range, integer_levels=quantize)[:, 0]


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
    lf = _levels_of(fused, "fused", quantize)
    if "VIF" in names:
        _check_min_size("fused", lf, 41, "VIF")
    if "MS_SSIM" in names:
        _check_min_size("fused", lf, 161, "MS-SSIM")
    if "SSIM" in names:
        _check_min_size("fused", lf, 7, "SSIM")
    if "AG" in names or "Nabf" in names:
        _check_min_size("fused", lf, 2, "AG/Nabf")
    if set(names) <= {"EN", "SD", "SF", "AG"}:  # fused-only metrics: the sources are not read
        la = lb = sources = None
    else:
        la, lb = _levels_of(a, "a", quantize), _levels_of(b, "b", quantize)
        check_same_shape(fused=lf, a=la, b=lb)
        sources = torch.cat([la, lb], dim=1)  # [B, 2, H, W]
    moment_metrics = {"SD", "SCD", "PSNR", "CC"} & set(names)
    moments = None
    if moment_metrics and _IntegerMoments.applies(lf, quantize):
        # channels 0 = a, 1 = b, 2 = fused (only the fused map for SD alone)
        moments = _IntegerMoments(lf if sources is None else torch.cat([sources, lf], dim=1))
    f = 0 if sources is None else 2
    compute = {
        "EN": lambda: _entropy_levels(lf),
        "SD": lambda: _sd_levels(lf) if moments is None else moments.std(f),
        "SF": lambda: _sf_levels(lf),
        "AG": lambda: _ag_levels(lf),
        "MI": lambda: _reduce(torch.stack([_mi_levels(la, lf), _mi_levels(lb, lf)], -1), convention),
        "SCD": lambda: _scd_levels(lf, la, lb) if moments is None else (
            moments.pearson({0: 1}, {2: 1, 1: -1}) + moments.pearson({1: 1}, {2: 1, 0: -1})),
        "VIF": lambda: _reduce(_vif_levels(sources, lf), convention),
        "Qabf": lambda: _qabf_levels(lf, la, lb),
        "Nabf": lambda: _nabf_levels(lf, la, lb),
        "SSIM": lambda: _reduce(_ssim_levels(sources, lf, integer_levels=quantize), convention),
        "MS_SSIM": lambda: _reduce(_ms_ssim_levels(sources, lf), convention),
        "PSNR": lambda: _psnr_levels(lf, la, lb) if moments is None else _psnr_from_mse(
            (moments.mean_square({0: 1, 2: -1}) + moments.mean_square({1: 1, 2: -1})) / 2, lf),
        "CC": lambda: _pearson(sources, lf).mean(-1) if moments is None else (
            moments.pearson({0: 1}, {2: 1}) + moments.pearson({1: 1}, {2: 1})) / 2,
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
