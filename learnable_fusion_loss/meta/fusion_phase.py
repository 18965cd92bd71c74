"""The fusion phase and the warm-ups of :class:`~learnable_fusion_loss.meta.MetaLossLearner`.

Fusion step (eqs. 8–9): F takes one step on ``L_f`` with G frozen (weights
computed without a graph), optionally plus ``λ · L_t`` (ablation III); then T
takes one step on ``L_t`` of the detached fused images. Every step is guarded: a
non-finite one is not applied (:class:`~learnable_fusion_loss.meta.NonFiniteGuard`).
Ablation IV keeps the meta step's look-ahead ``θ'`` instead of a fusion step. F's
training loss is the learner's objective (:meth:`FusionPhase._objective`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from .._checks import NonFiniteValueError
from ..generators.simple import ConstantWeights
from ..losses.learnable import LearnableLoss, LossOutput
from ..tasks.base import buffers_kept_unless
from .batch import Batch, FusionBatch, call_model
from .guard import NonFiniteGuard, all_finite
from .hypergradient import weight_means, zeros_where_none
from .distributed import mean_over_processes
from .inner import InnerStep
from .warmup import TaskWarmupSource, guarded_task_step, task_warmup_step

__all__ = ["FusionPhase", "Objective"]

#: ``objective(output, batch, detach_params) -> LossOutput``: the model's training loss
#: when it is not ``loss(output, *batch.loss_inputs)``; G's parameters must enter it
#: (without a graph when ``detach_params``).
Objective = Callable[[Any, Batch, bool], LossOutput]


class FusionPhase:
    """F's and T's ordinary steps; mixed into the learner, which sets these attributes."""

    fusion_net: nn.Module
    loss: LearnableLoss
    task: Any
    guard: NonFiniteGuard
    fusion_params: list[nn.Parameter]
    generator_params: list[nn.Parameter]
    fusion_optimizer: torch.optim.Optimizer | None
    fusion_task_weight: float
    warmup_params: Callable[[Batch], Tensor] | None
    objective: Objective | None
    inner: InnerStep
    current_inner_lr: Callable[[], float]
    _average_over_processes: Callable[[], None]

    def _objective(
        self, output: Any, batch: Batch, loss_params: Tensor | None = None, detach_params: bool = False
    ) -> LossOutput:
        """The model's training loss of ``output``: ``loss(output, *batch.loss_inputs)``, or the
        learner's ``objective`` (e.g. a loss computed inside the model, :class:`LearnableLossHook`)."""
        if self.objective is None:
            return self.loss(output, *batch.loss_inputs, loss_params=loss_params, detach_params=detach_params)
        if loss_params is not None:
            raise ValueError("fixed loss parameters (a fusion warm-up) need the learner's default objective")
        return self.objective(output, batch, detach_params)

    def task_step(self, batch: Batch) -> dict[str, float]:
        """T's ordinary step on F's current (detached) output for the task view."""
        self._average_over_processes()
        with buffers_kept_unless(self.fusion_net) as applied, torch.no_grad():
            fused_task = call_model(self.fusion_net, batch.task_inputs)
            applied[0] = all_finite([fused_task])  # else no statistics of a NaN pass are kept
        task_stats = guarded_task_step(self.task, fused_task, batch.target, self.guard)
        return {k if k.startswith(("loss", "skipped_")) else f"task_{k}": v for k, v in task_stats.items()}

    def fusion_step(
        self, batch: Batch, loss_params: Tensor | None = None, train_task: bool = True
    ) -> dict[str, float]:
        """F on ``L_f`` (G frozen) [+ λ L_t], then T on detached fused images.

        Args:
            batch: the training batch.
            loss_params: fixed loss parameters instead of G's (G is then not run);
                :meth:`fusion_warmup_step` passes uniform weights.
            train_task: also take T's step on the fused task view (Algorithm 1).

        A non-finite fusion loss or gradient is not applied (``skipped_fusion``).
        """
        stats = self._fusion_update(batch, loss_params, "fusion")
        if train_task:
            stats.update(self.task_step(batch))
        return stats

    def _fusion_update(self, batch: Batch, loss_params: Tensor | None, phase: str) -> dict[str, float]:
        """F's step on ``L_f`` [+ λ L_t] (none for an F without parameters), guarded."""
        self._average_over_processes()
        self.fusion_net.train()
        if not self.fusion_params:  # nothing to step (ablation V with G's weights): T only
            with torch.no_grad():
                output = self._objective(call_model(self.fusion_net, batch.inputs), batch, loss_params)
            stats = {f"{k}": float(v) for k, v in output.terms.items()}
            stats["loss_fusion"] = stats.pop("loss")
            stats.update(weight_means(output.loss_params))
            return stats
        # A skipped step leaves F's BatchNorm statistics as they were, too.
        with buffers_kept_unless(self.fusion_net) as applied:
            stats = self._guarded_fusion_step(batch, loss_params, phase)
            applied[0] = not stats[f"skipped_{phase}"]
        return stats

    def _guarded_fusion_step(self, batch: Batch, loss_params: Tensor | None, phase: str) -> dict[str, float]:
        assert self.fusion_optimizer is not None
        self.fusion_optimizer.zero_grad(set_to_none=True)
        stats: dict[str, float] = {}
        what = "fusion loss or gradient"
        try:
            fused = call_model(self.fusion_net, batch.inputs)
            output = self._objective(fused, batch, loss_params, detach_params=True)
            total = output.loss
            stats.update({f"{k}": float(v.detach()) for k, v in output.terms.items()})
            stats["loss_fusion"] = stats.pop("loss")
            stats.update(weight_means(output.loss_params))
            if self.fusion_task_weight > 0:
                loss_task_f = self.task.loss(call_model(self.fusion_net, batch.task_inputs), batch.target)
                total = total + self.fusion_task_weight * loss_task_f
                stats["loss_task_on_f"] = float(loss_task_f.detach())
            finite = bool(torch.isfinite(total.detach()))
            if finite:
                total.backward()
                finite = all_finite(p.grad for p in self.fusion_params)
        except NonFiniteValueError as err:  # F's output, checked by the loss (or T, λ > 0)
            finite, what = False, f"input ({err})"
        if finite:
            self.fusion_optimizer.step()
        self.fusion_optimizer.zero_grad(set_to_none=True)
        for param in self.generator_params:  # a task term must never leave grads on G
            param.grad = None
        stats.update(self.guard.record(phase, finite, what))
        return stats

    # ------------------------------------------- ablation IV: keep the look-ahead
    def _inner_gradient(self, batch: Batch) -> list[Tensor]:
        """``∇_θ L_f(F_θ(tr); G_φ(tr))``, first order: the gradient of F's look-ahead step."""
        self.fusion_net.train()
        output = self._objective(call_model(self.fusion_net, batch.inputs), batch, detach_params=True)
        grads = mean_over_processes(torch.autograd.grad(output.loss, self.fusion_params, allow_unused=True))
        return [g.detach() for g in zeros_where_none(grads, self.fusion_params)]

    def _keep_look_ahead(self, batch: Batch, grads: list[Tensor] | None) -> dict[str, float]:
        """θ ← θ' (the inner step's rule), then T's step on the updated F's task view."""
        stats: dict[str, float] = {}
        if grads is not None:
            finite = all_finite(grads)
            stats.update(self.guard.record("fusion", finite, "look-ahead gradient of F"))
            if finite and self.inner.inner_optimizer == "adam":
                # θ' of the Adam rule is exactly torch's Adam step from F's state;
                # stepping the optimiser also advances that state, as a real step must.
                assert self.fusion_optimizer is not None
                self.fusion_optimizer.zero_grad(set_to_none=True)
                for param, grad in zip(self.fusion_params, grads, strict=True):
                    param.grad = grad.clone()
                self.fusion_optimizer.step()
                self.fusion_optimizer.zero_grad(set_to_none=True)
            elif finite:
                eta = self.current_inner_lr()
                with torch.no_grad():
                    for param, grad in zip(self.fusion_params, grads, strict=True):
                        param.sub_(grad, alpha=eta)
        stats.update(self.task_step(batch))
        return stats

    # ------------------------------------------------------------ warm-ups
    def fusion_warmup_step(self, batch: Batch) -> dict[str, float]:
        """F alone on the loss with fixed loss parameters: ``warmup_params(batch)``.

        Neither G nor T changes: this only moves F towards a sensible output before
        the first meta phase, so that the inner step starts from an F whose output
        the task can use (an untrained F's output is noise to T). The default fixed
        parameters are fusion's: uniform weights over the two sources (½–½); any
        other batch needs the learner's ``warmup_params``.
        """
        if not self.fusion_params:
            raise ValueError("a fusion warm-up needs an F with trainable parameters: set fusion_warmup_steps=0")
        if self.warmup_params is not None:
            fixed = self.warmup_params(batch)
        elif isinstance(batch, FusionBatch):
            fixed = ConstantWeights((1.0, 1.0))(*batch.loss_inputs)
        else:
            raise ValueError(
                f"a warm-up with fixed loss parameters on a {type(batch).__name__} needs the learner's "
                "warmup_params (a callable batch -> loss parameters); uniform source weights are "
                "defined for a FusionBatch only")
        return self._fusion_update(batch, fixed, "fusion_warmup")

    def task_warmup_step(self, batch: Batch, source: TaskWarmupSource = "both") -> dict[str, float]:
        """T alone, one ordinary step per input of ``source`` (F and G untouched).

        ``source``: ``"a"`` / ``"b"`` (the task view of one source), ``"both"`` (one
        step on each), ``"mean"`` / ``"max"`` (a fixed rule's fused image) or
        ``"fused"`` (F's current output, e.g. after a fusion warm-up).
        """
        self._average_over_processes()
        return task_warmup_step(self.task, self.fusion_net, batch, source, self.guard)
