"""The meta learner: one meta step trains G, one ordinary step trains F and T.

F is any model trained with a :class:`~learnable_fusion_loss.losses.LearnableLoss`
(a fusion net, a denoiser, ...) and T any task on F's output; the learner reads a
batch only through its ``inputs``, ``loss_inputs``, ``task_inputs`` and ``target``
(:class:`~learnable_fusion_loss.meta.MetaBatch`; fusion's is
:class:`~learnable_fusion_loss.meta.FusionBatch`). The paper's names follow.

Meta step (paper eqs. 4–7), on a meta-train batch ``tr`` and a meta-test batch ``te``:

1. ``T'`` = T after one ordinary step on ``L_t(F_θ(tr), y_tr)`` (eq. 5). T's
   parameters, buffers and optimiser state are snapshotted in memory first and
   restored afterwards (the public code round-trips T through disk every step).
2. ``θ' = θ − η ∇_θ L_f(F_θ(tr), tr; G_φ(tr))`` with ``create_graph`` (eq. 4), so
   ``θ'`` is a function of φ. η is F's optimiser's current learning rate unless
   given.
3. ``∇_φ L_t(T'(F_θ'(te)), y_te)`` (eqs. 6–7) by ``autograd.grad`` w.r.t. φ only:
   F's and T's ``.grad`` are never touched, and F's buffers are restored, so a
   meta step changes G and nothing else.
4. Outer update of G: Adam (paper) or the public code's max-normalised step
   ``φ ← φ − lr · g / max|g|``.

With ``hypergradient="forward"`` steps 2–3 give the same ``∂L_t/∂φ`` without the
``create_graph`` pass: a first-order inner gradient, ``v = ∂L_t/∂θ'``, one
forward-mode JVP of F and a double backward through the fusion loss and G only
(see :meth:`MetaLossLearner.hypergradient`).

Fusion step (eqs. 8–9): F takes one step on ``L_f`` with G frozen (weights
computed without a graph), optionally plus ``λ · L_t`` (ablation III); then T
takes one step on ``L_t`` of the detached fused images (:mod:`.fusion_phase`).

Every phase is guarded (:class:`~learnable_fusion_loss.meta.NonFiniteGuard`): a
non-finite loss, gradient, hypergradient or fused image given to T is never
applied; the step is skipped, reported and counted (``skipped_<phase>``,
``skipped_total``), and a run of such skips in one phase stops training.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Literal

import torch
from torch import Tensor, nn

from .._checks import NonFiniteValueError
from ..losses.learnable import LearnableLoss, LossOutput
from ..tasks.base import TaskAdapter, as_task, buffers_kept_unless, restore_keeping_optimizer
from .batch import Batch, call_model
from .distributed import average_gradients_before_step, mean_over_processes, world_size
from .fusion_phase import FusionPhase, Objective
from .guard import NonFiniteGuard
from .hypergradient import Hypergradient, weight_means, zeros_where_none
from .inner import Backend, InnerOptimizer, InnerStep
from .forward import ForwardHypergradient
from .warmup import TASK_WARMUP_SOURCES, TaskWarmupSource, task_warmup_step

OuterStep = Literal["adam", "max_norm"]
HypergradientMode = Literal["unrolled", "forward"]


class MetaLossLearner(FusionPhase, ForwardHypergradient):
    """Meta-learns a :class:`LearnableLoss` for a model F and a task T.

    Works on any :class:`~learnable_fusion_loss.meta.Batch`: F is called as
    ``F(*batch.inputs)`` (or ``F(**inputs)`` for named inputs), the loss as
    ``loss(output, *batch.loss_inputs)`` and the task as
    ``task.loss(F(*batch.task_inputs), batch.target)``. Fusion is the instance with
    :class:`~learnable_fusion_loss.meta.FusionBatch` (``F(a, b)``, ``loss(fused, a, b)``).

    Where the assumptions hold: the three backends and ``"unrolled"`` need F and the
    loss to be twice differentiable; ``"forward"`` also needs F to support forward-mode
    AD and to be deterministic, and the loss to be a function of F's output tensor
    (F runs twice on the meta-train batch). The fusion warm-up needs fixed loss
    parameters (``warmup_params``; uniform source weights for a fusion batch); the
    task warm-up's ``"a"``/``"b"``/``"mean"``/``"max"`` sources need two task inputs.

    >>> import torch
    >>> from torch import nn
    >>> from learnable_fusion_loss.losses import LearnableLoss
    >>> from learnable_fusion_loss.meta import MetaBatch
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> denoiser = nn.Conv2d(1, 1, 3, padding=1)   # a one-input model
    >>> weights = nn.Sequential(nn.Conv2d(1, 1, 3, padding=1), nn.Softplus())  # G(noisy)
    >>> def weighted_l1(output, inputs, w):   # inputs = (noisy, clean)
    ...     return {"loss": (w * (output - inputs[1]).abs()).mean()}
    >>> loss = LearnableLoss(weights, weighted_l1, generator_inputs=(0,))
    >>> learner = MetaLossLearner(denoiser, loss, lambda out, target: (out - target).pow(2).mean(),
    ...                           torch.optim.SGD(denoiser.parameters(), lr=0.1))
    >>> clean = torch.rand(2, 1, 8, 8)
    >>> noisy = clean + 0.1 * torch.randn_like(clean)
    >>> batch = MetaBatch(inputs=(noisy,), loss_inputs=(noisy, clean), target=clean)
    >>> stats = learner.meta_step(batch, batch)     # G's step: inner, T', outer
    >>> stats["hypergrad_norm"] > 0
    True

    Args:
        fusion_net: F, the model trained with the loss: any ``nn.Module`` called on
            ``batch.inputs`` (for fusion ``(a, b) -> fused``).
        loss: the learnable loss; its ``generator`` is G.
        task: a :class:`~learnable_fusion_loss.tasks.TaskAdapter` or a bare
            ``task_loss(fused, target)`` callable.
        fusion_optimizer: F's optimiser (its learning rate is the inner η); None only
            for an F without trainable parameters (e.g. ablation V's weighted sum of
            the sources with G's own weights), whose "inner step" is the identity.
        generator_optimizer: G's optimiser for ``outer_step="adam"``; default
            ``Adam(G.parameters(), lr=outer_lr)``.
        outer_step: ``"adam"`` (paper) or ``"max_norm"`` (public code).
        outer_lr: learning rate of the outer step (paper: 1e-4).
        outer_lr_from_fusion: the max-normalised outer step takes F's optimiser's
            *current* learning rate instead of ``outer_lr``, so it follows F's schedule
            (the public code's ``outer_update(Loss_model, lr_epoch)``). Only with
            ``outer_step="max_norm"``: an Adam outer step has its own optimiser, which
            MMEngine's parameter schedulers schedule.
        inner_backend: ``"torch.func"`` (the default), ``"higher"`` or ``"learn2learn"``;
            only ``hypergradient="unrolled"`` differentiates through a backend, so
            setting it with ``"forward"`` is refused rather than ignored.
        inner_optimizer: ``"sgd"`` (default) or ``"adam"`` (see :class:`InnerStep`).
        inner_lr: fixed η; default ties η to ``fusion_optimizer``'s current lr.
        fusion_task_weight: λ ≥ 0; F's fusion step also minimises ``λ · L_t``
            (ablation III). 0 in the paper's method.
        allow_fresh_adam: see :class:`InnerStep`.
        hypergradient: ``"unrolled"`` (default) differentiates through the inner step
            with ``inner_backend``; ``"forward"`` computes the same hypergradient
            without a second-order graph of F (see :meth:`hypergradient`): about half
            the peak memory of a meta step, in about the same time on CPU (its JVP of
            F costs about three no-grad forwards; the Restormer blocks of nn/ stream it in bands).
            Needs an F whose operations support forward-mode AD and that is
            deterministic (no dropout), since F runs twice on the meta-train pair.
        keep_task_optimizer_state: after the meta step, T's weights and buffers are
            restored but its optimiser keeps the state of the T′ step (Adam's moments
            and step count), as the public code does (it reloads T's ``state_dict``
            only). Default False: T is restored whole, so a meta step changes G only.
        guard: counts and reports non-finite (skipped) steps; default
            ``NonFiniteGuard()`` (20 in a row in one phase stop training).
        warmup_params: the fixed loss parameters of the fusion warm-up, a callable
            ``batch -> loss_params``; default uniform source weights (fusion only).
        objective: F's training loss when it is not ``loss(F(*inputs), *loss_inputs)``:
            ``objective(output, batch, detach_params) -> LossOutput`` (e.g. a loss that
            the model computes itself, with G's parameters inside; ``"unrolled"`` only).
    """

    def __init__(
        self,
        fusion_net: nn.Module,
        loss: LearnableLoss,
        task: TaskAdapter | Callable[[Tensor, Any], Tensor],
        fusion_optimizer: torch.optim.Optimizer | None,
        generator_optimizer: torch.optim.Optimizer | None = None,
        outer_step: OuterStep = "adam",
        outer_lr: float = 1e-4,
        inner_backend: Backend | None = None,
        inner_optimizer: InnerOptimizer = "sgd",
        inner_lr: float | None = None,
        fusion_task_weight: float = 0.0,
        allow_fresh_adam: bool = False,
        hypergradient: HypergradientMode = "unrolled",
        outer_lr_from_fusion: bool = False,
        keep_task_optimizer_state: bool = False,
        guard: NonFiniteGuard | None = None,
        warmup_params: Callable[[Batch], Tensor] | None = None,
        objective: Objective | None = None,
    ) -> None:
        if hypergradient not in ("unrolled", "forward"):
            raise ValueError(f"hypergradient must be 'unrolled' or 'forward', got {hypergradient!r}")
        if outer_step not in ("adam", "max_norm"):
            raise ValueError(f"outer_step must be 'adam' or 'max_norm', got {outer_step!r}")
        if not (outer_lr > 0 and math.isfinite(outer_lr)):
            raise ValueError(f"outer_lr must be a finite positive number, got {outer_lr}")
        if hypergradient == "forward" and inner_backend is not None:
            raise ValueError(
                f"inner_backend={inner_backend!r} has no effect with hypergradient='forward' (it "
                "differentiates the inner step itself, with no backend): remove inner_backend, or "
                "use hypergradient='unrolled' to differentiate through that backend")
        if hypergradient == "forward" and objective is not None:
            raise ValueError("hypergradient='forward' needs the loss of F's output tensor; a custom "
                             "objective needs hypergradient='unrolled'")
        if outer_lr_from_fusion and outer_step != "max_norm":
            raise ValueError(
                "outer_lr_from_fusion=True needs outer_step='max_norm'; an Adam outer step has G's "
                "own optimiser (schedule it with a param_scheduler on 'generator')")
        if fusion_task_weight < 0:
            raise ValueError(f"fusion_task_weight must be >= 0, got {fusion_task_weight}")
        if not isinstance(loss, LearnableLoss):
            raise TypeError(f"loss must be a LearnableLoss, got {type(loss).__name__}")
        self.fusion_net = fusion_net
        self.loss = loss
        self.task = as_task(task)
        self.fusion_params = [p for p in fusion_net.parameters() if p.requires_grad]
        if fusion_optimizer is None and self.fusion_params:
            raise ValueError("fusion_optimizer is required: F has trainable parameters")
        self.fusion_optimizer = fusion_optimizer
        self.generator_params = [p for p in loss.generator.parameters() if p.requires_grad]
        if generator_optimizer is None and outer_step == "adam" and self.generator_params:
            generator_optimizer = torch.optim.Adam(self.generator_params, lr=outer_lr)
        self.generator_optimizer = generator_optimizer
        self.outer_step = outer_step
        self.outer_lr = outer_lr
        self.outer_lr_from_fusion = bool(outer_lr_from_fusion)
        self.keep_task_optimizer_state = bool(keep_task_optimizer_state)
        if self.keep_task_optimizer_state and getattr(self.task, "optimizer", None) is None:
            raise ValueError("keep_task_optimizer_state=True needs a task with an optimizer (T's Adam state)")
        self.inner = InnerStep(inner_backend or "torch.func", inner_optimizer, allow_fresh_adam)
        self.inner_lr = inner_lr
        self.fusion_task_weight = float(fusion_task_weight)
        self.hypergradient_mode = hypergradient
        self.guard = guard if guard is not None else NonFiniteGuard()
        self.warmup_params = warmup_params
        self.objective = objective

    @property
    def generator(self) -> nn.Module:
        return self.loss.generator

    def current_inner_lr(self) -> float:
        """η: fixed, or F's optimiser's current learning rate (as the public code)."""
        if self.inner_lr is not None:
            return float(self.inner_lr)
        if self.fusion_optimizer is None:  # no F parameters: nothing steps with η
            return 0.0
        return float(self.fusion_optimizer.param_groups[0]["lr"])

    def current_outer_lr(self) -> float:
        """The max-normalised outer step's lr: fixed, or F's current lr (public code)."""
        if self.outer_lr_from_fusion and self.fusion_optimizer is not None:
            return float(self.fusion_optimizer.param_groups[0]["lr"])
        return float(self.outer_lr)

    # -------------------------------------------------------------- meta step
    @contextmanager
    def _task_prime(self, meta_train: Batch) -> Iterator[None]:
        """Within the block, T is T' (eq. 5); on exit T and F's buffers are restored."""
        fusion_buffers = {k: v.detach().clone() for k, v in self.fusion_net.named_buffers()}
        snapshot = self.task.snapshot()
        try:
            with torch.no_grad():
                fused = call_model(self.fusion_net, meta_train.task_inputs)
            self.task.train_step(fused.detach(), meta_train.target)
            yield
        finally:
            if self.keep_task_optimizer_state:  # the public code: T's weights reloaded, its Adam state not
                restore_keeping_optimizer(self.task, snapshot)
            else:
                self.task.restore(snapshot)
            with torch.no_grad():
                for name, buffer in self.fusion_net.named_buffers():
                    buffer.copy_(fusion_buffers[name])

    def _meta_loss(self, meta_train: Batch, meta_test: Batch) -> tuple[Tensor, LossOutput]:
        """``L_t(T'(F_θ'(te)))`` as a function of φ (call inside ``_task_prime``)."""
        captured: dict[str, LossOutput] = {}

        def inner_loss(model: Callable[..., Tensor]) -> Tensor:
            output = self._objective(call_model(model, meta_train.inputs), meta_train)
            captured["inner"] = output
            return output.loss

        fast = self.inner.adapt(
            self.fusion_net, inner_loss, self.current_inner_lr(), optimizer=self.fusion_optimizer
        )
        fused_test = call_model(fast, meta_test.task_inputs)
        return self.task.loss(fused_test, meta_test.target), captured["inner"]

    def hypergradient(self, meta_train: Batch, meta_test: Batch) -> Hypergradient:
        """``∂L_t/∂φ`` for one meta-train / meta-test pair; nothing is updated.

        ``"unrolled"``: back-propagate ``L_t`` through ``θ'(φ)`` built by the inner
        backend with ``create_graph`` (the textbook MAML computation).

        ``"forward"``: the same number, by the chain rule written out. With
        ``θ' = U(θ, g)``, ``g = ∇_θ L_f = J_Fᵀ ∇_I ℓ(I; φ)`` (``I = F_θ(tr)``,
        ``J_F = ∂I/∂θ``, ``ℓ`` the fusion loss of the fused image) and
        ``v = ∂L_t/∂θ'``::

            ∂L_t/∂φ = ∂/∂φ ⟨g, w⟩ = ∂/∂φ ⟨∇_I ℓ(I; φ), J_F w⟩,   w = (∂U/∂g)ᵀ v

        ``J_F`` does not depend on φ, so ``u = J_F w`` is one forward-mode JVP of F
        (no graph kept), and the rest is a double backward through the fusion loss
        and G only. ``∂U/∂g`` is elementwise (``−η`` for SGD; Adam's is diagonal too)
        and comes from autograd on the update rule. No second-order graph of F is
        ever built: F's activations live for one first-order pass at a time.
        """
        self._average_over_processes()
        if not self.fusion_params:
            hyper = self._hypergradient_direct(meta_train, meta_test)
        elif self.hypergradient_mode == "forward":
            hyper = self._hypergradient_forward(meta_train, meta_test)
        else:
            with self._task_prime(meta_train):
                loss_task, inner = self._meta_loss(meta_train, meta_test)
                grads = self._generator_grads(loss_task)
            hyper = Hypergradient(grads=grads, loss_task=loss_task.detach(), inner=inner)
        if world_size() == 1:
            return hyper
        # Each process's share; their mean is the joined batch's (see .distributed).
        *grads, loss_task = mean_over_processes([*hyper.grads, hyper.loss_task])
        return Hypergradient(grads=grads, loss_task=loss_task, inner=hyper.inner)

    def _average_over_processes(self) -> None:
        """On P processes every optimiser step averages its gradients first (once per optimiser)."""
        if world_size() > 1:
            for optimizer in (self.fusion_optimizer, self.generator_optimizer, getattr(self.task, "optimizer", None)):
                average_gradients_before_step(optimizer)

    def _generator_grads(self, output: Tensor) -> list[Tensor]:
        if not self.generator_params:
            return []
        return zeros_where_none(
            torch.autograd.grad(output, self.generator_params, allow_unused=True), self.generator_params)

    def _hypergradient_direct(self, meta_train: Batch, meta_test: Batch) -> Hypergradient:
        """An F without parameters: θ' = θ, so ``∂L_t/∂φ`` is the direct derivative.

        It is non-zero only where F itself uses G (ablation V: ``F = w_a·a + w_b·b``
        with G's weights); for a fixed rule it is zero.
        """
        with torch.no_grad():
            inner = self._objective(call_model(self.fusion_net, meta_train.inputs), meta_train)
        with self._task_prime(meta_train):
            loss_task = self.task.loss(call_model(self.fusion_net, meta_test.task_inputs), meta_test.target)
            grads = self._generator_grads(loss_task) if loss_task.requires_grad else [
                torch.zeros_like(p) for p in self.generator_params]
        return Hypergradient(grads=grads, loss_task=loss_task.detach(), inner=inner)

    def meta_objective(self, meta_train: Batch, meta_test: Batch) -> float:
        """The scalar whose gradient :meth:`hypergradient` returns (for checks)."""
        with self._task_prime(meta_train):
            loss_task, _ = self._meta_loss(meta_train, meta_test)
        return float(loss_task.detach())

    def meta_step(
        self, meta_train: Batch, meta_test: Batch, update_fusion: bool = False
    ) -> dict[str, float]:
        """Inner step, T', outer step: updates G only. Returns logging stats.

        ``update_fusion=True`` (ablation IV, no separate fusion phase): F keeps its
        look-ahead step ``θ'`` (taken with G's weights before the outer update, so F
        "is updated during G's outer update"), then T takes one step on the updated
        F's meta-train output.
        """
        with buffers_kept_unless(self.fusion_net) as kept:  # IV's look-ahead pass moves them
            try:
                inner_grads = self._inner_gradient(meta_train) if update_fusion and self.fusion_params else None
                hyper = self.hypergradient(meta_train, meta_test)
            except NonFiniteValueError as err:  # F's output fed to T is non-finite: nothing to apply
                return self.guard.record("meta", False, f"input ({err})")
            kept[0] = True
        stats = {
            "loss_task_meta": float(hyper.loss_task),
            "loss_fusion_meta": float(hyper.inner.loss.detach()),
            "hypergrad_norm": hyper.norm,
            "inner_lr": self.current_inner_lr(),
            **weight_means(hyper.inner.loss_params),
        }
        finite = hyper.finite and math.isfinite(stats["loss_task_meta"])
        stats.update(self.guard.record("meta", finite, "hypergradient or meta-test task loss"))
        if finite:
            self._apply_outer(hyper.grads)
        if update_fusion:
            stats.update(self._keep_look_ahead(meta_train, inner_grads))
        return stats

    def _apply_outer(self, grads: list[Tensor]) -> None:
        if not grads:
            return
        if self.outer_step == "adam":
            assert self.generator_optimizer is not None
            self.generator_optimizer.zero_grad(set_to_none=True)
            for param, grad in zip(self.generator_params, grads, strict=True):
                param.grad = grad.detach().clone()
            self.generator_optimizer.step()
            self.generator_optimizer.zero_grad(set_to_none=True)
            return
        scale = max(float(g.abs().max()) for g in grads)
        if scale > 0:  # the public code's max-normalised step
            with torch.no_grad():
                for param, grad in zip(self.generator_params, grads, strict=True):
                    param.add_(grad, alpha=-self.current_outer_lr() / scale)


__all__ = [
    "MetaLossLearner",
    "Hypergradient",
    "HypergradientMode",
    "OuterStep",
    "TASK_WARMUP_SOURCES",
    "TaskWarmupSource",
    "task_warmup_step",
]
