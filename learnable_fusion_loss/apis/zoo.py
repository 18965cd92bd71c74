"""A model zoo: trained fusion networks (F) and loss generators (G) found by name.

A zoo entry is a folder ``<zoo root>/<name>/`` holding ``manifest.json`` and the
weight files it lists, each with its sha256::

    {"name": "my_model",
     "custom_imports": {"imports": ["my_package"]},
     "files": {"fusion_net": {"path": "fusion_net.pth", "sha256": "..."},
               "generator": {"path": "generator.pth", "sha256": "..."}},
     "fusion_net": {"type": "MyFusionNet"}, "generator": {"type": "MyGenerator"},
     "config": "...", "seed": 0, "commit": "...", "results": {...}}

``fusion_net`` / ``generator`` are registry configs (``MODELS``) of the two nets;
``custom_imports`` (optional, as in an MMEngine config) lists the modules that
register their types, imported before they are built.

Zoo roots, in order: the ``roots`` a caller passes, the folders of ``$LFL_ZOO_PATH``
(``os.pathsep``-separated), then the folders registered with
:func:`register_zoo_root` (a package that ships trained models registers its zoo
folder when it is imported). The library itself knows no zoo folder.

>>> import json, tempfile, torch
>>> from pathlib import Path
>>> from learnable_fusion_loss.generators import ConvWeightGenerator
>>> root = Path(tempfile.mkdtemp())
>>> (root / "tiny").mkdir()
>>> torch.save(ConvWeightGenerator(hidden=4).state_dict(), root / "tiny" / "generator.pth")
>>> files = {"generator": {"path": "generator.pth", "sha256": sha256_of(root / "tiny" / "generator.pth")}}
>>> manifest = {"generator": {"type": "ConvWeightGenerator", "hidden": 4}, "files": files}
>>> _ = (root / "tiny" / "manifest.json").write_text(json.dumps(manifest))
>>> "tiny" in zoo_names([root])
True
>>> type(load_zoo_module("tiny", "generator", roots=[root])).__name__
'ConvWeightGenerator'
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..compat import load_weights_only

__all__ = [
    "ZooEntry",
    "zoo_roots",
    "register_zoo_root",
    "find_zoo_entry",
    "zoo_names",
    "load_zoo_module",
    "sha256_of",
]

_MANIFEST = "manifest.json"
_REGISTERED: list[Path] = []
Roots = Iterable["str | os.PathLike[str]"] | None


def sha256_of(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def register_zoo_root(folder: str | os.PathLike[str]) -> Path:
    """Add ``folder`` to the zoo roots searched after ``$LFL_ZOO_PATH``; returns it.

    Registering a folder twice keeps one entry.
    """
    path = Path(folder).resolve()
    if path not in _REGISTERED:
        _REGISTERED.append(path)
    return path


def zoo_roots(roots: Roots = None) -> list[Path]:
    """The folders searched for zoo entries (see the module docstring)."""
    found = [Path(p) for p in roots or ()]
    found += [Path(p) for p in os.environ.get("LFL_ZOO_PATH", "").split(os.pathsep) if p]
    found += [p for p in _REGISTERED if p.is_dir()]
    return found


@dataclass(frozen=True)
class ZooEntry:
    """One zoo model: its folder and parsed manifest."""

    name: str
    folder: Path
    manifest: dict[str, Any]

    def path(self, part: str) -> Path:
        """The file of ``part`` (``"fusion_net"`` or ``"generator"``), sha256-checked."""
        files = self.manifest.get("files", {})
        if part not in files:
            raise KeyError(f"zoo model {self.name!r} has no {part!r} (has {sorted(files)})")
        path = self.folder / files[part]["path"]
        if not path.is_file():
            raise FileNotFoundError(f"zoo model {self.name!r}: {part} file missing: {str(path)!r}")
        expected, actual = files[part].get("sha256"), sha256_of(path)
        if expected != actual:
            raise ValueError(
                f"zoo model {self.name!r}: {str(path)!r} has sha256 {actual}, the manifest says "
                f"{expected}; the file is corrupt or was changed"
            )
        return path


def zoo_names(roots: Roots = None) -> list[str]:
    """Names of every zoo model found in :func:`zoo_roots`."""
    return sorted({p.parent.name for root in zoo_roots(roots) for p in root.glob(f"*/{_MANIFEST}")})


def find_zoo_entry(name: str, roots: Roots = None) -> ZooEntry:
    """The zoo model called ``name``; ``KeyError`` naming the known ones otherwise.

    >>> find_zoo_entry("nothing", roots=[])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
        ...
    KeyError: "no zoo model named 'nothing'; known: [...] (roots: [...]; add one with LFL_ZOO_PATH)"
    """
    roots = list(roots or ())
    for root in zoo_roots(roots):
        manifest = root / name / _MANIFEST
        if manifest.is_file():
            try:
                data = json.loads(manifest.read_text())
            except json.JSONDecodeError as error:
                raise ValueError(f"zoo manifest {str(manifest)!r} is not valid JSON: {error}") from error
            return ZooEntry(name=name, folder=manifest.parent, manifest=data)
    raise KeyError(f"no zoo model named {name!r}; known: {zoo_names(roots)} (roots: "
                   f"{[str(r) for r in zoo_roots(roots)]}; add one with LFL_ZOO_PATH)")


def _import_modules(entry: ZooEntry) -> None:
    """Import the modules of the manifest's ``custom_imports`` (they register its types)."""
    spec = entry.manifest.get("custom_imports") or {}
    modules = spec.get("imports", []) if isinstance(spec, dict) else spec
    if isinstance(modules, str):
        modules = [modules]
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as error:
            raise ImportError(
                f"zoo model {entry.name!r} needs the module {module!r} (its manifest's custom_imports), "
                f"which cannot be imported: {error}; put the folder that holds its top-level package "
                "on sys.path (the repository's tools/*.py add the repository root)"
            ) from error


def load_zoo_module(
    name: str, part: str = "fusion_net", device: str | torch.device = "cpu", roots: Roots = None
) -> nn.Module:
    """Build ``part`` of zoo model ``name`` from its manifest config and load it strictly.

    The manifest's ``custom_imports`` are imported first; the module is returned in
    ``eval()`` mode on ``device``.
    """
    from ..registry import build_module

    entry = find_zoo_entry(name, roots)
    _import_modules(entry)
    spec = entry.manifest.get(part)
    if not isinstance(spec, dict) or "type" not in spec:
        raise KeyError(f"zoo model {name!r}: manifest has no {part!r} config with a 'type'")
    module = build_module(spec)
    state = load_weights_only(entry.path(part))
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise ValueError(f"zoo model {name!r}: {part} weights do not match {spec['type']}: {error}") from error
    return module.to(device).eval()
