"""The learnable loss, the fusion loss terms and a per-pixel weighted reconstruction loss."""

from .learnable import LearnableFusionLoss, LearnableLoss, LossOutput
from .pixel import PIXEL_BASES, PixelWeightedLoss, pixel_error
from .terms import fusion_loss, gradient_loss, intensity_loss, sobel

__all__ = [
    "LearnableLoss",
    "LearnableFusionLoss",
    "LossOutput",
    "PIXEL_BASES",
    "PixelWeightedLoss",
    "pixel_error",
    "fusion_loss",
    "gradient_loss",
    "intensity_loss",
    "sobel",
]
