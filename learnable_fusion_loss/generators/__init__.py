"""Loss generators G: networks that produce the loss's parameters (weight maps)."""

from .simple import ConstantWeights, ConvWeightGenerator

__all__ = ["ConstantWeights", "ConvWeightGenerator"]

try:  # the Restormer LPN lives in its own module
    from .tdfusion_lpn import TDFusionLPN  # noqa: F401

    __all__.append("TDFusionLPN")
except ModuleNotFoundError as error:  # pragma: no cover - only while the module is absent
    if error.name != f"{__name__}.tdfusion_lpn":
        raise
