"""One registry tree for the library, children of MMEngine's root registries.

Configs build everything through these (``type='ReFusionNet'`` etc.). Each child
lists the modules that register into it, so ``build`` can find a class without the
caller importing it first (MMEngine's ``locations`` mechanism).
"""

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
        "learnable_fusion_loss.models",
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

__all__ = ["SCOPE", "MODELS", "DATASETS", "TRANSFORMS", "METRICS", "LOOPS", "HOOKS"]
