"""A weighted-intensity and a max-gradient fusion loss as functions on ``[B, 1, H, W]`` tensors.

``L_f = L_int(w) + α · L_grad``, with per-pixel weight maps ``w`` over the sources
(for a learnable loss, a generator's softmax output). Each term has two forms:
``form="paper"`` (the default: the equations as published) and ``form="public"``
(the form of the method's public code, where it differs; a project's README names
the paper and the code). The differences:

================  ==============================================  ==============================================
term              paper (default)                                 public code (``form="public"``)
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

Form = Literal["paper", "public"]
#: Both terms' forms, from the ``Form`` type itself.
FORMS: tuple[str, ...] = get_args(Form)
#: Earlier spellings -> their name now (refused, with the new name in the message).
_RENAMED_FORMS = {"official": "public", "axis": "public", "magnitude": "paper"}
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


def check_form(form: object, name: str = "form") -> Form:
    """Return ``form`` if it is ``"paper"`` or ``"public"``, else raise ``ValueError``.

    ``name`` is the argument's name in the message (``intensity_form``, ...).

    >>> check_form("public")
    'public'
    >>> check_form("official", "intensity_form")
    Traceback (most recent call last):
        ...
    ValueError: intensity_form 'official' was renamed 'public'
    """
    if isinstance(form, str) and form in _RENAMED_FORMS:
        raise ValueError(f"{name} {form!r} was renamed {_RENAMED_FORMS[form]!r}")
    if not isinstance(form, str) or form not in FORMS:
        raise ValueError(f"{name} must be one of {FORMS}, got {form!r}")
    return form


def intensity_loss(
    fused: Tensor, *sources: Tensor, weight_maps: Tensor, form: Form = "paper"
) -> Tensor:
    """Weighted per-pixel intensity term (paper eq. 2).

    Args:
        fused: ``[B, 1, H, W]`` fused image.
        *sources: K source images, each ``[B, 1, H, W]``.
        weight_maps: ``[B, K, H, W]`` per-pixel weights (for a learnable loss, G's
            softmax output, so they sum to one over K).
        form: ``"paper"``: ``mean(Σ_k w_k (I_f − I_k)²)``; ``"public"``:
            ``Σ_k mean((w_k (I_k − I_f))²)`` (the public code's squared weights).

    Returns:
        A scalar.
    """
    check_form(form)
    stacked = _stack_sources(fused, sources)
    if not isinstance(weight_maps, Tensor) or weight_maps.shape != stacked.shape:
        got = tuple(weight_maps.shape) if isinstance(weight_maps, Tensor) else type(weight_maps).__name__
        raise ValueError(f"weight_maps must have shape {tuple(stacked.shape)} ([B, K, H, W]), got {got}")
    squared_error = (fused - stacked).square()
    if form == "paper":
        return (weight_maps * squared_error).sum(dim=1).mean()
    return (weight_maps.square() * squared_error).mean(dim=(0, 2, 3)).sum()


def gradient_loss(
    fused: Tensor, *sources: Tensor, form: Form = "paper", padding: Padding = "zeros"
) -> Tensor:
    """Max-gradient texture term (paper eq. 3) with Sobel derivatives.

    Args:
        fused: ``[B, 1, H, W]``.
        *sources: K sources, each ``[B, 1, H, W]``.
        form: ``"paper"``: ``mean| |∇I_f| − max_k |∇I_k| |`` with
            ``|∇I| = |∂_x I| + |∂_y I|``; ``"public"`` (public code): x and y
            separately, target = the source derivative of larger absolute value
            (ties go to the first source), ``Σ_d mean|∂_d I_f − target_d|``.
        padding: Sobel border handling, see :func:`sobel`.

    Returns:
        A scalar.
    """
    check_padding(padding)
    check_form(form)  # before any Sobel work is done
    stacked = _stack_sources(fused, sources)
    grad_sources = sobel(stacked, padding)  # [B, K, 2, H, W]
    grad_fused = sobel(fused, padding)  # [B, 1, 2, H, W]
    if form == "paper":
        target = grad_sources.abs().sum(dim=2).amax(dim=1)  # [B, H, W]
        return (grad_fused.abs().sum(dim=2)[:, 0] - target).abs().mean()
    # argmax of |g| over sources picks the first maximum on ties, as the public
    # code's ``>=`` does; gather keeps the sign of the chosen derivative.
    index = grad_sources.abs().argmax(dim=1, keepdim=True)
    target = grad_sources.gather(1, index)  # [B, 1, 2, H, W]
    return (grad_fused - target).abs().mean(dim=(0, 1, 3, 4)).sum()


def fusion_loss(
    fused: Tensor,
    *sources: Tensor,
    weight_maps: Tensor,
    alpha: float = 1.0,
    intensity_form: Form = "paper",
    gradient_form: Form = "paper",
    padding: Padding = "zeros",
) -> dict[str, Tensor]:
    """The fusion loss ``L_f = L_int + α L_grad``.

    Returns:
        ``{"loss": L_f, "loss_int": L_int, "loss_grad": L_grad}``.
    """
    # Checked up front: with alpha == 0 the gradient term (and so its padding and
    # form) is never evaluated, and a typo would pass silently.
    check_padding(padding)
    check_form(intensity_form, "intensity_form")
    check_form(gradient_form, "gradient_form")
    loss_int = intensity_loss(fused, *sources, weight_maps=weight_maps, form=intensity_form)
    if alpha == 0:
        loss_grad = torch.zeros((), dtype=fused.dtype, device=fused.device)
    else:
        loss_grad = gradient_loss(fused, *sources, form=gradient_form, padding=padding)
    return {"loss": loss_int + alpha * loss_grad, "loss_int": loss_int, "loss_grad": loss_grad}


__all__ = ["FORMS", "PADDINGS", "check_form", "check_padding", "sobel", "intensity_loss", "gradient_loss", "fusion_loss"]
