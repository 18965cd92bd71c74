"""Config helpers shared by ``tools/train.py``, ``tools/test.py`` and the config tests.

Dataset configs name their folder relative to one ``data_root`` (``root='msrs_det'``);
:func:`resolve_data_root` joins them after every override is applied, so a single
``--cfg-options data_root=...`` (or ``LFL_DATA_ROOT``) moves every dataset.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, MutableMapping
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_DATA_ROOT", "DATA_ROOT_ENV", "resolve_data_root", "iter_dataset_cfgs"]

#: Default data folder, relative to the repository root.
DEFAULT_DATA_ROOT = "../shared/data"
#: Environment variable that overrides the config's ``data_root``.
DATA_ROOT_ENV = "LFL_DATA_ROOT"

_DATALOADERS = ("train_dataloader", "val_dataloader", "test_dataloader")


def iter_dataset_cfgs(cfg: Mapping[str, Any]) -> Iterator[MutableMapping[str, Any]]:
    """Every dataset dict of the config's dataloaders (wrappers' inner datasets included)."""

    def walk(dataset: Any) -> Iterator[MutableMapping[str, Any]]:
        if not isinstance(dataset, MutableMapping):
            return
        yield dataset
        if isinstance(dataset.get("dataset"), MutableMapping):
            yield from walk(dataset["dataset"])
        for inner in dataset.get("datasets", None) or []:
            yield from walk(inner)

    for name in _DATALOADERS:
        loader = cfg.get(name)
        if isinstance(loader, MutableMapping):
            yield from walk(loader.get("dataset"))


def resolve_data_root(
    cfg: MutableMapping[str, Any],
    repo_root: str | os.PathLike[str],
    explicit: str | None = None,
) -> Path:
    """Choose the data root and make every relative dataset ``root``/``ids`` file absolute under it.

    Priority: ``explicit`` (a ``--cfg-options data_root=...``), then the
    ``LFL_DATA_ROOT`` environment variable, then ``cfg.data_root``, then
    :data:`DEFAULT_DATA_ROOT`. A relative data root is taken relative to
    ``repo_root`` (not the working directory). Sets ``cfg['data_root']`` to the
    absolute path and returns it; absolute dataset roots are left alone.
    """
    chosen = explicit or os.environ.get(DATA_ROOT_ENV) or cfg.get("data_root") or DEFAULT_DATA_ROOT
    root = Path(os.path.expanduser(str(chosen)))
    if not root.is_absolute():
        root = (Path(repo_root) / root).resolve()
    cfg["data_root"] = str(root)
    for dataset in iter_dataset_cfgs(cfg):
        for key in ("root", "ids"):  # ids: a split-list file (a list of ids stays as it is)
            value = dataset.get(key)
            if isinstance(value, str) and not Path(value).is_absolute():
                dataset[key] = str(root / value)
    return root
