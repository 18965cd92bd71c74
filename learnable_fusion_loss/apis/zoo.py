"""A model zoo: trained fusion networks (F) and loss generators (G) found by name.

A zoo entry is a folder ``<zoo root>/<name>/`` holding ``manifest.json`` and the
weight files it lists, each with its sha256::

    {"name": "tdfusion_msrsdet_cpu",
     "files": {"fusion_net": {"path": "fusion_net.pth", "sha256": "..."},
               "generator": {"path": "generator.pth", "sha256": "..."}},
     "fusion_net": {"type": "ReFusionNet"}, "generator": {"type": "TDFusionLPN"},
     "config": "...", "seed": 0, "commit": "...", "results": {...}}

``fusion_net`` / ``generator`` are registry configs (``MODELS``) of the two nets.
Zoo roots, in order: the folders of ``$LFL_ZOO_PATH`` (``os.pathsep``-separated),
then every ``projects/*/zoo`` of the repository this package is checked out in.
The library imports no project: it only reads their zoo folders as data.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..compat import load_weights_only

__all__ = ["ZooEntry", "zoo_roots", "find_zoo_entry", "zoo_names", "load_zoo_module", "sha256_of"]

_MANIFEST = "manifest.json"
_REPO_ROOT = Path(__file__).resolve().parents[2]


def sha256_of(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def zoo_roots() -> list[Path]:
    """The folders searched for zoo entries (see the module docstring)."""
    roots = [Path(p) for p in os.environ.get("LFL_ZOO_PATH", "").split(os.pathsep) if p]
    projects = _REPO_ROOT / "projects"
    if projects.is_dir():
        roots += sorted(p for p in projects.glob("*/zoo") if p.is_dir())
    return roots


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


def zoo_names() -> list[str]:
    """Names of every zoo model found in :func:`zoo_roots`."""
    return sorted({p.parent.name for root in zoo_roots() for p in root.glob(f"*/{_MANIFEST}")})


def find_zoo_entry(name: str) -> ZooEntry:
    """The zoo model called ``name``; ``KeyError`` naming the known ones otherwise.

    >>> find_zoo_entry("tdfusion_msrsdet_cpu").manifest["fusion_net"]["type"]
    'ReFusionNet'
    """
    for root in zoo_roots():
        manifest = root / name / _MANIFEST
        if manifest.is_file():
            try:
                data = json.loads(manifest.read_text())
            except json.JSONDecodeError as error:
                raise ValueError(f"zoo manifest {str(manifest)!r} is not valid JSON: {error}") from error
            return ZooEntry(name=name, folder=manifest.parent, manifest=data)
    raise KeyError(f"no zoo model named {name!r}; known: {zoo_names()} (roots: "
                   f"{[str(r) for r in zoo_roots()]}; add one with LFL_ZOO_PATH)")


def load_zoo_module(name: str, part: str = "fusion_net", device: str | torch.device = "cpu") -> nn.Module:
    """Build ``part`` of zoo model ``name`` from its manifest config and load it strictly.

    >>> net = load_zoo_module("tdfusion_msrsdet_cpu")
    >>> type(net).__name__, net.training
    ('ReFusionNet', False)
    """
    from .. import generators, models  # noqa: F401 - register the nets
    from ..registry import build_module

    entry = find_zoo_entry(name)
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
