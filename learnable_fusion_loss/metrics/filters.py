"""The filters behind the metrics: Gaussian windows, separable 'valid' filtering, Sobel.

Everything runs in float64 on CPU and GPU. PyTorch's float64 ``conv2d`` on CPU
takes a slow reference path (oneDNN has no double), so the separable filters are
banded GEMMs (:func:`_filter_valid_t`), or the compiled kernels of :mod:`.native`
where those apply (:func:`filter_valid`); the Sobel responses are shifted sums,
exact on integer grey levels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .._image import SOBEL_DIFF, SOBEL_SMOOTH
from . import native


def gaussian_1d(size: int, sigma: float, like: Tensor) -> Tensor:
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


def box_sum_valid_t(x: Tensor, size: int) -> Tensor:
    """Sum over every ``size × size`` window inside the image, transposed like
    :func:`_filter_valid_t`. Exact for integer grey levels in float64 (every partial
    sum is an integer below 2^53), whatever the order of the additions."""
    return _filter_valid_t(x, torch.ones(size, dtype=x.dtype, device=x.device))


# sobel writes the Sobel factors out as shifted sums (multiplying by the taps
# would cost a pass per tap); a change of the shared definition must fail here,
# not silently leave the metrics on the old kernel.
_SOBEL_TAPS_ASSUMED = ((1.0, 2.0, 1.0), (-1.0, 0.0, 1.0))
if (SOBEL_SMOOTH, SOBEL_DIFF) != _SOBEL_TAPS_ASSUMED:
    raise RuntimeError(f"sobel assumes the Sobel factors {_SOBEL_TAPS_ASSUMED}, got {(SOBEL_SMOOTH, SOBEL_DIFF)}")


def sobel(x: Tensor, padding: str) -> tuple[Tensor, Tensor]:
    """Un-normalised Sobel responses of ``[..., H, W]`` with 'same' output size.

    Returns ``(dx, dy)``: the cross-correlations with ``_image.SOBEL_X`` (right
    minus left) and ``_image.SOBEL_Y`` (bottom minus top), the kernels of
    :func:`learnable_fusion_loss.losses.sobel`; ``padding`` is ``"zeros"`` or
    ``"reflect"`` (mirror without repeating the edge).

    >>> from learnable_fusion_loss._image import sobel_kernels
    >>> x = torch.arange(20.0).view(1, 1, 4, 5) ** 2
    >>> dx, dy = sobel(x, "zeros")
    >>> torch.equal(torch.cat([dx, dy], 1), F.conv2d(x, sobel_kernels(x).unsqueeze(1), padding=1))
    True
    """
    # Separable shifted sums instead of a float64 3x3 conv2d (torch's slow path):
    # on integer levels every partial sum is an exact integer, so the result is
    # bit-identical to scipy's convolve2d. The taps are the kernel's factors
    # SOBEL_SMOOTH and SOBEL_DIFF, written out (see _SOBEL_TAPS_ASSUMED).
    shape = x.shape
    flat = x.reshape(-1, 1, shape[-2], shape[-1])
    mode = {"zeros": "constant", "reflect": "reflect"}[padding]
    p = F.pad(flat, (1, 1, 1, 1), mode=mode)[:, 0]
    rows = p[:, :-2, :] + 2 * p[:, 1:-1, :] + p[:, 2:, :]  # vertical [1, 2, 1]
    cols = p[:, :, :-2] + 2 * p[:, :, 1:-1] + p[:, :, 2:]  # horizontal [1, 2, 1]
    dx = rows[:, :, 2:] - rows[:, :, :-2]
    dy = cols[:, 2:, :] - cols[:, :-2, :]
    return dx.reshape(shape), dy.reshape(shape)


def local_moments(x: Tensor, y: Tensor, win: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
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


def filter_valid(x: Tensor, kernel_1d: Tensor, stride: int = 1) -> Tensor:
    """``filtered[..., ::stride, ::stride]``: compiled where it can, else
    :func:`_filter_valid_t`. The two differ in orientation (compiled: as is; torch:
    transposed), which VIF's per-image sums do not see."""
    if native.available(x):
        return native.filter_valid(x, kernel_1d, stride)
    return _filter_valid_t(x, kernel_1d, stride)
