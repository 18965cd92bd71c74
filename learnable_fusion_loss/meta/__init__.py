"""The inner step and the meta learner (knows nothing about specific tasks)."""

from .batch import FusionBatch
from .inner import BACKENDS, FreshAdamError, InnerStep
from .learner import Hypergradient, MetaLossLearner

__all__ = ["FusionBatch", "InnerStep", "FreshAdamError", "BACKENDS", "MetaLossLearner", "Hypergradient"]
