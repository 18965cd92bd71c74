"""High-level inference helpers: load a fusion network, fuse tensors or image files."""

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

__all__ = [
    "crop_to",
    "fuse_chroma",
    "fuse_files",
    "fuse_images",
    "fuse_tensors",
    "fuse_tiled",
    "tile_windows",
    "load_fusion_network",
    "pad_to_multiple",
]
