"""The inner step and the meta learner (knows nothing about specific tasks)."""

from .batch import FusionBatch
from .guard import NonFiniteError, NonFiniteGuard, all_finite
from .inner import BACKENDS, FreshAdamError, InnerStep
from .learner import TASK_WARMUP_SOURCES, Hypergradient, MetaLossLearner, task_warmup_step

__all__ = [
    "FusionBatch",
    "InnerStep",
    "FreshAdamError",
    "BACKENDS",
    "MetaLossLearner",
    "Hypergradient",
    "TASK_WARMUP_SOURCES",
    "task_warmup_step",
    "NonFiniteGuard",
    "NonFiniteError",
    "all_finite",
]
