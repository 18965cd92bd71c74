"""Fusion loss terms and the learnable loss."""

from .learnable import LearnableFusionLoss, LearnableLoss, LossOutput
from .terms import fusion_loss, gradient_loss, intensity_loss, sobel

__all__ = [
    "LearnableLoss",
    "LearnableFusionLoss",
    "LossOutput",
    "fusion_loss",
    "gradient_loss",
    "intensity_loss",
    "sobel",
]
