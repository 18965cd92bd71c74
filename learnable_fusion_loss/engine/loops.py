"""Algorithm 1 of the paper as an MMEngine training loop (:class:`MetaFusionTrainLoop`).

Each epoch runs the iterations of its :class:`~.plan.EpochPlan`: ``M`` meta steps
(inner step of F on ``L_f``, T', outer step of G on ``L_t``;
:meth:`~learnable_fusion_loss.meta.MetaLossLearner.meta_step`), then ``N`` fusion
steps (F on ``L_f`` with G frozen, then T on the detached fused images;
:meth:`~learnable_fusion_loss.meta.MetaLossLearner.fusion_step`).
``schedule='interleaved'`` (ablation IV, no separate fusion phase) runs ``M``
iterations that each do a meta step in which F keeps its look-ahead step ``θ'`` and
T takes its step on the updated F's meta-train output.

Optional warm-ups (off by default) run once, before the first epoch:
``fusion_warmup_steps`` iterations of F alone on the loss with fixed ½–½ weights (G
and T untouched), then ``task_warmup_steps`` iterations of T alone on
``task_warmup_source`` (a source, both sources, a fixed rule's fused image, or F's
output). They count as runner iterations (so checkpoints and resume cover them) but
belong to no epoch: epoch ``e`` starts at iteration ``warmup_iters + e *
iters_per_epoch``, and their log lines read ``Warm-up(train) [fusion_warmup][3/500]``
(iteration 3 of 500 warm-up iterations), not ``Epoch(train) [1][3/<epoch length>]``.

The position inside an epoch is ``runner.iter - warmup_iters - epoch *
iters_per_epoch``, so a run resumed from an iteration checkpoint continues the plan
where it stopped. The runner's ``train_dataloader`` is the :class:`EpochPlan`, whose
``len`` is the number of iterations per epoch (MMEngine's progress display and ETA).
"""

from __future__ import annotations

import re
from typing import Any

import torch
from mmengine.logging import print_log
from mmengine.runner import BaseLoop, LogProcessor
from torch.utils.data import DataLoader

from ..registry import LOOPS
from .iteration import IterationData
from .plan import SCHEDULES, EpochPlan, IterationPlan, SeededSamples

# EpochPlan, IterationPlan, SeededSamples and SCHEDULES lived here; their module is plan.
__all__ = ["MetaFusionTrainLoop", "WarmupLogProcessor", "EpochPlan", "IterationPlan", "SeededSamples", "SCHEDULES"]

#: Message-hub scalars that survive a phase change (timing for the ETA; learning rates
#: are rewritten before every iteration anyway).
_KEEP_SCALARS = ("train/time", "train/data_time")

#: The header MMEngine's LogProcessor writes for a training iteration, by epoch.
_EPOCH_HEADER = re.compile(r"^Epoch\(train\) *\[ *\d+\]\[ *\d+/\d+\]")


class WarmupLogProcessor(LogProcessor):
    """MMEngine's :class:`LogProcessor`, with warm-up iterations logged as such.

    By epoch, MMEngine heads a training log line ``Epoch(train) [e][i/n]``, ``n`` the
    epoch length; a warm-up iteration belongs to no epoch, and ``i`` may exceed ``n``
    (``[1][500/70]``). During the warm-up the header is
    ``Warm-up(train) [<phase>][i/N]`` instead: ``i`` of the ``N`` warm-up iterations.
    Everything else (values, ETA, the scalars written to the backends) is MMEngine's.
    """

    @classmethod
    def like(cls, processor: LogProcessor) -> WarmupLogProcessor:
        """A copy of ``processor`` (same window sizes, digits, custom_cfg ...) of this class."""
        copy = cls.__new__(cls)
        copy.__dict__.update(vars(processor))
        return copy

    def get_log_after_iter(self, runner: Any, batch_idx: int, mode: str) -> tuple[dict, str]:
        tag, text = super().get_log_after_iter(runner, batch_idx, mode)
        loop = runner.train_loop if mode == "train" else None
        phase = getattr(loop, "warmup_phase", None)
        if phase is not None and self.by_epoch:
            total = loop.warmup_iters
            header = f"Warm-up(train) [{phase}][{str(batch_idx + 1).rjust(len(str(total)))}/{total}]"
            text = _EPOCH_HEADER.sub(header, text, count=1)
        return tag, text


