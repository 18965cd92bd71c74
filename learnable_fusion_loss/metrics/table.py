"""The metric table: one :class:`Metric` record per metric, run by :func:`fusion_metrics`.

A record says what :func:`fusion_metrics` needs to know about a metric: its name,
the smallest image it applies to, whether it reads the sources, whether it is
reported per source (mean or sum over the two, see :mod:`learnable_fusion_loss.metrics`)
and which way is better. Its ``compute`` gets the batch's grey levels
(:class:`FusionInputs`). Adding a metric is one core function and one record in
:data:`METRIC_TABLE`; :data:`ALL_METRICS`, :data:`HIGHER_IS_BETTER` and
:data:`PER_SOURCE_METRICS` follow from the table. The size checks live here only:
:func:`fusion_metrics` and the one-metric functions of :mod:`.standalone` both go
through :meth:`Metric.check_size` (via :func:`prepare` for the latter).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from .._checks import check_same_shape
from .gradient import ag_levels, nabf_levels, qabf_levels, sf_levels
from .information import entropy_levels, mi_levels, vif_levels
from .levels import to_grey_levels
from .moments import IntegerMoments, pearson, psnr_from_mse, psnr_levels, scd_levels, sd_levels
from .structural import ms_ssim_levels, ssim_levels

Convention = Literal["mean", "sum"]


class FusionInputs:
    """The grey levels of one :func:`fusion_metrics` call, shared by every metric it computes.

    ``fused`` is ``[B, 1, H, W]``; ``a``, ``b`` and ``sources`` (``[B, 2, H, W]``,
    ``a`` then ``b``) are ``None`` when only fused-only metrics were asked for.

    >>> x = FusionInputs(torch.full((1, 1, 4, 4), 7.0), None, None, quantize=True)
    >>> x.fused_channel, x.moments.std(x.fused_channel)
    (0, tensor([0.], dtype=torch.float64))
    """

    def __init__(self, fused: Tensor, a: Tensor | None, b: Tensor | None, quantize: bool) -> None:
        self.fused, self.a, self.b, self.quantize = fused, a, b, quantize
        self.sources = None if a is None or b is None else torch.cat([a, b], dim=1)
        self._moments: IntegerMoments | None = None
        self._moments_done = False

    @property
    def fused_channel(self) -> int:
        """The fused map's channel in :attr:`moments` (after ``a`` and ``b`` when those are there)."""
        return 0 if self.sources is None else 2

    @property
    def moments(self) -> IntegerMoments | None:
        """Exact integer moments of ``(a, b, fused)`` (or ``fused`` alone), built on first
        use and shared by SD, SCD, PSNR and CC; ``None`` where they are not exact
        (continuous levels, or images too large for int64)."""
        if not self._moments_done:
            self._moments_done = True
            if IntegerMoments.applies(self.fused, self.quantize):
                maps = self.fused if self.sources is None else torch.cat([self.sources, self.fused], dim=1)
                self._moments = IntegerMoments(maps)
        return self._moments


@dataclass(frozen=True)
class Metric:
    """One row of :data:`METRIC_TABLE`.

    Attributes:
        name: the result key (``"MS_SSIM"``); messages write it with a hyphen.
        compute: grey levels -> ``[B]``, or ``[B, 2]`` (one value per source) when
            ``per_source``.
        min_size: the shortest image side the metric needs (its windows or differences).
        needs_sources: ``False`` for the metrics of the fused image alone.
        per_source: the value compares the fused image with each source and is reduced
            by the convention (mean or sum).
        higher_is_better: ``False`` for measures of artifacts (Nabf).

    >>> m = Metric("EN", lambda x: entropy_levels(x.fused), needs_sources=False)
    >>> m.label, m.min_size, m.per_source
    ('EN', 1, False)
    """

    name: str
    compute: Callable[[FusionInputs], Tensor]
    min_size: int = 1
    needs_sources: bool = True
    per_source: bool = False
    higher_is_better: bool = True

    @property
    def label(self) -> str:
        """The name as messages and papers write it (``"MS-SSIM"``)."""
        return self.name.replace("_", "-")

    def check_size(self, name: str, levels: Tensor) -> None:
        """Raise ``ValueError`` naming the metric and both sizes if ``levels`` is too small.

        >>> METRIC_BY_NAME["VIF"].check_size("fused", torch.zeros(1, 1, 40, 64))
        Traceback (most recent call last):
            ...
        ValueError: VIF needs images of at least 41x41 pixels, fused is 64x40 (W x H)
        """
        if min(levels.shape[-2:]) < self.min_size:
            raise ValueError(
                f"{self.label} needs images of at least {self.min_size}x{self.min_size} pixels, "
                f"{name} is {levels.shape[-1]}x{levels.shape[-2]} (W x H)"
            )


