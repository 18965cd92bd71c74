"""The metrics' input: images in ``[0, 1]`` as 8-bit grey levels (:func:`to_grey_levels`)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .._checks import check_image
from .._image import LUMA_WEIGHTS


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

    >>> to_grey_levels(torch.tensor([[[[0.0, 0.2, 0.5, 1.0]]]]))
    tensor([[[[  0.,  51., 128., 255.]]]], dtype=torch.float64)
    >>> to_grey_levels(torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1))  # pure red: 0.299 · 255
    tensor([[[[76.]]]], dtype=torch.float64)
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
        levels = (LUMA_WEIGHTS[0] * r + LUMA_WEIGHTS[1] * g + LUMA_WEIGHTS[2] * b).unsqueeze(1)
    # The range check allows 1e-6 of slack, which rounds to 0 or 255; clamping
    # after rounding also turns -0.0 into 0.0.
    return levels.round_().clamp_(0.0, 255.0) if quantize else levels.clamp_(0.0, 255.0)


__all__ = ["to_grey_levels"]
