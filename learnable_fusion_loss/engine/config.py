"""Config helpers shared by ``tools/train.py``, ``tools/test.py`` and the config tests.

Dataset configs name their folder relative to one ``data_root`` (``root='my_set'``);
:func:`resolve_data_root` joins them after every override is applied, so a single
``--cfg-options data_root=...`` (or ``LFL_DATA_ROOT``) moves every dataset. The
library has no default data folder: the config (or the tool) gives one.
:func:`load_config` is the config loading both tools start with.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, MutableMapping
from pathlib import Path
from typing import Any

__all__ = ["DATA_ROOT_ENV", "resolve_data_root", "iter_dataset_cfgs", "load_config"]

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
) -> Path | None:
    """Choose the data root and make every relative dataset ``root``/``ids`` file absolute under it.

    Priority: ``explicit`` (a ``--cfg-options data_root=...``), then the
    ``LFL_DATA_ROOT`` environment variable, then ``cfg.data_root``. A relative
    data root is taken relative to ``repo_root`` (not the working directory). Sets
    ``cfg['data_root']`` to the absolute path and returns it; absolute dataset
    roots are left alone.

    A config whose datasets name no relative ``root``/``ids`` (a user's own dataset that
    builds or finds its data itself) needs no data root: then ``None`` is returned and
    nothing is set.

    Raises:
        ValueError: a dataset has a relative root and none of the three is set (the
            library has no default folder).
    """
    chosen = explicit or os.environ.get(DATA_ROOT_ENV) or cfg.get("data_root")
    relative = any(isinstance(d.get(key), str) and not Path(d[key]).is_absolute()
                   for d in iter_dataset_cfgs(cfg) for key in ("root", "ids"))
    if not chosen and not relative:
        return None
    if not chosen:
        raise ValueError(
            f"no data folder: set data_root in the config, the {DATA_ROOT_ENV} environment "
            "variable, or pass --cfg-options data_root=..."
        )
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


def load_config(
    config: str | os.PathLike[str],
    repo_root: str | os.PathLike[str],
    cfg_options: Mapping[str, Any] | None = None,
    launcher: str = "none",
    work_dir: str | None = None,
) -> Any:
    """The MMEngine ``Config`` of a ``tools/train.py`` / ``tools/test.py`` run.

    ``cfg_options`` (``--cfg-options``) are merged in, then :func:`resolve_data_root`
    runs (a ``data_root`` among the options wins); ``launcher`` is set and the work dir
    is ``work_dir``, else the config's, else ``work_dirs/<config name>``.
    """
    from mmengine.config import Config

    cfg = Config.fromfile(str(config))
    explicit_root = cfg_options.get("data_root") if cfg_options else None
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    resolve_data_root(cfg, repo_root, explicit=explicit_root)
    cfg.launcher = launcher
    if work_dir:
        cfg.work_dir = work_dir
    elif cfg.get("work_dir") is None:
        cfg.work_dir = str(Path("work_dirs") / Path(config).stem)
    return cfg