# ----------------------------------------------------------------------------- per-metric computes
# SD, SCD, PSNR and CC take the exact integer moments where they apply, else the
# two-pass float64 sums (the same values up to rounding, see IntegerMoments).
def _sd(x: FusionInputs) -> Tensor:
    m = x.moments
    return sd_levels(x.fused) if m is None else m.std(x.fused_channel)


def _scd(x: FusionInputs) -> Tensor:
    m = x.moments  # channels 0 = a, 1 = b, 2 = fused
    if m is None:
        return scd_levels(x.fused, x.a, x.b)
    return m.pearson({0: 1}, {2: 1, 1: -1}) + m.pearson({1: 1}, {2: 1, 0: -1})


def _psnr(x: FusionInputs) -> Tensor:
    m = x.moments
    if m is None:
        return psnr_levels(x.fused, x.a, x.b)
    return psnr_from_mse((m.mean_square({0: 1, 2: -1}) + m.mean_square({1: 1, 2: -1})) / 2, x.fused)


def _cc(x: FusionInputs) -> Tensor:
    m = x.moments
    if m is None:
        return pearson(x.sources, x.fused).mean(-1)
    return (m.pearson({0: 1}, {2: 1}) + m.pearson({1: 1}, {2: 1})) / 2


def _mi(x: FusionInputs) -> Tensor:
    return torch.stack([mi_levels(x.a, x.fused), mi_levels(x.b, x.fused)], -1)


#: Every metric, in the usual reporting order (the order of :data:`ALL_METRICS`).
METRIC_TABLE: tuple[Metric, ...] = (
    Metric("EN", lambda x: entropy_levels(x.fused), needs_sources=False),
    Metric("SD", _sd, needs_sources=False),
    Metric("SF", lambda x: sf_levels(x.fused), needs_sources=False),
    Metric("AG", lambda x: ag_levels(x.fused), min_size=2, needs_sources=False),  # np.gradient
    Metric("MI", _mi, per_source=True),
    Metric("SCD", _scd),
    # four scales: a 17-tap window, three 2x reductions, then a 3-tap window
    Metric("VIF", lambda x: vif_levels(x.sources, x.fused), min_size=41, per_source=True),
    Metric("Qabf", lambda x: qabf_levels(x.fused, x.a, x.b)),
    Metric("Nabf", lambda x: nabf_levels(x.fused, x.a, x.b), min_size=2, higher_is_better=False),  # mirrored Sobel
    Metric("SSIM", lambda x: ssim_levels(x.sources, x.fused, integer_levels=x.quantize), min_size=7, per_source=True),
    # four 2x reductions of an 11-tap window
    Metric("MS_SSIM", lambda x: ms_ssim_levels(x.sources, x.fused), min_size=161, per_source=True),
    Metric("PSNR", _psnr),
    Metric("CC", _cc),
)
METRIC_BY_NAME: dict[str, Metric] = {m.name: m for m in METRIC_TABLE}

#: Every metric :func:`fusion_metrics` knows, in the usual reporting order.
ALL_METRICS: tuple[str, ...] = tuple(m.name for m in METRIC_TABLE)
#: Whether a larger value is better (Nabf measures artifacts: lower is better).
HIGHER_IS_BETTER: dict[str, bool] = {m.name: m.higher_is_better for m in METRIC_TABLE}
#: Metrics that depend on the two-source convention (mean vs sum over the sources).
PER_SOURCE_METRICS: tuple[str, ...] = tuple(m.name for m in METRIC_TABLE if m.per_source)

# case-insensitive, "MS-SSIM" accepted
_LOOKUP: dict[str, Metric] = {m.name.upper(): m for m in METRIC_TABLE}


