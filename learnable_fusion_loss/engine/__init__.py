"""MMEngine integration: the meta-fusion model, the Algorithm-1 loop and its hooks.

One module per idea: ``model`` (:class:`MetaFusionModel`), ``parts`` (building its
task adapter), ``samples`` (batch dicts → FusionBatch and per-sample outputs; targets
stay per sample, the task adapter batches them), ``iteration`` (what the loop hands
the model), ``plan`` (the epoch plan), ``loops`` (the loop), ``optim``, ``parallel``,
``hooks``, ``evaluation`` and ``config``.

Importing this package registers (scope ``lfl``): the model ``MetaFusionModel``,
the loop ``MetaFusionTrainLoop``, the hooks ``AtomicCheckpointHook``,
``TrainingStateHook``, ``FusionVisualizationHook`` and ``LearnableLossHook`` (a
learnable loss term in any MMEngine model's own pipeline); and in MMEngine's root
registries the optimiser-wrapper constructor ``MultiModuleOptimWrapperConstructor``,
the model wrapper ``GradientAveragingWrapper``, the atomic file backend
``lfl_atomic_local``; the metric ``TaskMetric`` and its hook ``TaskMetricHook``.
It also imports :mod:`learnable_fusion_loss.datasets.collate`, which registers
``collate_paired`` in ``FUNCTIONS`` (for ``collate_fn=dict(type='collate_paired',
swap_modalities=...)``). :func:`capture_rng_state` / :func:`restore_rng_state`
are re-exported from :mod:`learnable_fusion_loss._random`.
"""

# The datasets' collate module registers ``collate_paired`` in MMEngine's FUNCTIONS on import.
from ..datasets import collate as _collate  # noqa: F401
from .._random import capture_rng_state, restore_rng_state
from .config import resolve_data_root
from .evaluation import TaskMetric, TaskMetricHook, batch_task_samples
from .hooks import (
    ATOMIC_BACKEND,
    AtomicCheckpointHook,
    AtomicLocalBackend,
    FusionVisualizationHook,
    TrainingStateHook,
    atomic_write_bytes,
    fusion_panel,
)
from .iteration import PHASES, IterationData
from .learnable_loss_hook import GeneratedLossTerm, LearnableLossHook
from .loops import MetaFusionTrainLoop, WarmupLogProcessor
from .model import MetaFusionModel
from .plan import SCHEDULES, EpochPlan, IterationPlan, SeededSamples
from .samples import DEFAULT_DATA_KEYS
from .optim import MultiModuleOptimWrapperConstructor
from .parallel import GradientAveragingWrapper

__all__ = [
    "resolve_data_root",
    "TaskMetric",
    "TaskMetricHook",
    "batch_task_samples",
    "MetaFusionModel",
    "LearnableLossHook",
    "GeneratedLossTerm",
    "MultiModuleOptimWrapperConstructor",
    "GradientAveragingWrapper",
    "DEFAULT_DATA_KEYS",
    "PHASES",
    "IterationData",
    "MetaFusionTrainLoop",
    "WarmupLogProcessor",
    "EpochPlan",
    "IterationPlan",
    "SeededSamples",
    "SCHEDULES",
    "AtomicCheckpointHook",
    "AtomicLocalBackend",
    "ATOMIC_BACKEND",
    "TrainingStateHook",
    "FusionVisualizationHook",
    "atomic_write_bytes",
    "capture_rng_state",
    "restore_rng_state",
    "fusion_panel",
]

