"""TDFusion's fusion-loss terms (paper eqs. 1–3) as functions on ``[B, 1, H, W]`` tensors.

Each term has the paper's form (the default) and the public code's form
(HaowenBai/TDFusion ``utils.py``) as an option. The differences:

================  ==============================================  ==============================================
term              paper (default)                                 public code (``form="official"``/``"axis"``)
================  ==============================================  ==============================================
intensity         ``mean(Σ_k w_k (I_f − I_k)²)``                  ``Σ_k mean((w_k (I_k − I_f))²)``, i.e. the
                                                                  weights enter **squared**
gradient          ``mean| |∇I_f| − max_k |∇I_k| |`` with          per axis: ``Σ_{d∈{x,y}} mean|∂_d I_f − s_d|``,
                  ``|∇I| = |∂_x I| + |∂_y I|`` (Sobel)            ``s_d`` the source derivative of larger
                                                                  absolute value (sign kept)
================  ==============================================  ==============================================

Both use the un-normalised 3×3 Sobel kernels with zero padding, as the public
code does (``padding="zeros"``); ``"replicate"`` avoids the artificial edge at the
border. The total is ``L_f = L_int + α · L_grad`` (α = 1 in the paper).
"""

from __future__ import annotations

from typing import Literal, get_args

import kornia
import torch
from torch import Tensor

from .._checks import check_image, check_same_shape
from .._image import sobel_kernels

IntensityForm = Literal["paper", "official"]
GradientForm = Literal["magnitude", "axis"]
Padding = Literal["zeros", "replicate"]

#: The supported values of every ``padding`` argument, from the ``Padding`` type itself
#: so the two cannot drift apart.
PADDINGS: tuple[str, ...] = get_args(Padding)
#: ``padding`` -> kornia's ``border_type``.
_BORDER = {"zeros": "constant", "replicate": "replicate"}
if set(_BORDER) != set(PADDINGS):  # a new Padding value without a border type is a bug here
    raise RuntimeError(f"_BORDER covers {sorted(_BORDER)}, Padding allows {sorted(PADDINGS)}")


def check_padding(padding: object) -> Padding:
    """Return ``padding`` if it is a supported Sobel border, else raise ``ValueError``.

    Called where a padding mode is accepted (not only where it is first used), so a
    bad value fails when a loss is built or a term is called, not steps later or
    never (``fusion_loss`` with ``alpha=0`` skips the gradient term entirely).

    >>> check_padding("zeros")
    'zeros'
    >>> check_padding("reflect")
    Traceback (most recent call last):
        ...
    ValueError: padding must be one of ('zeros', 'replicate'), got 'reflect'
    """
    if not isinstance(padding, str) or padding not in PADDINGS:
        raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}")
    return padding  # type: ignore[return-value]


def _stack_sources(fused: Tensor, sources: tuple[Tensor, ...]) -> Tensor:
    check_image("fused", fused, channels=1)
    if len(sources) < 2:
        raise ValueError(f"need at least two sources, got {len(sources)}")
    named = {"fused": fused}
    for index, source in enumerate(sources):
        named[f"sources[{index}]"] = check_image(f"sources[{index}]", source, channels=1)
    check_same_shape(**named)
    return torch.cat(sources, dim=1)  # [B, K, H, W]


def sobel(image: Tensor, padding: Padding = "zeros") -> Tensor:
    """Un-normalised Sobel derivatives of every channel.

    Args:
        image: ``[B, C, H, W]``.
        padding: ``"zeros"`` (the public code's ``conv2d(padding=1)``) or ``"replicate"``.

    Returns:
        ``[B, C, 2, H, W]``: ``d/dx`` (kernel ``[[-1,0,1],[-2,0,2],[-1,0,1]]``, i.e.
        ``_image.SOBEL_X``, shared with the metrics) then ``d/dy`` (its transpose).

    >>> ramp = torch.arange(4.0).expand(1, 1, 4, 4)  # rising to the right
    >>> sobel(ramp, "replicate")[0, 0, :, 1]  # row 1: d/dx then d/dy
    tensor([[4., 8., 8., 4.],
            [0., 0., 0., 0.]])
    """
    check_padding(padding)
    # kornia's spatial_gradient always pads by replication; filter2d with the same
    # Sobel kernels (the shared definition, also the metrics') lets us choose the
    # border and stays a plain conv2d (double-backward safe).
    kernels = sobel_kernels(image)  # [2, 3, 3]
    gx = kornia.filters.filter2d(image, kernels[0:1], border_type=_BORDER[padding])
    gy = kornia.filters.filter2d(image, kernels[1:2], border_type=_BORDER[padding])
    return torch.stack((gx, gy), dim=2)


