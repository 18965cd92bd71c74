"""From a collated batch to the model's :class:`FusionBatch`, and back to per-sample outputs.

A batch dict (``collate_paired``, or any collate function) holds the sources, their
task views and the targets *per sample*; ``model.data_keys`` says under which keys
(:data:`DEFAULT_DATA_KEYS`). :func:`read_batch` takes them out, hands the per-sample
targets to the task adapter's codec (:func:`~learnable_fusion_loss.tasks.collate_for`)
for the target of the :class:`FusionBatch`, and keeps them for the test outputs, so the
engine never converts a target itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Union

from torch import Tensor

from ..datasets.keys import (
    RENAMED_KEYS,
    SOURCE_A,
    SOURCE_A_TASK,
    SOURCE_B,
    SOURCE_B_TASK,
    SOURCE_NAMES,
    renamed_message,
)
from ..meta import FusionBatch
from ..tasks.targets import collate_for, split_batch_target, split_for

__all__ = [
    "DEFAULT_DATA_KEYS",
    "BATCH_FIELDS",
    "TargetKey",
    "check_data_keys",
    "data_key_names",
    "read_targets",
    "read_batch",
    "test_outputs",
    "to_cpu",
    "sample_of",
    "per_sample_fields",
]

#: ``target``: one key (its per-sample entries), a list of keys or a ``{name: key}``
#: dict (a dict per sample with an entry of each key). A dict's value may itself be
#: a list or dict spec (nested per-sample dicts: one target per member of a
#: :class:`~learnable_fusion_loss.tasks.multi.MultiTask`).
TargetKey = Union[str, Sequence[str], Mapping[str, Any]]

#: Where :func:`read_batch` finds each field of a collated batch. Detection with
#: ``collate_paired``: ``target=dict(bboxes='gt_bboxes', labels='gt_labels')``.
DEFAULT_DATA_KEYS: dict[str, TargetKey] = {
    "a": SOURCE_A,
    "b": SOURCE_B,
    "target": "gt_sem_seg",
    "task_a": SOURCE_A_TASK,
    "task_b": SOURCE_B_TASK,
}

#: Batch entries that describe the whole batch, not each sample (never a per-sample field).
BATCH_FIELDS = frozenset({SOURCE_NAMES})


def check_data_keys(data_keys: Mapping[str, TargetKey] | None) -> dict[str, TargetKey]:
    """:data:`DEFAULT_DATA_KEYS` updated by ``data_keys`` (unknown fields, old key names refused).

    >>> check_data_keys(dict(a='ir'))
    Traceback (most recent call last):
    ...
    ValueError: data_keys a='ir': sample key 'ir' was renamed 'source_a'
    """
    keys = dict(DEFAULT_DATA_KEYS)
    if data_keys:
        unknown = set(data_keys) - set(DEFAULT_DATA_KEYS)
        if unknown:
            raise ValueError(f"unknown data_keys {sorted(unknown)}; valid: {sorted(DEFAULT_DATA_KEYS)}")
        for field_name in ("a", "b", "task_a", "task_b"):
            value = data_keys.get(field_name)
            if isinstance(value, str) and value in RENAMED_KEYS:
                raise ValueError(f"data_keys {field_name}={value!r}: {renamed_message([value])}")
        keys.update(data_keys)
    return keys


def _target_columns(target_key: TargetKey) -> list[tuple[str, TargetKey]]:
    """``(name, batch key or nested spec)`` of each column of a list or dict ``target`` key."""
    if isinstance(target_key, Mapping):
        return [(str(name), key if isinstance(key, (Mapping, list, tuple)) else str(key))
                for name, key in target_key.items()]
    return [(str(key), str(key)) for key in target_key]


def _batch_keys(target_key: TargetKey) -> list[str]:
    """Every batch key a (possibly nested) ``target`` spec reads."""
    if isinstance(target_key, str):
        return [target_key]
    return [key for _, spec in _target_columns(target_key) for key in _batch_keys(spec)]


def data_key_names(keys: Mapping[str, TargetKey]) -> set[str]:
    """Every batch key that ``keys`` reads (the fields a test output does not repeat)."""
    return {key for value in keys.values() for key in _batch_keys(value)}


def read_targets(data: Mapping[str, Any], target_key: TargetKey, count: int) -> list[Any] | None:
    """The per-sample targets of a batch dict (None if its one ``target`` key is absent)."""
    if isinstance(target_key, str):
        return None if target_key not in data else split_batch_target(data[target_key], count, target_key)
    columns = _target_columns(target_key)
    absent = [key for key in _batch_keys(target_key) if key not in data]
    if absent:
        hint = ""
        if {"batch_idx", "cls", "bboxes"} & set(absent):
            hint = ("; collate_paired gives boxes per sample: "
                    "data_keys.target=dict(bboxes='gt_bboxes', labels='gt_labels')")
        raise KeyError(f"data batch has no target entries {absent} (has {sorted(data)}){hint}")
    entries = {name: split_batch_target(data[key], count, key) if isinstance(key, str)
               else read_targets(data, key, count) for name, key in columns}
    return [{name: values[i] for name, values in entries.items()} for i in range(count)]


def read_batch(data: Any, keys: Mapping[str, TargetKey], task: Any) -> tuple[FusionBatch, list[Any] | None]:
    """``(FusionBatch, per-sample targets)`` of a collated (and preprocessed) batch.

    The FusionBatch's target is the task's batch format of the per-sample targets
    (``task.collate_targets``, for the size of the task images). A FusionBatch is
    taken as it is; its per-sample targets are then ``task.split_targets`` of its target.
    """
    if isinstance(data, FusionBatch):
        if data.target is None:
            return data, None
        return data, split_for(task, data.target, data.a.shape[0], data.task_sources[0].shape[-2:])
    if not isinstance(data, Mapping):
        raise TypeError(f"a data batch must be a dict or a FusionBatch, got {type(data).__name__}")
    missing = [keys[f] for f in ("a", "b") if keys[f] not in data]
    if missing:
        old = [k for k in data if RENAMED_KEYS.get(k) in missing]
        hint = f"; {renamed_message(old, 'batch')}" if old else ""
        raise KeyError(f"data batch has no {missing} (has {sorted(data)}); set model.data_keys{hint}")
    a, b = data[keys["a"]], data[keys["b"]]
    task_a, task_b = data.get(keys["task_a"]), data.get(keys["task_b"])
    if task_a is None or task_b is None:
        task_a = task_b = None
    count = a.shape[0]
    targets = read_targets(data, keys["target"], count)
    target = None
    if targets is not None:
        target = collate_for(task, targets, (task_a if task_a is not None else a).shape[-2:])
    return FusionBatch(a=a, b=b, target=target, task_a=task_a, task_b=task_b), targets


def test_outputs(
    batch: FusionBatch,
    fused: Tensor,
    weight_maps: Tensor,
    fused_task: Tensor,
    predictions: Any,
    targets: list[Any] | None,
    fields: list[dict[str, Any]],
    source_names: Sequence[str],
) -> list[dict[str, Any]]:
    """One dict per sample of CPU tensors: ``a``, ``b``, ``fused``, ``weight_maps``, ``fused_task``,
    ``source_names``, the per-sample ``fields``, ``target`` (when the batch has targets) and
    ``pred`` (entry ``i`` of ``predictions``, when there are any)."""
    outputs = []
    for i in range(batch.a.shape[0]):
        item: dict[str, Any] = {
            "a": batch.a[i].detach().cpu(),
            "b": batch.b[i].detach().cpu(),
            "fused": fused[i].detach().cpu(),
            "weight_maps": weight_maps[i].detach().cpu(),
            "fused_task": fused_task[i].detach().cpu(),
            "source_names": tuple(source_names),
            **fields[i],
        }
        if targets is not None:
            item["target"] = to_cpu(targets[i])
        if predictions is not None:
            item["pred"] = sample_of(predictions, i)
        outputs.append(item)
    return outputs


def to_cpu(value: Any) -> Any:
    """A tensor detached on the CPU; lists, tuples and dicts of them likewise."""
    if isinstance(value, Tensor):
        return value.detach().cpu()
    if isinstance(value, Mapping):
        return {k: to_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_cpu(v) for v in value)
    return value


def sample_of(value: Any, i: int) -> Any:
    """Entry ``i`` of a batched tensor, list or dict of them (detached, on the CPU)."""
    if isinstance(value, (Tensor, list, tuple)):
        item = value[i]
        return item.detach().cpu() if isinstance(item, Tensor) else item
    if isinstance(value, Mapping):
        return {k: sample_of(v, i) for k, v in value.items()}
    return value


def _is_per_sample(value: Any, size: int) -> bool:
    if isinstance(value, Tensor):
        return value.ndim > 0 and value.shape[0] == size
    return isinstance(value, (list, tuple)) and len(value) == size


def per_sample_fields(data: Any, size: int, exclude: set[str]) -> list[dict[str, Any]]:
    """Non-image per-sample fields (ids, file names, original sizes) of a batch dict.

    The batch-wide entries (:data:`BATCH_FIELDS`, e.g. ``source_names``) are none.
    """
    fields: list[dict[str, Any]] = [{} for _ in range(size)]
    if not isinstance(data, Mapping):
        return fields
    for key, value in data.items():
        if key in exclude or key in BATCH_FIELDS or isinstance(value, Tensor) and value.ndim >= 3:
            continue
        if _is_per_sample(value, size):
            for i in range(size):
                fields[i][key] = sample_of(value, i)
    return fields
