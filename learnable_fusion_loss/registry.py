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
from typing import Any, NoReturn

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


def _not_registered(type_name: str, error: KeyError) -> NoReturn:
    raise KeyError(
        f"{type_name!r} is not a registered type of the {SCOPE!r} model registry: no imported "
        "module registered it. A project's types register when its package is imported: add "
        "custom_imports=dict(imports=['projects.<name>.<package>']) to the config "
        "(with the repository root on sys.path, as tools/*.py put it), or import the package "
        "before building"
    ) from error


def build_module(cfg: Any, required: str | None = None) -> Any:
    """``MODELS.build`` a config mapping (a copy of it); anything else is returned as it is.

    With ``required`` (the argument's name), ``None`` raises ``ValueError`` instead. A
    ``type`` that no imported module registered raises ``KeyError`` saying how to
    import the package that defines it.

    >>> import torch
    >>> net = torch.nn.Identity()
    >>> build_module(net) is net, build_module(None)
    (True, None)
    >>> build_module(None, "fusion_net")
    Traceback (most recent call last):
    ...
    ValueError: fusion_net is required
    >>> build_module(dict(type="NoSuchNet"))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    KeyError: "'NoSuchNet' is not a registered type ... custom_imports=dict(imports=['projects.<name>.<package>']) ..."
    """
    if isinstance(cfg, Mapping):
        try:
            return MODELS.build(dict(cfg))
        except KeyError as error:
            type_name = cfg.get("type")
            message = error.args[0] if error.args else ""
            if isinstance(type_name, str) and isinstance(message, str) and message.startswith(
                f"{type_name} is not in the "
            ):
                _not_registered(type_name, error)
            raise
    if cfg is None and required is not None:
        raise ValueError(f"{required} is required")
    return cfg