def _lookup(name: object) -> Metric:
    key = str(name).upper().replace("-", "_")
    if key not in _LOOKUP:
        raise ValueError(f"unknown metric {name!r}; choose from {list(ALL_METRICS)}")
    return _LOOKUP[key]


def prepare(metric: str, quantize: bool, **images: Tensor) -> list[Tensor]:
    """Grey levels of ``images`` for one metric: converted, same shape, size checked.

    The keyword names are the argument names errors report; the first image's size
    is checked against the record's ``min_size``.

    >>> x = torch.zeros(1, 1, 8, 8)
    >>> [t.shape for t in prepare("SSIM", True, x=x, y=x)]
    [torch.Size([1, 1, 8, 8]), torch.Size([1, 1, 8, 8])]
    >>> prepare("SSIM", True, x=x[..., :6, :], y=x[..., :6, :])
    Traceback (most recent call last):
        ...
    ValueError: SSIM needs images of at least 7x7 pixels, x is 8x6 (W x H)
    """
    levels = {key: to_grey_levels(x, name=key, quantize=quantize) for key, x in images.items()}
    if len(levels) > 1:
        check_same_shape(**levels)
    first = next(iter(levels))
    METRIC_BY_NAME[metric].check_size(first, levels[first])
    return list(levels.values())


def _reduce(per_source: Tensor, convention: Convention) -> Tensor:
    return per_source.sum(-1) if convention == "sum" else per_source.mean(-1)


def fusion_metrics(
    fused: Tensor,
    a: Tensor,
    b: Tensor,
    metrics: Iterable[str] = ALL_METRICS,
    convention: Convention = "mean",
    quantize: bool = True,
) -> dict[str, Tensor]:
    """Compute fusion metrics for a batch of triplets.

    Args:
        fused: fused images ``[B, 1|3, H, W]`` in ``[0, 1]`` (RGB is reduced to luma).
        a, b: the two sources (e.g. IR and VIS), same size.
        metrics: names from :data:`ALL_METRICS` (case-insensitive; ``"MS-SSIM"`` accepted).
        convention: ``"mean"`` (Bai et al., CVPR 2025) or ``"sum"`` (CDDFuse) over the two sources for
            MI, VIF, SSIM and MS-SSIM; see :mod:`learnable_fusion_loss.metrics`.
        quantize: evaluate on rounded 8-bit grey levels (what a saved file holds).

    Returns:
        ``{name: Tensor[B]}`` in float64 on the input's device, in the order asked.

    Raises:
        ValueError: an unknown metric or convention, a bad image (see
            :func:`.to_grey_levels`), sources of another shape, or an image smaller
            than a metric needs (the first such metric in :data:`ALL_METRICS` order).

    >>> a = torch.linspace(0, 1, 64).expand(1, 1, 64, 64)
    >>> b = a.transpose(-1, -2)
    >>> out = fusion_metrics((a + b) / 2, a, b, ["en", "SSIM", "CC"], convention="sum")
    >>> {name: round(float(value), 4) for name, value in out.items()}
    {'EN': 6.7263, 'SSIM': 1.4168, 'CC': 0.7071}
    """
    if convention not in ("mean", "sum"):
        raise ValueError(f"convention must be 'mean' or 'sum', got {convention!r}")
    chosen = [_lookup(name) for name in metrics]
    lf = to_grey_levels(fused, "fused", quantize)
    for metric in METRIC_TABLE:  # fail before any work, on the fused image's size
        if metric in chosen:
            metric.check_size("fused", lf)
    la = lb = None
    if any(metric.needs_sources for metric in chosen):  # else the sources are not read
        la, lb = to_grey_levels(a, "a", quantize), to_grey_levels(b, "b", quantize)
        check_same_shape(fused=lf, a=la, b=lb)
    inputs = FusionInputs(lf, la, lb, quantize)
    results = {}
    for metric in chosen:
        value = metric.compute(inputs)
        results[metric.name] = _reduce(value, convention) if metric.per_source else value
    return results


__all__ = [
    "ALL_METRICS",
    "HIGHER_IS_BETTER",
    "METRIC_BY_NAME",
    "METRIC_TABLE",
    "PER_SOURCE_METRICS",
    "Convention",
    "FusionInputs",
    "Metric",
    "fusion_metrics",
    "prepare",
]
