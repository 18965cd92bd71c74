"""The forward-mode hypergradient of :class:`~learnable_fusion_loss.meta.MetaLossLearner`.

The same ``∂L_t/∂φ`` as the unrolled one, without a second-order graph of F: a
first-order inner gradient, ``v = ∂L_t/∂θ'``, one forward-mode JVP of F and a
double backward through the loss and G only (the derivation is in
:meth:`MetaLossLearner.hypergradient`). It assumes the loss is a function of F's
output tensor and G's parameters, and that F supports forward-mode AD and is
deterministic (F runs twice on the meta-train batch).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import torch
from torch import Tensor, nn
from torch.autograd import forward_ad

from ..losses.learnable import LearnableLoss
from .batch import Batch, call_model
from .distributed import mean_over_processes
from .hypergradient import Hypergradient, zeros_where_none
from .inner import InnerStep, bind_weights

__all__ = ["ForwardHypergradient"]


class ForwardHypergradient:
    """The forward-mode hypergradient; mixed into the learner, which sets these attributes."""

    fusion_net: nn.Module
    loss: LearnableLoss
    task: Any
    inner: InnerStep
    fusion_optimizer: torch.optim.Optimizer | None
    _task_prime: Callable[[Batch], AbstractContextManager[None]]
    current_inner_lr: Callable[[], float]
    _generator_grads: Callable[[Tensor], list[Tensor]]

    def _hypergradient_forward(self, meta_train: Batch, meta_test: Batch) -> Hypergradient:
        net = self.fusion_net
        named, bind = bind_weights(net)
        # G runs once, with its graph kept for step 6 (~1.5 GiB at 2×256², cheaper
        # than a second forward of G); steps 1–5 see its weights as constants.
        loss_params = self.loss.generate(*meta_train.loss_inputs)
        with self._task_prime(meta_train):
            # 1. g = ∇_θ L_f, first order.
            fused = call_model(net, meta_train.inputs)
            inner_value = self.loss(fused, *meta_train.loss_inputs, loss_params=loss_params.detach()).loss
            grads = mean_over_processes(torch.autograd.grad(inner_value, list(named.values()), allow_unused=True))
            del fused, inner_value
            # 2. θ' = U(θ, g), kept differentiable in g only (elementwise, cheap).
            g_leaves = [g.detach().requires_grad_() for g in zeros_where_none(grads, named.values())]
            del grads
            updated = self.inner.update(named, g_leaves, self.current_inner_lr(), self.fusion_optimizer)
            # 3. v = ∂L_t/∂θ' through F_θ' and T'.
            fast = {n: t.detach().requires_grad_() for n, t in updated.items()}
            loss_task = self.task.loss(call_model(bind(fast), meta_test.task_inputs), meta_test.target)
            v = zeros_where_none(mean_over_processes(
                torch.autograd.grad(loss_task, list(fast.values()), allow_unused=True)), fast.values())
            del fast
            # 4. w = (∂U/∂g)ᵀ v.
            w = zeros_where_none(
                torch.autograd.grad(list(updated.values()), g_leaves, grad_outputs=v, allow_unused=True),
                g_leaves)
            del updated, g_leaves, v
            # 5. u = J_F w: one forward-mode pass of F on the meta-train pair.
            with torch.no_grad(), forward_ad.dual_level():
                duals = {n: forward_ad.make_dual(p.detach(), t)
                         for (n, p), t in zip(named.items(), w, strict=True)}
                fused, u = forward_ad.unpack_dual(call_model(bind(duals), meta_train.inputs))
                fused, u = fused.clone(), u.clone()  # plain tensors outside the dual level
            del duals, w
        # 6. ∂/∂φ ⟨∇_I ℓ(I; φ), u⟩ with I fixed: a double backward through ℓ and G only.
        image = fused.requires_grad_()
        inner = self.loss(image, *meta_train.loss_inputs, loss_params=loss_params)
        (grad_image,) = torch.autograd.grad(inner.loss, image, create_graph=True)
        grads = self._generator_grads((grad_image * u).sum())
        return Hypergradient(grads=grads, loss_task=loss_task.detach(), inner=inner)
