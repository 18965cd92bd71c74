"""Loss generators G: networks that produce the loss's parameters (weight maps).

Generic ones only; a method's own generator lives in its project's package and
registers in :data:`learnable_fusion_loss.registry.MODELS` when that is imported.
"""

from .pixel import PixelWeightGenerator
from .simple import ConstantWeights, ConvWeightGenerator

__all__ = ["ConstantWeights", "ConvWeightGenerator", "PixelWeightGenerator"]
