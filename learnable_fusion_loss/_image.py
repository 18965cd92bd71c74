"""Image constants shared by the core (metrics, losses) and the adapters (datasets).

They live here, below every package, so that :mod:`.metrics` and :mod:`.losses`
need not import :mod:`.datasets` (the dependency runs core → adapters) and each
constant is written once.
"""

from __future__ import annotations

import torch
from torch import Tensor

#: BT.601 luma weights ``(R, G, B)``: OpenCV's ``COLOR_BGR2GRAY`` and the Y of its
#: ``COLOR_BGR2YCrCb``, kornia's ``rgb_to_ycbcr``.
LUMA_WEIGHTS: tuple[float, float, float] = (0.299, 0.587, 0.114)

#: The Sobel kernel's factors: ``SOBEL_X = outer(SOBEL_SMOOTH, SOBEL_DIFF)``.
SOBEL_SMOOTH: tuple[float, float, float] = (1.0, 2.0, 1.0)
SOBEL_DIFF: tuple[float, float, float] = (-1.0, 0.0, 1.0)
#: Un-normalised 3×3 Sobel kernels for cross-correlation (``conv2d``), kornia's
#: ``get_spatial_gradient_kernel2d("sobel", 1)`` convention: ``SOBEL_X`` gives
#: right minus left, ``SOBEL_Y`` (its transpose) bottom minus top.
SOBEL_X: tuple[tuple[float, ...], ...] = tuple(tuple(s * d for d in SOBEL_DIFF) for s in SOBEL_SMOOTH)
SOBEL_Y: tuple[tuple[float, ...], ...] = tuple(zip(*SOBEL_X))


def sobel_kernels(like: Tensor) -> Tensor:
    """``[2, 3, 3]``: :data:`SOBEL_X` then :data:`SOBEL_Y`, in ``like``'s dtype and device.

    >>> sobel_kernels(torch.zeros(1))[0]
    tensor([[-1.,  0.,  1.],
            [-2.,  0.,  2.],
            [-1.,  0.,  1.]])
    >>> torch.equal(sobel_kernels(torch.zeros(1))[1], sobel_kernels(torch.zeros(1))[0].t())
    True
    """
    return torch.tensor((SOBEL_X, SOBEL_Y), dtype=like.dtype, device=like.device)


__all__ = ["LUMA_WEIGHTS", "SOBEL_DIFF", "SOBEL_SMOOTH", "SOBEL_X", "SOBEL_Y", "sobel_kernels"]
