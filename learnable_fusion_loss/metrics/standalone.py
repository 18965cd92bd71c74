"""Each metric on its own: one public function per record of :data:`.table.METRIC_TABLE`.

They take images in ``[0, 1]`` (``[B, 1|3, H, W]``; RGB is reduced to luma), return
float64 ``[B]``, and go through :func:`.table.prepare`, which converts them to grey
levels, checks their shapes and the record's minimum size, so their errors read
like :func:`.table.fusion_metrics`'s. The examples use a horizontal ramp ``a`` and
its transpose ``b``.
"""

from __future__ import annotations

import torch  # noqa: F401  (the examples use it)
from torch import Tensor

from .gradient import ag_levels, nabf_levels, qabf_levels, sf_levels
from .information import entropy_levels, mi_levels, vif_levels
from .moments import pearson, psnr_levels, scd_levels, sd_levels
from .structural import ms_ssim_levels, ssim_levels
from .table import prepare


# ----------------------------------------------------------------------------- one image
def entropy(x: Tensor, quantize: bool = True) -> Tensor:
    """EN: Shannon entropy (bits) of the 256-bin grey-level histogram. ``[B, 1|3, H, W] -> [B]``.

    >>> entropy(torch.tensor([0.0, 1.0]).repeat(1, 1, 4, 4))  # two levels, equally often
    tensor([1.], dtype=torch.float64)
    """
    (levels,) = prepare("EN", quantize, x=x)
    return entropy_levels(levels)


def standard_deviation(x: Tensor, quantize: bool = True) -> Tensor:
    """SD: population standard deviation of the grey levels (``np.std``). ``-> [B]``.

    >>> standard_deviation(torch.tensor([0.0, 1.0]).repeat(1, 1, 4, 4))
    tensor([127.5000], dtype=torch.float64)
    """
    (levels,) = prepare("SD", quantize, x=x)
    return sd_levels(levels)


def spatial_frequency(x: Tensor, quantize: bool = True) -> Tensor:
    """SF: ``sqrt(mean(Δ_row²) + mean(Δ_col²))`` of horizontal/vertical neighbour differences.

    >>> spatial_frequency(torch.tensor([0.0, 1.0]).repeat(1, 1, 4, 4))  # only rows change
    tensor([255.], dtype=torch.float64)
    """
    (levels,) = prepare("SF", quantize, x=x)
    return sf_levels(levels)


def average_gradient(x: Tensor, quantize: bool = True) -> Tensor:
    """AG: mean of ``sqrt((G_x² + G_y²) / 2)`` with ``np.gradient`` differences (CDDFuse).

    Needs at least 2×2 pixels.

    >>> average_gradient(torch.linspace(0, 1, 256).expand(1, 1, 4, 256))  # one level a step
    tensor([0.7071], dtype=torch.float64)
    """
    (levels,) = prepare("AG", quantize, x=x)
    return ag_levels(levels)


# ----------------------------------------------------------------------------- image pairs
def mutual_information(x: Tensor, y: Tensor, quantize: bool = True) -> Tensor:
    """MI (nats) of the 256×256 joint grey-level histogram (``sklearn`` ``mutual_info_score``).

    >>> x = torch.tensor([0.0, 1.0]).repeat(1, 1, 4, 4)
    >>> mutual_information(x, x)  # = the entropy in nats, log 2
    tensor([0.6931], dtype=torch.float64)
    """
    lx, ly = prepare("MI", quantize, x=x, y=y)
    return mi_levels(lx, ly)


def correlation_coefficient(x: Tensor, y: Tensor, quantize: bool = True) -> Tensor:
    """Pearson correlation of the pixels of each pair (MATLAB ``corr2``). ``-> [B]``.

    >>> x = torch.tensor([0.0, 1.0]).repeat(1, 1, 4, 4)
    >>> correlation_coefficient(x, 1 - x)
    tensor([-1.], dtype=torch.float64)
    """
    lx, ly = prepare("CC", quantize, x=x, y=y)
    return pearson(lx, ly).flatten(1).sum(-1)


def vif(reference: Tensor, distorted: Tensor, quantize: bool = True) -> Tensor:
    """VIF: pixel-domain multi-scale VIF (``sewar.full_ref.vifp``, σ²_n = 2). ``-> [B]``.

    Not symmetric: the fusion VIF uses each source as ``reference`` and the fused image
    as ``distorted``. Returns 1 where the reference is flat everywhere (CDDFuse's rule).
    Needs at least 41×41 pixels.

    >>> a = torch.linspace(0, 1, 64).expand(1, 1, 64, 64)
    >>> vif(a, a).round(decimals=4), vif(a, (a + a.mT) / 2).round(decimals=4)
    (tensor([1.], dtype=torch.float64), tensor([0.1491], dtype=torch.float64))
    """
    lr, ld = prepare("VIF", quantize, reference=reference, distorted=distorted)
    return vif_levels(lr, ld)[:, 0]


