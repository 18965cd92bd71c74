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

__all__ = [
    "crop_to",
    "fuse_chroma",
    "fuse_files",
    "fuse_images",
    "fuse_tensors",
    "load_fusion_network",
    "pad_to_multiple",
]
