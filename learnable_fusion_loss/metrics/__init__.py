"""Image-fusion quality metrics (EN, SD, SF, AG, MI, SCD, VIF, Qabf, Nabf, SSIM, MS-SSIM, PSNR, CC),
batched and vectorised in torch (CPU and GPU).

Every metric is computed the way the field's common Python evaluators compute it:
on **8-bit grey levels**, i.e. an image in ``[0, 1]`` is mapped to ``round(255 · x)``
(what those evaluators see when they read the saved ``uint8`` file), and the
arithmetic runs in float64 (their numpy arithmetic). One exception, for speed:
Qabf and Nabf make every comparison exactly, on integer squared Sobel strengths,
but evaluate Qabf's smooth parts (sqrt, atan, sigmoids) and Nabf's edge weights in
float32 with float64 sums, which moves them by ~1e-8 relative (see :mod:`.gradient`).
The reference conventions are

* the evaluator released with CDDFuse (``Zhaozixiang1228/MMIF-CDDFuse``,
  ``utils/Evaluator.py``; the same file is used by DDFM and EMMA) for EN, SD, SF,
  AG, MI, SCD, VIF, Qabf, SSIM, PSNR and CC;
* the evaluator released by Bai et al. (CVPR 2025; ``Evaluator.py`` of their code):
  the same EN, SF, SCD and Qabf, VIF from ``sewar.full_ref.vifp`` (the same
  pixel-domain multi-scale VIF) and SSIM on ``uint8`` images;
* Nabf: B. K. Shreyamsha Kumar's modified fusion-artifact measure as in the MATLAB
  ``analysis_nabf.m`` of Tang et al.'s evaluation code and its common Python port
  (Sobel/8 with mirrored borders, ``Td = 2``, ``Lg = 1.5``);
* MS-SSIM: the ``pytorch_msssim`` convention used by the Python fusion evaluators
  (Gaussian window 11 / σ 1.5, K = (0.01, 0.03), data range 255, five scales with
  weights ``(0.0448, 0.2856, 0.3001, 0.2363, 0.1333)``, 2×2 average pooling with
  zero padding of odd sides, ReLU on every scale's term).

Two-source conventions
----------------------
Metrics that compare the fused image with each source (MI, VIF, SSIM, MS-SSIM)
are reported either as the **mean** over the two sources or as their **sum**:

* ``convention="mean"`` — Bai et al. (CVPR 2025; their released ``Evaluator.py``
  averages VIF and SSIM over the two sources); here MI and MS-SSIM are averaged too.
* ``convention="sum"`` — CDDFuse (CVPR 2023), DDFM (ICCV 2023), EMMA (CVPR 2024)
  and every paper that uses the CDDFuse evaluator: MI, VIF and SSIM are
  summed (so SSIM lies in ``[-2, 2]``, e.g. "SSIM 1.03" on TNO); MS-SSIM is summed
  as well, as the Python evaluators derived from Tang et al.'s code do.

Either way CC is the mean of the two correlations and PSNR uses the mean of the
two MSEs (both evaluators do), SCD is by definition the sum of two correlations,
and Qabf/Nabf are joint measures. So ``sum`` = 2 × ``mean`` for MI, VIF, SSIM and
MS-SSIM and the two conventions agree on everything else.

Details that matter for exactness (all documented at the functions):
MI uses the 256-level joint histogram of the grey values and natural logarithms
(``sklearn.metrics.mutual_info_score``, nats); EN uses ``log2``; SD is the
population standard deviation; AG uses one-sided differences at the border
(``np.gradient``); SSIM is scikit-image's default (7×7 uniform window, sample
covariance, data range 255); PSNR (CDDFuse) takes ``max(F)`` as the peak; VIF
returns 1 where the reference has no variance anywhere (CDDFuse; sewar gives NaN).
On 8-bit levels :func:`fusion_metrics` takes CC, SCD, SD and PSNR from exact integer
pixel moments, shared by the four (see ``IntegerMoments``). On CPU, VIF, SSIM and
MS-SSIM filter with the compiled kernels of :mod:`.native` when a C compiler is
there (the same sums in another order), else with banded GEMMs in torch.

Why not torchmetrics or kornia (measured by ``benchmarks/metric_libraries.py``):
torchmetrics' VIF is the same vifp but ~70× slower on CPU; its SSIM and MS-SSIM,
and kornia's SSIM, follow other window and border conventions (0.4–5 % from the
evaluators); its MI is sklearn's in float32 and slower; ``pearson_corrcoef`` gives the
same CC (and SCD), which here come from the integer moments shared with SD and
PSNR. EN, SF, AG (``np.gradient``), Qabf, Nabf and the evaluators' PSNR (peak
``max(F)``) have no equivalent there.

Colour fused images are compared through their BT.601 luma ``0.299 R + 0.587 G +
0.114 B`` rounded to grey levels (the evaluators read files with OpenCV's
``COLOR_BGR2GRAY``); see :func:`to_grey_levels`.

Layout
------
:func:`fusion_metrics` computes any subset for a batch of ``(fused, a, b)``
triplets by running the records of :data:`.table.METRIC_TABLE` (one per metric:
name, minimum size, per-source or not, its computation); the one-metric functions
(:func:`entropy`, :func:`vif`, ...) are in :mod:`.standalone`. The cores live by
family: :mod:`.information` (EN, MI, VIF), :mod:`.moments` (SD, CC, SCD, PSNR),
:mod:`.gradient` (SF, AG, Qabf, Nabf), :mod:`.structural` (SSIM, MS-SSIM), on the
filters of :mod:`.filters` and the input conversion of :mod:`.levels`.
:class:`FusionMetric` is the MMEngine evaluator wrapper (registered as
``'FusionMetric'`` in :data:`learnable_fusion_loss.registry.METRICS`).
"""

from . import standalone
from .fusion_metric import FusionMetric
from .levels import to_grey_levels
from .standalone import *  # noqa: F403  (the one-metric functions, standalone.__all__)
from .table import ALL_METRICS, HIGHER_IS_BETTER, PER_SOURCE_METRICS, Convention, fusion_metrics

__all__ = [
    "ALL_METRICS",
    "HIGHER_IS_BETTER",
    "PER_SOURCE_METRICS",
    "Convention",
    "FusionMetric",
    "fusion_metrics",
    "to_grey_levels",
]
__all__ += standalone.__all__
