"""Per-sample pieces of a collated batch, for test outputs (targets, ids, file names)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor

__all__ = ["per_sample_fields", "sample_of", "split_target"]


def sample_of(value: Any, i: int) -> Any:
    """Entry ``i`` of a batched tensor, list or dict of them (detached, on the CPU)."""
    if isinstance(value, (Tensor, list, tuple)):
        item = value[i]
        return item.detach().cpu() if isinstance(item, Tensor) else item
    if isinstance(value, Mapping):
        return {k: sample_of(v, i) for k, v in value.items()}
    return value


def split_target(target: Any, size: int) -> list[Any] | None:
    """Per-sample targets: tensors/lists indexed along dim 0; anything else repeated."""
    if target is None:
        return None
    if isinstance(target, Tensor) and target.ndim > 0 and target.shape[0] == size:
        return [target[i].detach().cpu() for i in range(size)]
    if isinstance(target, (list, tuple)) and len(target) == size:
        return [t.detach().cpu() if isinstance(t, Tensor) else t for t in target]
    if isinstance(target, Mapping):
        return [_target_of_sample(target, i, size) for i in range(size)]
    return [target] * size


def _target_of_sample(target: Mapping, i: int, size: int) -> dict[str, Any]:
    """One sample of a dict target; ultralytics-style ``batch_idx`` rows are filtered."""
    if "batch_idx" in target and isinstance(target["batch_idx"], Tensor):
        rows = target["batch_idx"].view(-1) == i
        count = int(target["batch_idx"].numel())
        out: dict[str, Any] = {}
        for key, value in target.items():
            if isinstance(value, Tensor) and value.ndim > 0 and value.shape[0] == count:
                out[key] = value[rows].detach().cpu()
            else:
                out[key] = sample_of(value, i) if _is_per_sample(value, size) else value
        return out
    return {k: (sample_of(v, i) if _is_per_sample(v, size) else v) for k, v in target.items()}


def _is_per_sample(value: Any, size: int) -> bool:
    if isinstance(value, Tensor):
        return value.ndim > 0 and value.shape[0] == size
    return isinstance(value, (list, tuple)) and len(value) == size


def per_sample_fields(data: Any, size: int, exclude: set[str]) -> list[dict[str, Any]]:
    """Non-image per-sample fields (ids, file names, original sizes) of a batch dict."""
    fields: list[dict[str, Any]] = [{} for _ in range(size)]
    if not isinstance(data, Mapping):
        return fields
    for key, value in data.items():
        if key in exclude or isinstance(value, Tensor) and value.ndim >= 3:
            continue
        if _is_per_sample(value, size):
            for i in range(size):
                fields[i][key] = sample_of(value, i)
    return fields
