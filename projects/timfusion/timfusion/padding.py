"""Reflect-pad images to a multiple of 4 (``Cell_Fusion``'s need) and crop back.

The released IVIF script fuses pre-padded inputs and crops the bottom/right
(``F[:, :, :H-new_h, :W-new_w]``); the padding mode it used is unknown, reflect is
our choice (notes §6). Padding goes at the bottom and right. A side shorter than
its padding is reflected in steps (each step pads less than the current side);
a side of 1 cannot be reflected and is replicated.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

__all__ = ["Padding", "pad_to_multiple", "reflect_pad"]


@dataclass(frozen=True)
class Padding:
    """What :func:`pad_to_multiple` added: the original ``(height, width)`` to crop back to.

    >>> import torch
    >>> x = torch.rand(1, 1, 5, 6)
    >>> y, pad = pad_to_multiple(x)
    >>> y.shape, pad.crop(y).shape, pad.bottom, pad.right
    (torch.Size([1, 1, 8, 8]), torch.Size([1, 1, 5, 6]), 3, 2)
    """

    height: int
    width: int
    bottom: int
    right: int

    def crop(self, x: Tensor) -> Tensor:
        """``x[..., :height, :width]``: the padded result cropped back to the input's size."""
        return x[..., : self.height, : self.width]


def reflect_pad(x: Tensor, bottom: int, right: int) -> Tensor:
    """Reflect-pad the bottom and right of ``x`` ``[..., H, W]``, in steps if a side is short.

    >>> import torch
    >>> reflect_pad(torch.tensor([[[[1.0, 2.0]]]]), 0, 3).tolist()
    [[[[1.0, 2.0, 1.0, 2.0, 1.0]]]]
    >>> reflect_pad(torch.ones(1, 1, 1, 1), 3, 3).shape
    torch.Size([1, 1, 4, 4])
    """
    while bottom > 0 or right > 0:
        h, w = x.shape[-2:]
        step_b, step_r = min(bottom, h - 1), min(right, w - 1)
        if (bottom and step_b == 0) or (right and step_r == 0):  # a side of 1: replicate it
            x = F.pad(x, (0, right if w == 1 else 0, 0, bottom if h == 1 else 0), mode="replicate")
            bottom, right = (0 if h == 1 else bottom), (0 if w == 1 else right)
            continue
        x = F.pad(x, (0, step_r, 0, step_b), mode="reflect")
        bottom, right = bottom - step_b, right - step_r
    return x


def pad_to_multiple(x: Tensor, multiple: int = 4) -> tuple[Tensor, Padding]:
    """Reflect-pad ``x`` ``[B, C, H, W]`` at the bottom/right to sides divisible by ``multiple``.

    Returns the padded tensor and the :class:`Padding` whose ``crop`` undoes it.

    >>> import torch
    >>> x = torch.rand(2, 1, 37, 53)
    >>> y, pad = pad_to_multiple(x)
    >>> y.shape, bool(torch.equal(pad.crop(y), x))
    (torch.Size([2, 1, 40, 56]), True)
    """
    if multiple < 1:
        raise ValueError(f"multiple must be >= 1, got {multiple}")
    h, w = x.shape[-2:]
    pad = Padding(h, w, (-h) % multiple, (-w) % multiple)
    return (reflect_pad(x, pad.bottom, pad.right) if pad.bottom or pad.right else x), pad
