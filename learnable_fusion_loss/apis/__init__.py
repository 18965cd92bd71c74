"""High-level inference helpers: load a fusion network (from a file or the zoo), fuse tensors or image files."""

from .inference import (
    crop_to,
    fuse_chroma,
    fuse_files,
    fuse_images,
    fuse_tensors,
    load_fusion_network,
    pad_to_multiple,
)
from .tiling import fuse_tiled, tile_windows
from .weights import load_fusion_weights, register_weight_reader

__all__ = [
    "crop_to",
    "fuse_chroma",
    "fuse_files",
    "fuse_images",
    "fuse_tensors",
    "fuse_tiled",
    "tile_windows",
    "load_fusion_network",
    "load_fusion_weights",
    "register_weight_reader",
    "pad_to_multiple",
]
