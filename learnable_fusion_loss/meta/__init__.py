"""The inner step and the meta learner (knows nothing about specific models or tasks)."""

from .batch import Batch, FusionBatch, MetaBatch, call_model
from .guard import NonFiniteError, NonFiniteGuard, all_finite
from .inner import BACKENDS, FreshAdamError, InnerStep
from .learner import TASK_WARMUP_SOURCES, Hypergradient, MetaLossLearner, task_warmup_step

__all__ = [
    "Batch",
    "FusionBatch",
    "MetaBatch",
    "call_model",
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
