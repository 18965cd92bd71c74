"""The released inference pipelines (notes §6): grey IVIF, and medical colour through Y.

* :func:`fuse_grey` - any ``forward(a, b)`` model on grey ``[B, 1, H, W]`` inputs,
  without gradients, clamped to ``[0, 1]`` as the release's ``save_image`` does.
  ``stage2_batch_stats=True`` reproduces the release's IVIF quirk (``model_2.eval()``
  commented out: stage 2's BN uses each batch's statistics); the running statistics
  are restored afterwards.
* :func:`fuse_colour` - PET/SPECT: the colour image's luma is fused with the grey
  MRI and written back, the chroma kept. ``space="yuv"`` is the release's (OpenCV
  ``BGR2YUV``: ``Y = .299R + .587G + .114B``, ``U = .492(B − Y)``, ``V = .877(R − Y)``,
  OpenCV's +0.5 chroma offset left out); ``"ycbcr"`` is BT.601 YCbCr
  (``Cb = .564(B − Y) + .5``, ``Cr = .713(R − Y) + .5``, OpenCV's ``YCrCb`` in
  kornia's channel order). The inverse is the forward matrix's exact inverse, so the
  chroma survives a round trip to float precision (kornia's ``yuv_to_rgb`` rounds
  its inverse coefficients to 3 decimals, a ~1e-3 chroma drift, and
  ``ycbcr_to_rgb`` clamps, hence our own matrices). Colour tensors are RGB
  ``[B, 3, H, W]`` in ``[0, 1]`` (kornia's convention).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import torch
from torch import Tensor, nn

__all__ = ["fuse_grey", "fuse_colour", "split_luma", "merge_luma", "batch_statistics"]

ColourSpace = Literal["yuv", "ycbcr"]
_LUMA = (0.299, 0.587, 0.114)


def _matrix(u_scale: float, v_scale: float) -> list[list[float]]:
    r, g, b = _LUMA
    return [[r, g, b], [-u_scale * r, -u_scale * g, u_scale * (1 - b)], [v_scale * (1 - r), -v_scale * g, -v_scale * b]]


#: ``(matrix RGB → [Y, chroma₁, chroma₂], chroma offset)`` per colour space.
_SPACES: dict[str, tuple[list[list[float]], float]] = {
    "yuv": (_matrix(0.492, 0.877), 0.0),  # OpenCV BGR2YUV (without its +0.5 chroma offset)
    "ycbcr": (_matrix(0.564, 0.713), 0.5),  # BT.601 YCbCr (OpenCV YCrCb, channels Y, Cb, Cr)
}


def _space(space: str, inverse: bool, like: Tensor) -> tuple[Tensor, float]:
    if space not in _SPACES:
        raise ValueError(f"unknown colour space {space!r}; valid: {', '.join(sorted(_SPACES))}")
    matrix, offset = _SPACES[space]
    m = torch.tensor(matrix, dtype=torch.float64)
    m = torch.linalg.inv(m) if inverse else m
    return m.to(dtype=like.dtype, device=like.device), offset


def _apply(m: Tensor, x: Tensor) -> Tensor:
    return torch.einsum("ij,bjhw->bihw", m, x)


def split_luma(rgb: Tensor, space: ColourSpace = "yuv") -> tuple[Tensor, Tensor]:
    """``(Y [B, 1, H, W], chroma [B, 2, H, W])`` of an RGB image.

    >>> import torch
    >>> y, chroma = split_luma(torch.ones(1, 3, 2, 2))
    >>> round(float(y.mean()), 4), round(float(chroma.abs().max()), 4)
    (1.0, 0.0)
    >>> [round(float(c), 4) for c in split_luma(torch.ones(1, 3, 1, 1), "ycbcr")[1].flatten()]
    [0.5, 0.5]
    """
    m, offset = _space(space, False, rgb)
    converted = _apply(m, rgb)
    return converted[:, :1], converted[:, 1:] + offset


def merge_luma(y: Tensor, chroma: Tensor, space: ColourSpace = "yuv") -> Tensor:
    """The RGB image of luma ``y`` and ``chroma`` (the inverse of :func:`split_luma`).

    >>> import torch
    >>> rgb = torch.rand(1, 3, 4, 4)
    >>> bool(torch.allclose(merge_luma(*split_luma(rgb, "ycbcr"), "ycbcr"), rgb, atol=1e-6))
    True
    """
    m, offset = _space(space, True, y)
    return _apply(m, torch.cat([y, chroma - offset], dim=1))


@contextmanager
def batch_statistics(module: nn.Module) -> Iterator[None]:
    """Run ``module``'s BN layers on batch statistics, restoring their buffers and modes after.

    >>> import torch
    >>> bn = torch.nn.BatchNorm2d(1).eval()
    >>> with batch_statistics(bn), torch.no_grad():
    ...     y = bn(torch.rand(2, 1, 3, 3) * 5)
    >>> round(float(y.mean()), 4), float(bn.running_var), bn.training
    (0.0, 1.0, False)
    """
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m.training, {k: v.clone() for k, v in m.named_buffers(recurse=False)}) for m in norms]
    try:
        for m in norms:
            m.train()
        yield
    finally:
        for m, (mode, buffers) in zip(norms, saved):
            m.train(mode)
            for k, v in buffers.items():
                getattr(m, k).copy_(v)


@torch.no_grad()
def fuse_grey(model: nn.Module, a: Tensor, b: Tensor, clamp: bool = True,
              stage2_batch_stats: bool = False) -> Tensor:
    """``model(a, b)`` in eval mode, without gradients, clamped to ``[0, 1]``.

    ``a`` = IR or MRI, ``b`` = VIS or CT, grey ``[B, 1, H, W]`` in ``[0, 1]``; any size
    (the TIMFusion models pad and crop). The model's train/eval mode is restored.

    >>> import torch
    >>> from projects.timfusion.timfusion.models import TIMFusionIVIF
    >>> ir, vis = torch.rand(1, 1, 10, 13), torch.rand(1, 1, 10, 13)
    >>> y = fuse_grey(TIMFusionIVIF(channels=8), ir, vis, stage2_batch_stats=True)
    >>> y.shape, bool(y.min() >= 0 and y.max() <= 1)
    (torch.Size([1, 1, 10, 13]), True)
    """
    mode = model.training
    model.eval()
    try:
        if stage2_batch_stats:
            stage2 = getattr(model, "stage2", None)
            if stage2 is None:
                raise ValueError("stage2_batch_stats needs a two-stage model (a .stage2 attribute)")
            with batch_statistics(stage2):
                fused = model(a, b)
        else:
            fused = model(a, b)
    finally:
        model.train(mode)
    return fused.clamp(0, 1) if clamp else fused


@torch.no_grad()
def fuse_colour(model: nn.Module, grey: Tensor, colour: Tensor, space: ColourSpace = "yuv",
                quantize: bool = False, clamp: bool = True) -> Tensor:
    """Fuse a grey image with a colour one through its luma; the colour's chroma is kept.

    ``fused_y = clip(model(grey, Y), 0, 1)`` (``grey`` is ``a``, the colour luma ``b``,
    whatever the model does with that order), optionally truncated to 8 bits like the
    release (``quantize``), merged with the source chroma and converted back to RGB;
    ``clamp`` clips the RGB to ``[0, 1]`` (which may change the chroma where the
    result leaves the gamut; ``clamp=False`` keeps it exactly).

    >>> import torch
    >>> from projects.timfusion.timfusion.models import TIMFusionMedical
    >>> mri, pet = torch.rand(1, 1, 8, 8), torch.rand(1, 3, 8, 8)
    >>> out = fuse_colour(TIMFusionMedical("pet", channels=8), mri, pet, clamp=False)
    >>> bool(torch.allclose(split_luma(out)[1], split_luma(pet)[1], atol=1e-5))
    True
    """
    y, chroma = split_luma(colour, space)
    fused_y = fuse_grey(model, grey, y, clamp=True)
    if quantize:
        fused_y = torch.floor(fused_y * 255) / 255
    rgb = merge_luma(fused_y, chroma, space)
    return rgb.clamp(0, 1) if clamp else rgb
