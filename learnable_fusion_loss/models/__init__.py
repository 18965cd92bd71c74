"""Fusion networks F (built from the Restormer blocks of :mod:`learnable_fusion_loss.nn`)."""

from .convert import (
    convert_official_state_dict,
    load_fusion_checkpoint,
    load_official_state_dict,
    official_layout,
)
from .refusion import AttentionFusionModule, ReFusionNet

__all__ = [
    "AttentionFusionModule",
    "ReFusionNet",
    "convert_official_state_dict",
    "load_fusion_checkpoint",
    "load_official_state_dict",
    "official_layout",
]
