"""MMEngine evaluator metric for image fusion (``type='FusionMetric'``)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from mmengine.evaluator import BaseMetric
from torch import Tensor

from ..registry import METRICS
from .table import ALL_METRICS, Convention, fusion_metrics

#: Source-key pairs tried, in order, when ``source_keys`` is not given.
DEFAULT_SOURCE_KEYS: tuple[tuple[str, str], ...] = (
    ("source_a", "source_b"), ("a", "b"), ("ir", "vi"), ("img_a", "img_b"))


def _lookup(sample: Any, key: str) -> Any:
    if isinstance(sample, Mapping):
        return sample.get(key)
    getter = getattr(sample, "get", None)  # mmengine BaseDataElement
    if callable(getter):
        return getter(key, None)
    return getattr(sample, key, None)


def _keys_of(sample: Any) -> list[str]:
    if isinstance(sample, Mapping):
        return [str(k) for k in sample]
    keys = getattr(sample, "keys", None)
    return [str(k) for k in keys()] if callable(keys) else sorted(vars(sample))


def _as_batch(name: str, value: Any) -> Tensor:
    if not isinstance(value, Tensor):
        raise TypeError(f"data sample field {name!r} must be a tensor, got {type(value).__name__}")
    if value.ndim == 2:
        value = value[None]
    if value.ndim == 3:
        value = value[None]
    if value.ndim != 4 or value.shape[0] != 1:
        raise ValueError(
            f"data sample field {name!r} must be one image [C, H, W] (or [H, W] / [1, C, H, W]), "
            f"got shape {tuple(value.shape)}"
        )
    return value.float() if not value.is_floating_point() else value


@METRICS.register_module()
class FusionMetric(BaseMetric):
    """Mean fusion metrics over an evaluation set.

    Each data sample (a dict or an MMEngine data element) must hold the fused image
    and the two sources as tensors ``[C, H, W]`` in ``[0, 1]`` (``C`` 1 or 3, RGB is
    reduced to luma); images may differ in size between samples. Values are the
    per-image metrics of :func:`~learnable_fusion_loss.metrics.fusion_metrics`,
    averaged over the samples (a NaN, e.g. SCD of a fused image equal to one
    source, propagates into the mean rather than being dropped).

    Args:
        metrics: metric names (default: all of :data:`ALL_METRICS`).
        convention: ``"mean"`` (Bai et al., CVPR 2025) or ``"sum"`` (CDDFuse) over the two sources.
        fused_key: field holding the fused image.
        source_keys: fields holding the two sources; by default the first present
            pair of ``("source_a", "source_b")`` (a paired sample), ``("a", "b")`` (the
            model's test outputs), ``("ir", "vi")``, ``("img_a", "img_b")``.
        quantize: evaluate on rounded 8-bit grey levels (what a saved file holds).
        collect_device, prefix, collect_dir: as :class:`mmengine.evaluator.BaseMetric`.
            Results are reported as ``"fusion/EN"`` etc. unless ``prefix`` says otherwise.
    """

    default_prefix = "fusion"

    def __init__(
        self,
        metrics: Sequence[str] = ALL_METRICS,
        convention: Convention = "mean",
        fused_key: str = "fused",
        source_keys: Sequence[str] | None = None,
        quantize: bool = True,
        collect_device: str = "cpu",
        prefix: str | None = None,
        collect_dir: str | None = None,
    ) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix, collect_dir=collect_dir)
        if convention not in ("mean", "sum"):
            raise ValueError(f"convention must be 'mean' or 'sum', got {convention!r}")
        if source_keys is not None and len(source_keys) != 2:
            raise ValueError(f"source_keys must name two fields, got {source_keys!r}")
        self.metrics = tuple(metrics)
        # Validate the names now rather than at the first evaluation.
        unknown = [m for m in self.metrics
                   if str(m).upper().replace("-", "_") not in {n.upper() for n in ALL_METRICS}]
        if unknown:
            raise ValueError(f"unknown metric(s) {unknown}; choose from {list(ALL_METRICS)}")
        self.convention = convention
        self.fused_key = fused_key
        self.source_keys = tuple(source_keys) if source_keys is not None else None
        self.quantize = quantize

    def _sources(self, sample: Any) -> tuple[tuple[str, str], Any, Any]:
        candidates = (self.source_keys,) if self.source_keys else DEFAULT_SOURCE_KEYS
        for first, second in candidates:
            a, b = _lookup(sample, first), _lookup(sample, second)
            if a is not None and b is not None:
                return (first, second), a, b
        raise KeyError(
            f"data sample has no source pair {[list(c) for c in candidates]}; "
            f"its fields are {_keys_of(sample)} (set FusionMetric(source_keys=...))"
        )

    def process(self, data_batch: Any, data_samples: Sequence[Any]) -> None:
        for sample in data_samples:
            fused = _lookup(sample, self.fused_key)
            if fused is None:
                raise KeyError(
                    f"data sample has no fused image {self.fused_key!r}; its fields are "
                    f"{_keys_of(sample)} (set FusionMetric(fused_key=...))"
                )
            (key_a, key_b), a, b = self._sources(sample)
            fused_t = _as_batch(self.fused_key, fused)
            device = fused_t.device
            values = fusion_metrics(
                fused_t,
                _as_batch(key_a, a).to(device),
                _as_batch(key_b, b).to(device),
                metrics=self.metrics,
                convention=self.convention,
                quantize=self.quantize,
            )
            self.results.append({name: float(v[0]) for name, v in values.items()})

    def compute_metrics(self, results: list) -> dict[str, float]:
        if not results:
            raise ValueError("FusionMetric got no samples to evaluate")
        names = list(results[0])
        means = {}
        for name in names:
            column = torch.tensor([r[name] for r in results], dtype=torch.float64)
            means[name] = float(column.mean())
        means["count"] = float(len(results))
        if any(math.isnan(v) for v in means.values()):
            from mmengine.logging import print_log

            nan_names = [n for n, v in means.items() if math.isnan(v)]
            print_log(f"FusionMetric: NaN mean for {nan_names} (some images are undefined)",
                      logger="current")
        return means
