"""Image-fusion quality metrics (EN, SD, SF, AG, MI, SCD, VIF, Qabf, Nabf, SSIM, MS-SSIM, PSNR, CC).

:func:`fusion_metrics` computes any subset for a batch of ``(fused, a, b)`` triplets
with the conventions of the field's common evaluators (see :mod:`.functional`);
:class:`FusionMetric` is the MMEngine evaluator wrapper (registered as
``'FusionMetric'`` in :data:`learnable_fusion_loss.registry.METRICS`).
"""

from .functional import (
    ALL_METRICS,
    HIGHER_IS_BETTER,
    PER_SOURCE_METRICS,
    Convention,
    average_gradient,
    correlation_coefficient,
    entropy,
    fusion_metrics,
    fusion_psnr,
    ms_ssim,
    mutual_information,
    nabf,
    qabf,
    scd,
    spatial_frequency,
    ssim,
    standard_deviation,
    to_grey_levels,
    vif,
)
from .fusion_metric import FusionMetric

__all__ = [
    "ALL_METRICS",
    "HIGHER_IS_BETTER",
    "PER_SOURCE_METRICS",
    "Convention",
    "FusionMetric",
    "average_gradient",
    "correlation_coefficient",
    "entropy",
    "fusion_metrics",
    "fusion_psnr",
    "ms_ssim",
    "mutual_information",
    "nabf",
    "qabf",
    "scd",
    "spatial_frequency",
    "ssim",
    "standard_deviation",
    "to_grey_levels",
    "vif",
]
