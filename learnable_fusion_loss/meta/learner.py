"""The meta learner: one meta step trains G, one fusion step trains F and T.

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
   ``φ ← φ − lr · g / max|g|``. A non-finite hypergradient is skipped and
   reported, never applied.

Fusion step (eqs. 8–9): F takes one step on ``L_f`` with G frozen (weights
computed without a graph), optionally plus ``λ · L_t`` (ablation III); then T
takes one step on ``L_t`` of the detached fused images.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from ..losses.learnable import LearnableLoss, LossOutput
from ..tasks.base import TaskAdapter, as_task
from .batch import FusionBatch
from .inner import Backend, InnerOptimizer, InnerStep

OuterStep = Literal["adam", "max_norm"]


@dataclass
class Hypergradient:
    """The result of one inner → T' → outer pass (nothing applied yet)."""

    grads: list[Tensor]
    loss_task: Tensor
    inner: LossOutput

    @property
    def norm(self) -> float:
        if not self.grads:
            return 0.0
        return float(torch.linalg.vector_norm(torch.stack([g.norm() for g in self.grads])))

    @property
    def finite(self) -> bool:
        return all(bool(torch.isfinite(g).all()) for g in self.grads)


class MetaLossLearner:
    """Meta-learns a :class:`LearnableLoss` for a fusion net F and a task T.

    Args:
        fusion_net: F, any ``nn.Module`` ``(a, b) -> fused``.
        loss: the learnable loss; its ``generator`` is G.
        task: a :class:`~learnable_fusion_loss.tasks.TaskAdapter` or a bare
            ``task_loss(fused, target)`` callable.
        fusion_optimizer: F's optimiser (its learning rate is the inner η).
        generator_optimizer: G's optimiser for ``outer_step="adam"``; default
            ``Adam(G.parameters(), lr=outer_lr)``.
        outer_step: ``"adam"`` (paper) or ``"max_norm"`` (public code).
        outer_lr: learning rate of the outer step (paper: 1e-4).
        inner_backend: ``"torch.func"`` (default), ``"higher"`` or ``"learn2learn"``.
        inner_optimizer: ``"sgd"`` (default) or ``"adam"`` (see :class:`InnerStep`).
        inner_lr: fixed η; default ties η to ``fusion_optimizer``'s current lr.
        fusion_task_weight: λ ≥ 0; F's fusion step also minimises ``λ · L_t``
            (ablation III). 0 in the paper's method.
        allow_fresh_adam: see :class:`InnerStep`.
    """

    def __init__(
        self,
        fusion_net: nn.Module,
        loss: LearnableLoss,
        task: TaskAdapter | Callable[[Tensor, Any], Tensor],
        fusion_optimizer: torch.optim.Optimizer,
        generator_optimizer: torch.optim.Optimizer | None = None,
        outer_step: OuterStep = "adam",
        outer_lr: float = 1e-4,
        inner_backend: Backend = "torch.func",
        inner_optimizer: InnerOptimizer = "sgd",
        inner_lr: float | None = None,
        fusion_task_weight: float = 0.0,
        allow_fresh_adam: bool = False,
    ) -> None:
        if outer_step not in ("adam", "max_norm"):
            raise ValueError(f"outer_step must be 'adam' or 'max_norm', got {outer_step!r}")
        if not (outer_lr > 0 and math.isfinite(outer_lr)):
            raise ValueError(f"outer_lr must be a finite positive number, got {outer_lr}")
        if fusion_task_weight < 0:
            raise ValueError(f"fusion_task_weight must be >= 0, got {fusion_task_weight}")
        if not isinstance(loss, LearnableLoss):
            raise TypeError(f"loss must be a LearnableLoss, got {type(loss).__name__}")
        self.fusion_net = fusion_net
        self.loss = loss
        self.task = as_task(task)
        self.fusion_optimizer = fusion_optimizer
        self.generator_params = [p for p in loss.generator.parameters() if p.requires_grad]
        if generator_optimizer is None and outer_step == "adam" and self.generator_params:
            generator_optimizer = torch.optim.Adam(self.generator_params, lr=outer_lr)
        self.generator_optimizer = generator_optimizer
        self.outer_step = outer_step
        self.outer_lr = outer_lr
        self.inner = InnerStep(inner_backend, inner_optimizer, allow_fresh_adam)
        self.inner_lr = inner_lr
        self.fusion_task_weight = float(fusion_task_weight)
        self.skipped_meta_steps = 0

    @property
    def generator(self) -> nn.Module:
        return self.loss.generator

    def current_inner_lr(self) -> float:
        """η: fixed, or F's optimiser's current learning rate (as the public code)."""
        if self.inner_lr is not None:
            return float(self.inner_lr)
        return float(self.fusion_optimizer.param_groups[0]["lr"])

    # -------------------------------------------------------------- meta step
    @contextmanager
    def _task_prime(self, meta_train: FusionBatch) -> Iterator[None]:
        """Within the block, T is T' (eq. 5); on exit T and F's buffers are restored."""
        fusion_buffers = {k: v.detach().clone() for k, v in self.fusion_net.named_buffers()}
        snapshot = self.task.snapshot()
        try:
            with torch.no_grad():
                fused = self.fusion_net(*meta_train.task_sources)
            self.task.train_step(fused.detach(), meta_train.target)
            yield
        finally:
            self.task.restore(snapshot)
            with torch.no_grad():
                for name, buffer in self.fusion_net.named_buffers():
                    buffer.copy_(fusion_buffers[name])

    def _meta_loss(self, meta_train: FusionBatch, meta_test: FusionBatch) -> tuple[Tensor, LossOutput]:
        """``L_t(T'(F_θ'(te)))`` as a function of φ (call inside ``_task_prime``)."""
        captured: dict[str, LossOutput] = {}

        def inner_loss(model: Callable[..., Tensor]) -> Tensor:
            output = self.loss(model(meta_train.a, meta_train.b), meta_train.a, meta_train.b)
            captured["inner"] = output
            return output.loss

        fast = self.inner.adapt(
            self.fusion_net, inner_loss, self.current_inner_lr(), optimizer=self.fusion_optimizer
        )
        fused_test = fast(*meta_test.task_sources)
        return self.task.loss(fused_test, meta_test.target), captured["inner"]

    def hypergradient(self, meta_train: FusionBatch, meta_test: FusionBatch) -> Hypergradient:
        """``∂L_t/∂φ`` for one meta-train / meta-test pair; nothing is updated."""
        with self._task_prime(meta_train):
            loss_task, inner = self._meta_loss(meta_train, meta_test)
            if self.generator_params:
                grads = torch.autograd.grad(loss_task, self.generator_params, allow_unused=True)
                grads = [torch.zeros_like(p) if g is None else g
                         for p, g in zip(self.generator_params, grads, strict=True)]
            else:
                grads = []
        return Hypergradient(grads=grads, loss_task=loss_task.detach(), inner=inner)

    def meta_objective(self, meta_train: FusionBatch, meta_test: FusionBatch) -> float:
        """The scalar whose gradient :meth:`hypergradient` returns (for checks)."""
        with self._task_prime(meta_train):
            loss_task, _ = self._meta_loss(meta_train, meta_test)
        return float(loss_task.detach())

    def meta_step(self, meta_train: FusionBatch, meta_test: FusionBatch) -> dict[str, float]:
        """Inner step, T', outer step: updates G only. Returns logging stats."""
        hyper = self.hypergradient(meta_train, meta_test)
        stats = {
            "loss_task_meta": float(hyper.loss_task),
            "loss_fusion_meta": float(hyper.inner.loss.detach()),
            "hypergrad_norm": hyper.norm,
            "inner_lr": self.current_inner_lr(),
            **_weight_means(hyper.inner.params),
        }
        if not (hyper.finite and math.isfinite(stats["loss_task_meta"])):
            self.skipped_meta_steps += 1
            stats.update(skipped=1.0, skipped_total=float(self.skipped_meta_steps))
            return stats
        self._apply_outer(hyper.grads)
        stats.update(skipped=0.0, skipped_total=float(self.skipped_meta_steps))
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
                    param.add_(grad, alpha=-self.outer_lr / scale)

    # ------------------------------------------------------------ fusion step
    def fusion_step(self, batch: FusionBatch) -> dict[str, float]:
        """F on ``L_f`` (G frozen) [+ λ L_t], then T on detached fused images."""
        self.fusion_net.train()
        self.fusion_optimizer.zero_grad(set_to_none=True)
        fused = self.fusion_net(batch.a, batch.b)
        output = self.loss(fused, batch.a, batch.b, detach_params=True)
        total = output.loss
        stats = {f"{k}": float(v.detach()) for k, v in output.terms.items()}
        stats["loss_fusion"] = stats.pop("loss")
        if self.fusion_task_weight > 0:
            loss_task_f = self.task.loss(self.fusion_net(*batch.task_sources), batch.target)
            total = total + self.fusion_task_weight * loss_task_f
            stats["loss_task_on_f"] = float(loss_task_f.detach())
        total.backward()
        self.fusion_optimizer.step()
        self.fusion_optimizer.zero_grad(set_to_none=True)
        for param in self.generator_params:  # a task term must never leave grads on G
            param.grad = None

        with torch.no_grad():
            fused_task = self.fusion_net(*batch.task_sources)
        task_stats = self.task.train_step(fused_task.detach(), batch.target)
        stats.update({k if k.startswith("loss") else f"task_{k}": v for k, v in task_stats.items()})
        stats.update(_weight_means(output.params))
        return stats


def _weight_means(params: Tensor | None) -> dict[str, float]:
    """Mean generated weight per source, e.g. ``{"weight_0": 0.43, "weight_1": 0.57}``."""
    if params is None or params.ndim != 4:
        return {}
    means = params.detach().mean(dim=(0, 2, 3))
    return {f"weight_{i}": float(m) for i, m in enumerate(means)}


__all__ = ["MetaLossLearner", "Hypergradient", "OuterStep"]
