"""Loss generators G: networks that produce the loss's parameters (weight maps)."""

from .simple import ConstantWeights, ConvWeightGenerator
from .tdfusion_lpn import TDFusionLPN

__all__ = ["ConstantWeights", "ConvWeightGenerator", "TDFusionLPN"]
