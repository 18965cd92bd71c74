"""A generator of per-pixel loss weights for one image (any pixel loss, not only fusion)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .._checks import check_image
from ..registry import MODELS

__all__ = ["PixelWeightGenerator"]


@MODELS.register_module()
class PixelWeightGenerator(nn.Module):
    """G for a per-pixel weighted loss: an image ``[B, C, H, W]`` → weights ``[B, 1, H, W]``.

    ``[conv3×3 → GELU] × depth → conv3×3``, then ``H·W·softmax`` over the pixels of each
    image: the weights are positive and average 1 in every image, so G moves the
    loss's emphasis between pixels but cannot rescale the loss (which would only
    rescale the model's step; see the learnable-loss README section). At the start
    (zero last layer) every weight is 1: the plain, unweighted loss.

    Args:
        in_channels: channels of the image G sees.
        hidden: width of the hidden layers.
        depth: number of hidden conv layers.

    >>> g = PixelWeightGenerator(in_channels=1, hidden=4)
    >>> w = g(torch.rand(2, 1, 8, 8))
    >>> tuple(w.shape), round(float(w.mean()), 6), bool((w == 1).all())
    ((2, 1, 8, 8), 1.0, True)
    """

    def __init__(self, in_channels: int = 1, hidden: int = 16, depth: int = 2) -> None:
        super().__init__()
        if in_channels < 1 or hidden < 1 or depth < 1:
            raise ValueError(f"need in_channels, hidden, depth >= 1; got {in_channels=}, {hidden=}, {depth=}")
        layers: list[nn.Module] = []
        channels = in_channels
        for _ in range(depth):
            layers += [nn.Conv2d(channels, hidden, 3, padding=1, padding_mode="replicate"), nn.GELU()]
            channels = hidden
        last = nn.Conv2d(channels, 1, 3, padding=1, padding_mode="replicate")
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.body = nn.Sequential(*layers, last)
        self.in_channels = in_channels

    def forward(self, image: Tensor) -> Tensor:
        check_image("image", image, channels=self.in_channels)
        logits = self.body(image)
        batch, _, height, width = logits.shape
        weights = torch.softmax(logits.reshape(batch, -1), dim=1) * (height * width)
        return weights.reshape(batch, 1, height, width)
