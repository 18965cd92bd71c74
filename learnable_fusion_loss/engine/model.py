"""The MMEngine model of a task-driven fusion run: F, the learnable loss (with G) and T.

:class:`MetaFusionModel` is a thin :class:`~mmengine.model.BaseModel` around the
library's :class:`~learnable_fusion_loss.meta.MetaLossLearner`: the maths (inner
step, T', hypergradient, outer step, fusion step) lives there; this module only

* builds F, the loss (and its generator G) and the task adapter from configs,
* binds the learner to the optimisers of MMEngine's :class:`OptimWrapperDict`
  (``fusion`` → F, ``generator`` → G, ``task`` → T), so that checkpoints and
  parameter schedulers cover every optimiser,
* turns collated data batches into :class:`~learnable_fusion_loss.meta.FusionBatch`
  (:mod:`.samples`: the targets stay per sample; the task adapter batches them),
* returns log variables with readable names (``w_<source name>``: ``w_a``/``w_b`` by
  default, ``w_ir``/``w_vis`` for TDFusion …) and
* produces per-sample test outputs (fused image, weight maps, task prediction).

A training iteration receives an :class:`~learnable_fusion_loss.engine.IterationData`
from :class:`~learnable_fusion_loss.engine.loops.MetaFusionTrainLoop` (a dict with the
same fields is accepted too)::

    IterationData("meta", meta_train=batch, meta_test=batch)         # updates G
    IterationData("fusion", inputs=batch)                            # updates F, T
    IterationData("interleaved", meta_train=batch, meta_test=batch)  # G; F keeps θ'; T
    IterationData("fusion_warmup", inputs=batch)                     # F only, ½–½ loss
    IterationData("task_warmup", inputs=batch, source="both")        # T only
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from mmengine.logging import MessageHub, print_log
from mmengine.model import BaseModel
from mmengine.optim import OptimWrapperDict
from torch import Tensor, nn

from ..losses import LearnableLoss
from ..meta import FusionBatch, MetaLossLearner, NonFiniteGuard
from ..registry import MODELS, build_module
from ..tasks.base import TaskAdapter
from .iteration import PHASES, IterationData
from .optim import MultiModuleOptimWrapperConstructor, attach_wrapper
from .parallel import GradientAveragingWrapper
from .parts import build_task, task_module, with_device
from .samples import (
    DEFAULT_DATA_KEYS,
    TargetKey,
    check_data_keys,
    data_key_names,
    per_sample_fields,
    read_batch,
    test_outputs,
)

# The constructor and the wrapper lived here; their modules are optim and parallel.
__all__ = [
    "MetaFusionModel",
    "MultiModuleOptimWrapperConstructor",
    "GradientAveragingWrapper",
    "DEFAULT_DATA_KEYS",
    "PHASES",
]

#: Learner options a config may set (everything but the nets and the optimisers).
_LEARNER_OPTIONS = (
    "outer_step",
    "outer_lr",
    "inner_backend",
    "inner_optimizer",
    "inner_lr",
    "fusion_task_weight",
    "allow_fresh_adam",
    "hypergradient",
    "outer_lr_from_fusion",
    "keep_task_optimizer_state",
)


@MODELS.register_module()
class MetaFusionModel(BaseModel):
    """F + learnable fusion loss (G) + task T, trained by the paper's Algorithm 1.

    Args:
        fusion_net: F (config or module), ``(a, b) -> fused`` on ``[B, 1, H, W]``.
        loss: the learnable loss (config or module), e.g.
            ``dict(type='LearnableFusionLoss', generator=dict(type='ConvWeightGenerator'), alpha=1)``.
        task: the task adapter (config or object) following
            :class:`~learnable_fusion_loss.tasks.TaskAdapter`; its network must be an
            ``nn.Module`` (the adapter itself or its ``.net``) and, when the optimiser
            wrapper has a ``task`` entry, its ``optimizer`` attribute must be settable.
        learner: options of :class:`~learnable_fusion_loss.meta.MetaLossLearner`
            (``outer_step``, ``inner_backend``, ``inner_optimizer``, ``inner_lr``,
            ``fusion_task_weight``, ``outer_lr``, ``allow_fresh_adam``, ``hypergradient``).
        max_consecutive_skips: non-finite steps in a row, in one phase, after which
            training stops (:class:`~learnable_fusion_loss.meta.NonFiniteGuard`); each
            skip is logged as a warning with its iteration and phase.
        source_names: names of sources a and b, used in log keys (``w_a``, ``w_b`` by
            default; a method names its modalities, e.g. TDFusion ``('ir', 'vis')``:
            ``w_ir``, ``w_vis``).
        data_keys: where each :class:`FusionBatch` field lives in a collated batch
            (default :data:`DEFAULT_DATA_KEYS`; ``task_a``/``task_b`` are optional).
            ``target`` names the per-sample targets: one key, or a ``{name: key}`` dict
            (detection: ``dict(bboxes='gt_bboxes', labels='gt_labels')``); the task
            adapter batches them (its ``collate_targets``).
        task_scope: MMEngine default scope under which the task adapter is built
            (``'mmseg'`` for ``SegFormerTask``, whose mmseg model config uses
            unscoped type names that the runner's ``lfl`` scope cannot resolve).
        data_preprocessor: MMEngine data preprocessor (default: move to device).
        init_cfg: MMEngine weight-init config.
    """

    def __init__(
        self,
        fusion_net: nn.Module | Mapping,
        loss: LearnableLoss | Mapping,
        task: Any,
        learner: Mapping | None = None,
        source_names: Sequence[str] = ("a", "b"),
        data_keys: Mapping[str, TargetKey] | None = None,
        task_scope: str | None = None,
        data_preprocessor: Mapping | nn.Module | None = None,
        init_cfg: Mapping | list | None = None,
        max_consecutive_skips: int = 20,
    ) -> None:
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.guard = NonFiniteGuard(max_consecutive_skips, report=_log_warning)
        self.fusion_net = build_module(fusion_net, "fusion_net")
        self.loss = build_module(loss, "loss")
        if not isinstance(self.fusion_net, nn.Module):
            raise TypeError(f"fusion_net must build an nn.Module, got {type(self.fusion_net).__name__}")
        if not isinstance(self.loss, LearnableLoss):
            raise TypeError(f"loss must build a LearnableLoss, got {type(self.loss).__name__}")
        if hasattr(self.fusion_net, "bind_generator"):
            # An F that fuses with G's own weights (ablation V) gets a reference to G,
            # not a copy: G's parameters stay G's (one optimiser, one state_dict entry).
            self.fusion_net.bind_generator(self.loss.generator)
        #: optimiser arguments given to the adapter (refused beside an optim_wrapper.task entry)
        self._task_optimizer_args = (
            {k for k in ("lr", "weight_decay", "optimizer") if k in task} if isinstance(task, Mapping) else set())
        adapter = build_task(with_device(task), task_scope)
        if not isinstance(adapter, TaskAdapter):
            raise TypeError(
                f"task {type(adapter).__name__} does not follow the TaskAdapter protocol "
                "(loss, train_step, snapshot, restore)"
            )
        module = task_module(adapter)
        if isinstance(adapter, nn.Module):
            self.task = adapter  # registered: its parameters are in state_dict under task.*
        else:
            self.task = adapter  # plain attribute; the parameters live in task_net
            self.task_net = module
        self.learner_cfg = dict(learner or {})
        unknown = set(self.learner_cfg) - set(_LEARNER_OPTIONS)
        if unknown:
            raise ValueError(f"unknown learner options {sorted(unknown)}; valid: {_LEARNER_OPTIONS}")
        if len(source_names) != 2 or len(set(source_names)) != 2:
            raise ValueError(f"source_names must be two distinct names, got {source_names!r}")
        self.source_names = tuple(str(n) for n in source_names)
        self.data_keys = check_data_keys(data_keys)
        self._learner: MetaLossLearner | None = None
        self._bound_optim_wrapper: OptimWrapperDict | None = None

    # ----------------------------------------------------------------- parts
    @property
    def generator(self) -> nn.Module:
        """G, the loss generator."""
        return self.loss.generator

    @property
    def task_module(self) -> nn.Module | None:
        """The module holding T's parameters (None for a parameter-free task)."""
        return task_module(self.task)

    def optim_modules(self) -> dict[str, nn.Module | None]:
        """The modules each optimiser-wrapper key trains."""
        return {"fusion": self.fusion_net, "generator": self.generator, "task": self.task_module}

    # -------------------------------------------------------------- learner
    def bind_optimizers(self, optim_wrapper: OptimWrapperDict) -> MetaLossLearner:
        """Build (or reuse) the learner on the optimisers of ``optim_wrapper``.

        ``fusion`` is required; ``generator`` is required when G has trainable
        parameters and ``outer_step='adam'``; ``task`` is handed to the adapter
        (its ``optimizer`` attribute) so T's optimiser is checkpointed with the rest.
        A fixed rule (neither F nor G has trainable parameters) gets a learner too: its
        fusion step is T's step on the rule's output (there is nothing to meta-learn).
        """
        if self._bound_optim_wrapper is optim_wrapper:
            return self._learner
        if not isinstance(optim_wrapper, OptimWrapperDict):
            raise TypeError(
                "MetaFusionModel needs an OptimWrapperDict with keys fusion/generator/task "
                "(use constructor='MultiModuleOptimWrapperConstructor'), got "
                f"{type(optim_wrapper).__name__}"
            )
        for name, wrapper in optim_wrapper.items():
            attach_wrapper(name, wrapper)
        if "task" in optim_wrapper and self._task_optimizer_args:
            raise ValueError(
                f"model.task sets {sorted(self._task_optimizer_args)} and optim_wrapper has a 'task' "
                "entry, which replaces the adapter's optimiser: set T's optimiser in one place "
                "(optim_wrapper.task, or the adapter's arguments with optim_wrapper.task=None)")
        has_generator_params = any(p.requires_grad for p in self.generator.parameters())
        if self.fusion_trainable and "fusion" not in optim_wrapper:
            raise KeyError("optim_wrapper has no 'fusion' entry (F's optimiser)")
        outer_step = self.learner_cfg.get("outer_step", "adam")
        generator_optimizer = None
        if "generator" in optim_wrapper:
            generator_optimizer = optim_wrapper["generator"].optimizer
        elif has_generator_params and outer_step == "adam":
            raise KeyError(
                "optim_wrapper has no 'generator' entry but G has parameters and outer_step='adam'"
            )
        if "task" in optim_wrapper:
            self._bind_task_optimizer(optim_wrapper)
        self._learner = MetaLossLearner(
            self.fusion_net,
            self.loss,
            self.task,
            fusion_optimizer=optim_wrapper["fusion"].optimizer if "fusion" in optim_wrapper else None,
            generator_optimizer=generator_optimizer,
            guard=self.guard,
            **self.learner_cfg,
        )
        self._bound_optim_wrapper = optim_wrapper
        return self._learner

    def _bind_task_optimizer(self, optim_wrapper: OptimWrapperDict) -> None:
        if not hasattr(self.task, "optimizer"):
            raise AttributeError(
                f"task adapter {type(self.task).__name__} has no settable `optimizer` attribute; "
                "remove the 'task' optim_wrapper entry or give the adapter one"
            )
        self.task.optimizer = optim_wrapper["task"].optimizer

    @property
    def fusion_trainable(self) -> bool:
        """False for a fixed fusion rule (the IR/VIS/mean/max baselines): only T trains."""
        return any(p.requires_grad for p in self.fusion_net.parameters())

    # ------------------------------------------------------------------ data
    def to_fusion_batch(self, data: Any) -> FusionBatch:
        """A collated (and preprocessed) batch as a :class:`FusionBatch`.

        Its target is the task adapter's batch format of the batch's per-sample
        targets (:func:`~learnable_fusion_loss.engine.samples.read_batch`).
        """
        if isinstance(data, FusionBatch):
            return data
        return read_batch(data, self.data_keys, self.task)[0]

    def preprocess(self, data: Any, training: bool) -> FusionBatch:
        """A collated batch through the data preprocessor, as a :class:`FusionBatch`."""
        return self.to_fusion_batch(self.data_preprocessor(data, training))

    def _rename(self, stats: Mapping[str, float]) -> dict[str, float]:
        names = {f"weight_{i}": f"w_{n}" for i, n in enumerate(self.source_names)}
        # A skipped step's non-finite values are in its warning; a NaN in the log
        # would spoil every windowed mean it enters.
        out = {names.get(k, k): float(v) for k, v in stats.items() if math.isfinite(v)}
        if out.get("hypergrad_norm", 0.0) > 0:
            # The text log prints 4 decimals; the norm is often ~1e-6 (it scales with η).
            out["hypergrad_log10"] = math.log10(out["hypergrad_norm"])
        return out

    # ----------------------------------------------------------------- steps
    def train_step(self, data: IterationData | Mapping, optim_wrapper: OptimWrapperDict) -> dict[str, float]:
        """One iteration of Algorithm 1 (:class:`IterationData`, or a dict of its fields)."""
        learner = self.bind_optimizers(optim_wrapper)
        runner_iter = MessageHub.get_current_instance().get_info("iter")  # None outside a runner
        if runner_iter is not None:
            self.guard.iteration = int(runner_iter) + 1  # as the log counts
        item = IterationData.of(data)
        phase = item.phase
        if phase == "task_warmup":
            return self._rename(learner.task_warmup_step(self.preprocess(item.inputs, True), item.source))
        if phase != "fusion" and not (learner.fusion_params or learner.generator_params):
            raise RuntimeError(
                f"a fixed fusion net (no parameters) has no {phase} phase: set meta_steps=0"
                + (" and fusion_warmup_steps=0" if phase == "fusion_warmup" else ""))
        if phase == "fusion_warmup":
            return self._rename(learner.fusion_warmup_step(self.preprocess(item.inputs, True)))
        if phase == "fusion":
            return self._rename(learner.fusion_step(self.preprocess(item.inputs, True)))
        meta_train = self.preprocess(item.meta_train, True)
        meta_test = self.preprocess(item.meta_test, True)
        return self._rename(learner.meta_step(meta_train, meta_test, update_fusion=phase == "interleaved"))

    @torch.no_grad()
    def fuse(self, a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
        """``(F(a, b), G(a, b))`` without gradients (visualisation, testing)."""
        return self.fusion_net(a, b), self.loss.generate(a, b)

    @torch.no_grad()
    def predict(self, data: Any) -> list[dict[str, Any]]:
        """Per-sample outputs: sources, fused image, weight maps and task prediction.

        Each dict holds CPU tensors ``a``, ``b``, ``fused`` (``[1, H, W]``),
        ``weight_maps`` (``[2, H, W]``), ``fused_task`` (the fused task view), and, when
        the adapter has ``predict``, ``pred`` (its per-sample prediction), plus
        ``target`` and every non-tensor per-sample field of the batch (e.g. ``id``).
        """
        raw = self.data_preprocessor(data, False)
        batch, targets = read_batch(raw, self.data_keys, self.task)
        fused, weight_maps = self.fuse(batch.a, batch.b)
        if batch.task_a is not None:
            fused_task = self.fusion_net(*batch.task_sources)
        else:
            fused_task = fused
        predictions = self.task.predict(fused_task) if hasattr(self.task, "predict") else None
        meta = per_sample_fields(raw, batch.a.shape[0], exclude=data_key_names(self.data_keys))
        return test_outputs(batch, fused, weight_maps, fused_task, predictions, targets, meta, self.source_names)

    def val_step(self, data: Any) -> list[dict[str, Any]]:
        return self.predict(data)

    def test_step(self, data: Any) -> list[dict[str, Any]]:
        return self.predict(data)

    def forward(self, inputs: Any = None, data_samples: Any = None, mode: str = "tensor") -> Any:
        """MMEngine entry point; ``mode='predict'`` gives :meth:`predict`'s outputs.

        Training goes through :meth:`train_step` (it needs the optimisers); here
        ``mode='tensor'`` returns ``(fused, weight_maps)`` for a batch dict or FusionBatch.
        """
        if mode == "loss":
            raise RuntimeError("MetaFusionModel trains through train_step(data, optim_wrapper)")
        if mode == "predict":
            return self.predict(inputs)
        batch = self.to_fusion_batch(inputs)
        return self.fuse(batch.a, batch.b)


def _log_warning(message: str) -> None:
    print_log(message, logger="current", level=logging.WARNING)
