"""Fusing images of any size in tiles, within a memory bound set by the tile size.

A whole-image pass of a fusion network keeps activations for every pixel: an
8000×6000 pair needs several GiB. :func:`fuse_tiled` cuts the image into *cores*
of ``tile × tile`` pixels, runs the network on each core together with a margin
(*halo*) of ``overlap`` pixels of real context on every side (less at the image's
edges), and writes back the core only (the overlap-tile strategy of U-Net). No
blending: every output pixel comes from exactly one window.

Exactness: for a network whose output at a pixel depends only on inputs within
``overlap`` pixels (a CNN of receptive radius ``≤ overlap``, in eval mode), the
tiled output equals the whole-image output, to float rounding. A network with a
global operation does not have that property: the Restormer blocks
(:mod:`learnable_fusion_loss.nn.restormer`) use *channel* attention, a softmax over
channel-by-channel products summed over all pixels of the window, so each window
sees its own statistics and the result differs from the whole-image pass, most at
core boundaries (a seam). Larger tiles and overlaps bring it closer; the README of
a project that uses them gives measured differences.

Peak memory: the full-size sources and output (three float32 planes, 12 bytes per
pixel of each grey image in the batch) plus the network's activations for one
``(tile + 2·overlap)²`` window, whatever the image size.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor, nn

from .._checks import check_image, check_same_shape

__all__ = ["fuse_tiled", "tile_windows"]


def tile_windows(
    height: int, width: int, tile: int, overlap: int
) -> Iterator[tuple[tuple[slice, slice], tuple[slice, slice]]]:
    """``(window, core_in_window)`` slices covering an ``height × width`` image.

    ``window`` indexes the image (a core plus its halo, clipped to the image);
    ``core_in_window`` indexes the network's output on that window.

    >>> [(w[1], c[1]) for w, c in tile_windows(4, 10, tile=4, overlap=2)]
    [(slice(0, 6, None), slice(0, 4, None)), (slice(2, 10, None), slice(2, 6, None)), (slice(6, 10, None), slice(2, 4, None))]
    """
    if tile < 1:
        raise ValueError(f"tile must be >= 1, got {tile}")
    if overlap < 0:
        raise ValueError(f"overlap must be >= 0, got {overlap}")
    for y0 in range(0, height, tile):
        y1 = min(y0 + tile, height)
        wy0, wy1 = max(y0 - overlap, 0), min(y1 + overlap, height)
        for x0 in range(0, width, tile):
            x1 = min(x0 + tile, width)
            wx0, wx1 = max(x0 - overlap, 0), min(x1 + overlap, width)
            yield ((slice(wy0, wy1), slice(wx0, wx1)),
                   (slice(y0 - wy0, y1 - wy0), slice(x0 - wx0, x1 - wx0)))


@torch.inference_mode()
def fuse_tiled(
    net: nn.Module,
    a: Tensor,
    b: Tensor,
    tile: int,
    overlap: int = 32,
    pad_multiple: int | None = None,
    normalize: str = "none",
) -> Tensor:
    """:func:`~learnable_fusion_loss.apis.fuse_tensors` window by window (see module docstring).

    Args:
        net: the fusion network ``net(a, b)``.
        a, b: ``[B, 1, H, W]`` in ``[0, 1]``; they stay where they are (e.g. on the
            CPU) and only one window at a time goes to the network's device.
        tile: core size in pixels.
        overlap: halo of context around each core, in pixels.
        pad_multiple: as in ``fuse_tensors``, applied to each window.
        normalize: ``"minmax"`` stretches each *whole* fused image (after stitching).

    >>> import torch
    >>> class Local(torch.nn.Module):  # a CNN of receptive radius 1
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.conv = torch.nn.Conv2d(2, 1, 3, padding=1)
    ...     def forward(self, a, b):
    ...         return self.conv(torch.cat([a, b], 1)).sigmoid()
    >>> net, (a, b) = Local(), torch.rand(2, 1, 1, 20, 30).unbind(0)
    >>> from learnable_fusion_loss.apis import fuse_tensors
    >>> torch.allclose(fuse_tiled(net, a, b, tile=8, overlap=1), fuse_tensors(net, a, b))
    True
    """
    from .inference import fuse_tensors, stretch  # inference imports this module

    check_image("a", a, channels=1)
    check_image("b", b, channels=1)
    check_same_shape(a=a, b=b)
    if normalize not in ("none", "minmax"):
        raise ValueError(f"normalize must be 'none' or 'minmax', got {normalize!r}")
    fused = torch.empty_like(a)
    for window, core in tile_windows(a.shape[-2], a.shape[-1], tile, overlap):
        part = fuse_tensors(net, a[(..., *window)], b[(..., *window)], pad_multiple=pad_multiple)
        target = fused[(..., *window)]
        target[(..., *core)] = part[(..., *core)].to(fused)
    return stretch(fused) if normalize == "minmax" else fused
