"""Fusing tensors and image files with a trained fusion network.

The network ``F(a, b)`` takes two single-channel sources ``[B, 1, H, W]`` in
``[0, 1]`` (``a`` = infrared / first modality, ``b`` = visible / second, e.g. the
luminance of the visible image) and returns ``[B, 1, H, W]``.

Colour handling (:func:`fuse_images`):

* both sources grey -> grey output;
* one colour source (e.g. RGB visible + IR): convert it to YCrCb (OpenCV's
  full-range BT.601, :func:`learnable_fusion_loss.datasets.rgb_to_ycrcb`), fuse its
  Y with the other source, keep its Cr/Cb and convert back: the output is RGB;
* two colour sources: fuse the two Y channels with the network and each chroma
  channel by the weighted rule ``C = (C_a |C_a − ½| + C_b |C_b − ½|) /
  (|C_a − ½| + |C_b − ½|)`` (½ where both are neutral), the rule used for colour
  fusion in DenseFuse/U2Fusion-style code: the more saturated source wins.

Sizes: every size is accepted. The sources are padded (reflect) up to a multiple
of ``pad_multiple`` (``None`` -> the network's ``size_divisor`` attribute, else 1:
a network of stride-1 same-padded convolutions needs no padding) and the result is
cropped back.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._checks import check_image, check_same_shape
from ..datasets.io import load_image, rgb_to_ycrcb, ycrcb_to_rgb
from .tiling import fuse_tiled

Normalize = Literal["none", "minmax"]


# ----------------------------------------------------------------------------- networks
def _build_from_config(config: str | os.PathLike[str]) -> nn.Module:
    """F alone, built from a config file's ``model.fusion_net`` (or top-level ``fusion_net``).

    The config's ``custom_imports`` are imported (``Config.fromfile``), so the types
    of a project's package register before F is built. Only F is built here, for F's
    weights; a tool that needs the whole trained model (F with G bound) builds
    ``model`` itself.
    """
    from mmengine.config import Config

    from ..registry import build_module

    cfg = Config.fromfile(os.fspath(config))
    spec: Any = None
    model_cfg = cfg.get("model")
    if isinstance(model_cfg, Mapping) and model_cfg.get("fusion_net") is not None:
        spec = model_cfg["fusion_net"]
    elif cfg.get("fusion_net") is not None:
        spec = cfg["fusion_net"]
    if spec is None:
        raise KeyError(f"config {os.fspath(config)!r} defines neither model.fusion_net nor fusion_net")
    return build_module(spec)


def load_fusion_network(
    checkpoint: str | os.PathLike[str],
    config: str | os.PathLike[str] | None = None,
    device: str | torch.device = "cpu",
    zoo_roots: Iterable[str | os.PathLike[str]] | None = None,
) -> nn.Module:
    """Load a fusion network for inference (``eval()`` mode, on ``device``).

    Args:
        checkpoint: weights file (read with ``weights_only=True``): a state dict, or an
            MMEngine checkpoint holding F under a prefix such as ``'fusion_net.'``
            (see :func:`learnable_fusion_loss.apis.weights.load_fusion_weights`; a
            network's package may register a reader for other formats); or the name
            of a zoo model (:mod:`learnable_fusion_loss.apis.zoo`) where no file of
            that name exists.
        config: optional MMEngine config; ``cfg.model.fusion_net`` (or ``cfg.fusion_net``)
            is built through the ``MODELS`` registry and the weights are loaded into it.
            Without it a registered weight reader must recognise the file and build
            the network from it.
        device: where to run.
        zoo_roots: more zoo folders to search, before the others
            (:func:`learnable_fusion_loss.apis.zoo.zoo_roots`).
    """
    from .weights import load_fusion_weights
    from .zoo import load_zoo_module, zoo_names

    checkpoint = os.fspath(checkpoint)
    if not os.path.isfile(checkpoint):
        roots = list(zoo_roots or ())
        if checkpoint in zoo_names(roots):
            if config is not None:
                raise ValueError(f"zoo model {checkpoint!r} brings its own network; drop the config")
            return load_zoo_module(checkpoint, "fusion_net", device=device, roots=roots)
        raise FileNotFoundError(
            f"checkpoint not found: {checkpoint!r} (neither a file nor a zoo model; zoo: {zoo_names(roots)})"
        )
    model = _build_from_config(config) if config is not None else None
    net = load_fusion_weights(checkpoint, model=model, map_location="cpu")
    return net.to(device).eval()


# ----------------------------------------------------------------------------- tensors
def pad_to_multiple(x: Tensor, multiple: int) -> tuple[Tensor, tuple[int, int]]:
    """Reflect-pad ``[B, C, H, W]`` at the bottom/right to multiples of ``multiple``.

    Returns the padded tensor and the original ``(H, W)`` for :func:`crop_to`.
    Falls back to replicate padding where a side is too short to reflect.
    """
    if multiple < 1:
        raise ValueError(f"pad multiple must be >= 1, got {multiple}")
    height, width = x.shape[-2:]
    pad_h = (-height) % multiple
    pad_w = (-width) % multiple
    if pad_h == 0 and pad_w == 0:
        return x, (height, width)
    mode = "reflect" if pad_h < height and pad_w < width else "replicate"
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode), (height, width)


def crop_to(x: Tensor, size: tuple[int, int]) -> Tensor:
    return x[..., : size[0], : size[1]]


def _pad_multiple_of(net: nn.Module, pad_multiple: int | None) -> int:
    if pad_multiple is not None:
        return int(pad_multiple)
    return int(getattr(net, "size_divisor", 1) or 1)


@torch.inference_mode()
def fuse_tensors(
    net: nn.Module,
    a: Tensor,
    b: Tensor,
    pad_multiple: int | None = None,
    normalize: Normalize = "none",
) -> Tensor:
    """Fuse single-channel batches ``a``, ``b`` ``[B, 1, H, W]`` in ``[0, 1]`` -> ``[B, 1, H, W]``.

    Args:
        net: fusion network ``net(a, b)``; inputs are moved to its device and dtype.
        pad_multiple: pad to this multiple and crop back (``None``: ``net.size_divisor`` or 1).
        normalize: ``"minmax"`` stretches each fused image to ``[0, 1]`` (what the test
            scripts of several public fusion methods do before saving); ``"none"`` only clamps.
    """
    check_image("a", a, channels=1)
    check_image("b", b, channels=1)
    check_same_shape(a=a, b=b)
    if normalize not in ("none", "minmax"):
        raise ValueError(f"normalize must be 'none' or 'minmax', got {normalize!r}")
    param = next(iter(net.parameters()), None)
    device = param.device if param is not None else a.device
    dtype = param.dtype if param is not None else a.dtype
    multiple = _pad_multiple_of(net, pad_multiple)
    pa, size = pad_to_multiple(a.to(device, dtype), multiple)
    pb, _ = pad_to_multiple(b.to(device, dtype), multiple)
    fused = crop_to(net(pa, pb), size)
    if fused.shape != a.shape:
        raise ValueError(
            f"fusion network returned shape {tuple(fused.shape)} for inputs {tuple(a.shape)}"
        )
    return stretch(fused) if normalize == "minmax" else fused.clamp(0.0, 1.0)


def stretch(fused: Tensor) -> Tensor:
    """Each image of ``[B, C, H, W]`` min-max stretched to ``[0, 1]`` (``normalize="minmax"``).

    >>> stretch(torch.tensor([[[[2.0, 3.0, 4.0]]]]))
    tensor([[[[0.0000, 0.5000, 1.0000]]]])
    """
    low = fused.amin(dim=(-2, -1), keepdim=True)
    high = fused.amax(dim=(-2, -1), keepdim=True)
    return ((fused - low) / (high - low).clamp_min(1e-12)).clamp(0.0, 1.0)


def fuse_chroma(chroma_a: Tensor, chroma_b: Tensor) -> Tensor:
    """Weighted chroma fusion ``(C_a |C_a − ½| + C_b |C_b − ½|) / (|C_a − ½| + |C_b − ½|)``.

    Works on any matching shapes (e.g. ``[B, 2, H, W]`` Cr/Cb in ``[0, 1]``); where both
    inputs are neutral (½) the result is ½.
    """
    wa = (chroma_a - 0.5).abs()
    wb = (chroma_b - 0.5).abs()
    total = wa + wb
    mixed = (chroma_a * wa + chroma_b * wb) / torch.where(total > 0, total, 1.0)
    return torch.where(total > 0, mixed, torch.full_like(mixed, 0.5))


def fuse_images(
    net: nn.Module,
    a: Tensor,
    b: Tensor,
    pad_multiple: int | None = None,
    normalize: Normalize = "none",
    tile: int | None = None,
    overlap: int = 32,
) -> Tensor:
    """Fuse two images ``[C, H, W]`` (or ``[B, C, H, W]``), ``C`` 1 or 3, in ``[0, 1]``.

    Returns ``[1 or 3, H, W]`` (or batched): grey when both sources are grey, RGB
    otherwise (see the module docstring for the colour rules). ``tile``: fuse the
    luminance in ``tile``-pixel cores with ``overlap`` pixels of context
    (:func:`~learnable_fusion_loss.apis.fuse_tiled`: bounded memory; not the same
    result as one pass for a network with global attention).
    """
    batched = a.ndim == 4
    a4 = a if batched else a.unsqueeze(0)
    b4 = b if batched else b.unsqueeze(0)
    check_image("a", a4, channels=None)
    check_image("b", b4, channels=None)
    for name, x in (("a", a4), ("b", b4)):
        if x.shape[1] not in (1, 3):
            raise ValueError(f"{name} must have 1 or 3 channels, got {x.shape[1]}")
    if a4.shape[-2:] != b4.shape[-2:] or a4.shape[0] != b4.shape[0]:
        raise ValueError(f"size mismatch: a is {tuple(a4.shape)}, b is {tuple(b4.shape)}")
    ycc_a = rgb_to_ycrcb(a4) if a4.shape[1] == 3 else None
    ycc_b = rgb_to_ycrcb(b4) if b4.shape[1] == 3 else None
    ya = ycc_a[:, :1] if ycc_a is not None else a4
    yb = ycc_b[:, :1] if ycc_b is not None else b4
    if tile is None:
        fused_y = fuse_tensors(net, ya, yb, pad_multiple=pad_multiple, normalize=normalize)
    else:
        fused_y = fuse_tiled(net, ya, yb, tile, overlap, pad_multiple=pad_multiple, normalize=normalize)
    fused_y = fused_y.to(device=a4.device, dtype=a4.dtype)
    if ycc_a is None and ycc_b is None:
        out = fused_y
    else:
        if ycc_a is not None and ycc_b is not None:
            chroma = fuse_chroma(ycc_a[:, 1:], ycc_b[:, 1:])
        else:
            chroma = (ycc_a if ycc_a is not None else ycc_b)[:, 1:]  # type: ignore[index]
        out = ycrcb_to_rgb(torch.cat([fused_y, chroma.to(fused_y)], dim=1))
    return out if batched else out[0]


def fuse_files(
    net: nn.Module,
    path_a: str | os.PathLike[str],
    path_b: str | os.PathLike[str],
    pad_multiple: int | None = None,
    normalize: Normalize = "none",
) -> Tensor:
    """Read two image files and fuse them (see :func:`fuse_images`); ``[1 or 3, H, W]``.

    Raises:
        learnable_fusion_loss.datasets.ImageReadError: a file cannot be decoded.
        ValueError: the two images differ in size (the message names both files).
    """
    a = load_image(path_a)
    b = load_image(path_b)
    if a.shape[-2:] != b.shape[-2:]:
        # Full paths and roles: the two files of a pair usually share their name.
        raise ValueError(
            f"size mismatch: source a (IR) {str(Path(path_a))!r} is {a.shape[-1]}x{a.shape[-2]}, "
            f"source b (VIS) {str(Path(path_b))!r} is {b.shape[-1]}x{b.shape[-2]} (W x H)"
        )
    return fuse_images(net, a, b, pad_multiple=pad_multiple, normalize=normalize)


__all__ = [
    "Normalize",
    "crop_to",
    "fuse_chroma",
    "fuse_files",
    "fuse_images",
    "fuse_tensors",
    "load_fusion_network",
    "pad_to_multiple",
]