@LOOPS.register_module()
class MetaFusionTrainLoop(BaseLoop):
    """Algorithm 1: per epoch, ``M`` meta steps (G) then ``N`` fusion steps (F, T).

    Args:
        runner: the MMEngine runner.
        dataloader: the training dataloader config (or a DataLoader); only its
            dataset, batch size, collate function and worker settings are used.
        max_epochs: L, the number of epochs (paper: 50; public code: 40).
        meta_steps: M, meta steps per epoch (paper: 200).
        fusion_steps: N, fusion steps per epoch (default: one pass over the data).
        schedule: ``"phased"`` (Algorithm 1) or ``"interleaved"`` (ablation IV).
        val_begin: first epoch after which the validation loop runs.
        val_interval: validate every this many epochs (and after the last one).
        fusion_warmup_steps: K iterations of F alone on the fixed ½–½ loss before
            the first meta phase (0: off, as in the paper).
        task_warmup_steps: K iterations of T alone before the first meta phase,
            after F's warm-up (0: off, as in the paper).
        task_warmup_source: T's warm-up input: ``"a"``, ``"b"``, ``"both"`` (a step on
            each), ``"mean"``, ``"max"`` or ``"fused"`` (F's output).
    """

    def __init__(
        self,
        runner: Any,
        dataloader: DataLoader | dict,
        max_epochs: int,
        meta_steps: int = 200,
        fusion_steps: int | None = None,
        schedule: str = "phased",
        val_begin: int = 1,
        val_interval: int = 1,
        fusion_warmup_steps: int = 0,
        task_warmup_steps: int = 0,
        task_warmup_source: str = "both",
    ) -> None:
        super().__init__(runner, dataloader)
        if int(max_epochs) != max_epochs or max_epochs < 1:
            raise ValueError(f"max_epochs must be a positive integer, got {max_epochs}")
        template = self.dataloader
        seed = runner.seed if runner.seed is not None else 0
        self.dataloader = EpochPlan(template, meta_steps, fusion_steps, schedule, seed,
                                    fusion_warmup_steps, task_warmup_steps, task_warmup_source)
        self._max_epochs = int(max_epochs)
        self.warmup_iters = self.dataloader.warmup_iters
        self._max_iters = self.warmup_iters + self._max_epochs * len(self.dataloader)
        self._epoch = 0
        self._iter = 0
        self.val_begin = val_begin
        self.val_interval = val_interval
        self.stop_training = False
        self.current_phase: str | None = None
        metainfo = getattr(self.dataloader.dataset, "metainfo", None)
        if metainfo is not None:
            self.runner.visualizer.dataset_meta = metainfo
        if self.warmup_iters and type(runner.log_processor) is LogProcessor:
            # Name the warm-up in its log lines (a custom log processor is left as it is).
            runner.log_processor = WarmupLogProcessor.like(runner.log_processor)

    @property
    def max_epochs(self) -> int:
        return self._max_epochs

    @property
    def max_iters(self) -> int:
        return self._max_iters

    @property
    def epoch(self) -> int:
        return self._epoch

    @property
    def iter(self) -> int:
        return self._iter

    @property
    def iters_per_epoch(self) -> int:
        return len(self.dataloader)

    @property
    def warmup_phase(self) -> str | None:
        """The warm-up phase running now (``fusion_warmup`` / ``task_warmup``), else None."""
        return self.current_phase if self.current_phase in ("fusion_warmup", "task_warmup") else None

    def state(self) -> dict[str, Any]:
        """The epoch plan's settings, stored in checkpoints by ``TrainingStateHook``.

        (The position itself is MMEngine's ``meta['epoch']`` / ``meta['iter']``.)
        """
        return self.dataloader.state()

    def check_resumable(self, saved: dict[str, Any]) -> None:
        """Refuse to resume inside an epoch whose plan would differ from the saved run's."""
        current = self.dataloader.state()
        changed = {k: (saved[k], current[k]) for k in current if k in saved and saved[k] != current[k]}
        if changed:
            details = ", ".join(f"{k}: checkpoint {a!r} vs config {b!r}" for k, (a, b) in changed.items())
            raise RuntimeError(f"cannot resume: the epoch plan changed ({details})")

    def run(self) -> torch.nn.Module:
        """Train until ``max_epochs``; resumes at ``runner.iter`` inside its epoch."""
        self.runner.call_hook("before_train")
        self._clear_phase_scalars()
        if self._iter < self.warmup_iters and not self.stop_training:
            self.run_warmup()
        while self._epoch < self._max_epochs and not self.stop_training:
            self.run_epoch()
            if (
                self.runner.val_loop is not None
                and self._epoch >= self.val_begin
                and (self._epoch % self.val_interval == 0 or self._epoch == self._max_epochs)
            ):
                self.runner.val_loop.run()
        self.runner.call_hook("after_train")
        return self.runner.model

    def run_warmup(self) -> None:
        """F's and T's warm-ups (no epoch: ``runner.epoch`` stays 0); resumes inside them.

        ``before_train_epoch`` hooks run (timers, runtime info), ``after_train_epoch``
        hooks do not: epoch-based schedulers and checkpoints do not count the warm-up.
        """
        self.runner.call_hook("before_train_epoch")
        self.runner.model.train()
        self.current_phase = None
        for idx, phase, data in self.dataloader.iterate_warmup(self._iter):
            if phase != self.current_phase:
                self._enter_phase(phase, idx)
            self.run_iter(idx, data)
            if self.stop_training:
                break

    def run_epoch(self) -> None:
        start = self._iter - self.warmup_iters - self._epoch * self.iters_per_epoch
        if not 0 <= start <= self.iters_per_epoch:
            raise RuntimeError(
                f"iteration {self._iter} is not inside epoch {self._epoch} of "
                f"{self.iters_per_epoch} iterations: the checkpoint does not match this config"
            )
        self.runner.call_hook("before_train_epoch")
        self.runner.model.train()
        self.current_phase = None
        for idx, phase, data in self.dataloader.iterate(self._epoch, start):
            if phase != self.current_phase:
                self._enter_phase(phase, idx)
            self.run_iter(idx, data)
            if self.stop_training:
                break
        self.runner.call_hook("after_train_epoch")
        self._epoch += 1

    def run_iter(self, idx: int, data: IterationData) -> None:
        self.runner.call_hook("before_train_iter", batch_idx=idx, data_batch=data)
        outputs = self.runner.model.train_step(data, optim_wrapper=self.runner.optim_wrapper)
        self.runner.call_hook("after_train_iter", batch_idx=idx, data_batch=data, outputs=outputs)
        self._iter += 1

    def _enter_phase(self, phase: str, idx: int) -> None:
        plan = self.dataloader
        counts = {
            "meta": f"{plan.meta_steps} meta steps (inner step of F, T', outer step of G)",
            "fusion": f"{plan.fusion_steps} fusion steps (F on L_f with G frozen, T on L_t)",
            "interleaved": f"{plan.meta_steps} meta steps in which F keeps its look-ahead step (no fusion phase)",
            "fusion_warmup": f"{plan.fusion_warmup_steps} steps of F alone on the fixed 1/2-1/2 loss",
            "task_warmup": f"{plan.task_warmup_steps} steps of T alone on {plan.task_warmup_source!r}",
        }[phase]
        if phase.endswith("_warmup"):
            where = f"Warm-up: {phase} from iteration {idx + 1}/{plan.warmup_iters}"
        else:
            where = (f"Epoch {self._epoch + 1}/{self._max_epochs}: {phase} phase from iteration "
                     f"{idx + 1}/{plan.iters_per_epoch}")
        print_log(f"{where}: {counts}", logger="current")
        self.current_phase = phase
        self._clear_phase_scalars()

    def _clear_phase_scalars(self) -> None:
        """Drop the previous phase's logged values so the log shows this phase's only."""
        hub = self.runner.message_hub
        scalars = hub.log_scalars
        resumed = getattr(hub, "_resumed_keys", {})  # else a checkpoint lists keys it lacks
        for key in [k for k in scalars if k.startswith("train/") and k not in _KEEP_SCALARS]:
            del scalars[key]
            resumed.pop(key, None)
