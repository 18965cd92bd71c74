"""One registry tree for the library, children of MMEngine's root registries.

Configs build everything through these (``type='LearnableFusionLoss'`` etc.). Each
child lists the library's modules that register into it, so ``build`` can find a
class without the caller importing it first (MMEngine's ``locations`` mechanism).
A project's types (its networks, say) register when its package is imported: a
config names that package in ``custom_imports=dict(imports=[...])``.

:func:`build_module` is the one "a module, or a ``MODELS`` config dict of one" helper
that the engine's model, the learnable loss, the zoo and the inference API build
their parts with.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import LOOPS as MMENGINE_LOOPS
from mmengine.registry import METRICS as MMENGINE_METRICS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import TRANSFORMS as MMENGINE_TRANSFORMS
from mmengine.registry import Registry

SCOPE = "lfl"

#: Fusion networks (F), loss generators (G), losses and task adapters.
MODELS = Registry(
    "model",
    parent=MMENGINE_MODELS,
    scope=SCOPE,
    locations=[
        "learnable_fusion_loss.generators",
        "learnable_fusion_loss.losses",
        "learnable_fusion_loss.tasks",
    ],
)
DATASETS = Registry(
    "dataset", parent=MMENGINE_DATASETS, scope=SCOPE, locations=["learnable_fusion_loss.datasets"]
)
TRANSFORMS = Registry(
    "transform",
    parent=MMENGINE_TRANSFORMS,
    scope=SCOPE,
    locations=["learnable_fusion_loss.datasets"],
)
METRICS = Registry(
    "metric", parent=MMENGINE_METRICS, scope=SCOPE, locations=["learnable_fusion_loss.metrics"]
)
LOOPS = Registry("loop", parent=MMENGINE_LOOPS, scope=SCOPE, locations=["learnable_fusion_loss.engine"])
HOOKS = Registry("hook", parent=MMENGINE_HOOKS, scope=SCOPE, locations=["learnable_fusion_loss.engine"])

__all__ = ["SCOPE", "MODELS", "DATASETS", "TRANSFORMS", "METRICS", "LOOPS", "HOOKS", "build_module"]


def build_module(cfg: Any, required: str | None = None) -> Any:
    """``MODELS.build`` a config mapping (a copy of it); anything else is returned as it is.

    With ``required`` (the argument's name), ``None`` raises ``ValueError`` instead.

    >>> import torch
    >>> net = torch.nn.Identity()
    >>> build_module(net) is net, build_module(None)
    (True, None)
    >>> build_module(None, "fusion_net")
    Traceback (most recent call last):
    ...
    ValueError: fusion_net is required
    """
    if isinstance(cfg, Mapping):
        return MODELS.build(dict(cfg))
    if cfg is None and required is not None:
        raise ValueError(f"{required} is required")
    return cfg