def intensity_loss(
    fused: Tensor, *sources: Tensor, weights: Tensor, form: IntensityForm = "paper"
) -> Tensor:
    """Weighted per-pixel intensity term (paper eq. 2).

    Args:
        fused: ``[B, 1, H, W]`` fused image.
        *sources: K source images, each ``[B, 1, H, W]``.
        weights: ``[B, K, H, W]`` per-pixel weights (for TDFusion, G's softmax
            output, so they sum to one over K).
        form: ``"paper"``: ``mean(Σ_k w_k (I_f − I_k)²)``; ``"official"``:
            ``Σ_k mean((w_k (I_k − I_f))²)`` (the public code's squared weights).

    Returns:
        A scalar.
    """
    stacked = _stack_sources(fused, sources)
    if not isinstance(weights, Tensor) or weights.shape != stacked.shape:
        got = tuple(weights.shape) if isinstance(weights, Tensor) else type(weights).__name__
        raise ValueError(f"weights must have shape {tuple(stacked.shape)} ([B, K, H, W]), got {got}")
    squared_error = (fused - stacked).square()
    if form == "paper":
        return (weights * squared_error).sum(dim=1).mean()
    if form == "official":
        return (weights.square() * squared_error).mean(dim=(0, 2, 3)).sum()
    raise ValueError(f"form must be 'paper' or 'official', got {form!r}")


def gradient_loss(
    fused: Tensor, *sources: Tensor, form: GradientForm = "magnitude", padding: Padding = "zeros"
) -> Tensor:
    """Max-gradient texture term (paper eq. 3) with Sobel derivatives.

    Args:
        fused: ``[B, 1, H, W]``.
        *sources: K sources, each ``[B, 1, H, W]``.
        form: ``"magnitude"`` (paper): ``mean| |∇I_f| − max_k |∇I_k| |`` with
            ``|∇I| = |∂_x I| + |∂_y I|``; ``"axis"`` (public code): x and y
            separately, target = the source derivative of larger absolute value
            (ties go to the first source), ``Σ_d mean|∂_d I_f − target_d|``.
        padding: Sobel border handling, see :func:`sobel`.

    Returns:
        A scalar.
    """
    check_padding(padding)
    if form not in ("magnitude", "axis"):  # checked before any Sobel work is done
        raise ValueError(f"form must be 'magnitude' or 'axis', got {form!r}")
    stacked = _stack_sources(fused, sources)
    grad_sources = sobel(stacked, padding)  # [B, K, 2, H, W]
    grad_fused = sobel(fused, padding)  # [B, 1, 2, H, W]
    if form == "magnitude":
        target = grad_sources.abs().sum(dim=2).amax(dim=1)  # [B, H, W]
        return (grad_fused.abs().sum(dim=2)[:, 0] - target).abs().mean()
    if form == "axis":
        # argmax of |g| over sources picks the first maximum on ties, as the public
        # code's ``>=`` does; gather keeps the sign of the chosen derivative.
        index = grad_sources.abs().argmax(dim=1, keepdim=True)
        target = grad_sources.gather(1, index)  # [B, 1, 2, H, W]
        return (grad_fused - target).abs().mean(dim=(0, 1, 3, 4)).sum()
    raise ValueError(f"form must be 'magnitude' or 'axis', got {form!r}")


def fusion_loss(
    fused: Tensor,
    *sources: Tensor,
    weights: Tensor,
    alpha: float = 1.0,
    intensity_form: IntensityForm = "paper",
    gradient_form: GradientForm = "magnitude",
    padding: Padding = "zeros",
) -> dict[str, Tensor]:
    """TDFusion's fusion loss ``L_f = L_int + α L_grad`` (paper eq. 1).

    Returns:
        ``{"loss": L_f, "loss_int": L_int, "loss_grad": L_grad}``.
    """
    # Checked up front: with alpha == 0 the gradient term (and so its padding and
    # form) is never evaluated, and a typo would pass silently.
    check_padding(padding)
    if gradient_form not in ("magnitude", "axis"):
        raise ValueError(f"gradient_form must be 'magnitude' or 'axis', got {gradient_form!r}")
    loss_int = intensity_loss(fused, *sources, weights=weights, form=intensity_form)
    if alpha == 0:
        loss_grad = torch.zeros((), dtype=fused.dtype, device=fused.device)
    else:
        loss_grad = gradient_loss(fused, *sources, form=gradient_form, padding=padding)
    return {"loss": loss_int + alpha * loss_grad, "loss_int": loss_int, "loss_grad": loss_grad}


__all__ = ["PADDINGS", "check_padding", "sobel", "intensity_loss", "gradient_loss", "fusion_loss"]