def ssim(x: Tensor, y: Tensor, quantize: bool = True, data_range: float = 255.0) -> Tensor:
    """SSIM as scikit-image's ``structural_similarity`` defaults (7×7 uniform window,
    sample covariance, K = (0.01, 0.03)) on grey levels with ``data_range`` 255. ``-> [B]``.

    Needs at least 7×7 pixels.

    >>> a = torch.linspace(0, 1, 64).expand(1, 1, 64, 64)
    >>> ssim(a, a), ssim(a, (a + a.mT) / 2).round(decimals=4)
    (tensor([1.], dtype=torch.float64), tensor([0.7084], dtype=torch.float64))
    """
    lx, ly = prepare("SSIM", quantize, x=x, y=y)
    return ssim_levels(lx, ly, data_range, integer_levels=quantize)[:, 0]


def ms_ssim(x: Tensor, y: Tensor, quantize: bool = True, data_range: float = 255.0) -> Tensor:
    """MS-SSIM with ``pytorch_msssim``'s conventions (see :mod:`learnable_fusion_loss.metrics`). ``-> [B]``.

    Needs the shorter side to exceed 160 pixels (four 2× reductions of an 11-tap window).

    >>> a = torch.linspace(0, 1, 161).expand(1, 1, 161, 161)
    >>> ms_ssim(a, (a + a.mT) / 2).round(decimals=4)
    tensor([0.7754], dtype=torch.float64)
    """
    lx, ly = prepare("MS_SSIM", quantize, x=x, y=y)
    return ms_ssim_levels(lx, ly, data_range)[:, 0]


# ----------------------------------------------------------------------------- fusion triplets
def scd(fused: Tensor, a: Tensor, b: Tensor, quantize: bool = True) -> Tensor:
    """SCD: ``corr(F − B, A) + corr(F − A, B)``. NaN where a difference image is constant
    (e.g. ``F == A``), as in the evaluators. ``-> [B]``.

    >>> a = torch.linspace(0, 1, 64).expand(1, 1, 64, 64)
    >>> scd((a + a.mT) / 2, a, a.mT).round(decimals=4)
    tensor([1.4134], dtype=torch.float64)
    """
    return scd_levels(*prepare("SCD", quantize, fused=fused, a=a, b=b))


def qabf(fused: Tensor, a: Tensor, b: Tensor, quantize: bool = True) -> Tensor:
    """Qabf (Xydeas–Petrović edge preservation), the evaluators' constants
    (Tg 0.9994, kg −15, Dg 0.5, Ta 0.9879, ka −22, Da 0.8; zero-padded Sobel). ``-> [B]``.

    >>> a = torch.linspace(0, 1, 64).expand(1, 1, 64, 64)
    >>> qabf((a + a.mT) / 2, a, a.mT).round(decimals=4)
    tensor([0.3982], dtype=torch.float64)
    """
    return qabf_levels(*prepare("Qabf", quantize, fused=fused, a=a, b=b))


def nabf(fused: Tensor, a: Tensor, b: Tensor, quantize: bool = True) -> Tensor:
    """Nabf: Kumar's modified fusion-artifact measure (lower is better). ``-> [B]``.

    Needs at least 2×2 pixels (mirrored borders).

    >>> a = torch.linspace(0, 1, 64).expand(1, 1, 64, 64)
    >>> nabf((a + a.mT) / 2, a, a.mT).round(decimals=4)
    tensor([0.], dtype=torch.float64)
    """
    return nabf_levels(*prepare("Nabf", quantize, fused=fused, a=a, b=b))


def fusion_psnr(fused: Tensor, a: Tensor, b: Tensor, quantize: bool = True) -> Tensor:
    """PSNR (CDDFuse): ``10 log10(max(F)² / ((MSE(A,F) + MSE(B,F)) / 2))`` in dB. ``-> [B]``.

    >>> a = torch.linspace(0, 1, 64).expand(1, 1, 64, 64)
    >>> fusion_psnr((a + a.mT) / 2, a, a.mT).round(decimals=4)
    tensor([13.6607], dtype=torch.float64)
    """
    return psnr_levels(*prepare("PSNR", quantize, fused=fused, a=a, b=b))


__all__ = [
    "average_gradient",
    "correlation_coefficient",
    "entropy",
    "fusion_psnr",
    "ms_ssim",
    "mutual_information",
    "nabf",
    "qabf",
    "scd",
    "spatial_frequency",
    "ssim",
    "standard_deviation",
    "vif",
]
