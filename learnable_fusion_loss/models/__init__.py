"""Fusion networks F (and the fast Restormer blocks they share with the LPN)."""

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
