"""The differentiable inner step (paper eq. 4): ``θ' = θ − η ∇_θ L_f(θ; φ)``.

``θ'`` stays a function of the loss generator's parameters ``φ``, so the task
loss of ``F_{θ'}`` can be back-propagated into G. The API mirrors learn2learn's
``MAML.clone().adapt()``::

    step = InnerStep(backend="torch.func")
    fast = step.adapt(fusion_net, loss_fn, lr=1e-4)   # loss_fn(model_callable) -> scalar
    fused = fast(a, b)                                # F_{θ'}; differentiable in φ

Three backends compute the same θ' (and therefore the same hypergradient):

* ``"torch.func"`` (default): ``torch.func.functional_call`` on a dict of
  parameters; gradients by ``torch.autograd.grad(create_graph=True)``. No hidden
  state, no module copies.
* ``"higher"``: ``higher.monkeypatch`` + a differentiable optimiser.
* ``"learn2learn"``: ``learn2learn.algorithms.MAML(...).clone().adapt()`` (SGD only).

The inner optimiser is SGD by default with ``lr`` tied by the caller to F's
optimiser's current learning rate, as the public code does. ``"adam"`` takes one
differentiable Adam step from F's optimiser's current state (torch.func and
higher). A freshly started Adam normalises the gradient away
(``m̂/√v̂ = g/|g|``), so the hypergradient is 100–3000× smaller; that case is
refused unless ``allow_fresh_adam=True`` (then it warns).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Literal, Protocol

import torch
from torch import Tensor, nn
from torch.func import functional_call

from .distributed import differentiable_mean, world_size

Backend = Literal["torch.func", "higher", "learn2learn"]
InnerOptimizer = Literal["sgd", "adam"]
BACKENDS: tuple[str, ...] = ("torch.func", "higher", "learn2learn")


class AdaptedModel(Protocol):
    """``F_{θ'}``: call it like the original model."""

    def __call__(self, *args: Tensor, **kwargs: object) -> Tensor: ...


#: ``loss_fn(model) -> scalar`` where ``model`` is callable like the fusion net.
LossFn = Callable[[Callable[..., Tensor]], Tensor]


def bind_weights(
    model: nn.Module,
) -> tuple[dict[str, nn.Parameter], Callable[[dict[str, Tensor]], Callable[..., Tensor]]]:
    """``model``'s trainable parameters by name, and ``bind``: ``bind(weights)`` is the
    model called with ``weights`` in their place (``torch.func.functional_call``; frozen
    parameters and buffers are the module's own)."""
    named = {n: p for n, p in model.named_parameters() if p.requires_grad}
    frozen = {n: p for n, p in model.named_parameters() if not p.requires_grad}
    buffers = dict(model.named_buffers())

    def bind(weights: dict[str, Tensor]) -> Callable[..., Tensor]:
        tensors = {**frozen, **buffers, **weights}
        return lambda *args, **kwargs: functional_call(model, tensors, args, kwargs)

    return named, bind


class FreshAdamError(RuntimeError):
    """An Adam inner step was asked for with no optimiser state yet."""


def _adam_state(
    optimizer: torch.optim.Optimizer | None, params: list[nn.Parameter]
) -> tuple[dict, list[dict]]:
    if optimizer is None or not isinstance(optimizer, torch.optim.Adam):
        raise ValueError("inner_optimizer='adam' needs F's torch.optim.Adam optimizer")
    group = optimizer.param_groups[0]
    if group.get("amsgrad") or group.get("maximize"):
        raise ValueError("the differentiable Adam step supports plain Adam (no amsgrad/maximize)")
    states = [optimizer.state.get(p, {}) for p in params]
    return group, states


class InnerStep:
    """One differentiable optimisation step of a model (see module docstring).

    Args:
        backend: ``"torch.func"``, ``"higher"`` or ``"learn2learn"``.
        inner_optimizer: ``"sgd"`` or ``"adam"`` (needs ``optimizer`` at adapt time).
        allow_fresh_adam: permit an Adam step with empty state (warns).
    """

    def __init__(
        self,
        backend: Backend = "torch.func",
        inner_optimizer: InnerOptimizer = "sgd",
        allow_fresh_adam: bool = False,
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if inner_optimizer not in ("sgd", "adam"):
            raise ValueError(f"inner_optimizer must be 'sgd' or 'adam', got {inner_optimizer!r}")
        if backend == "learn2learn" and inner_optimizer != "sgd":
            raise ValueError("the learn2learn backend supports inner_optimizer='sgd' only")
        self.backend = backend
        self.inner_optimizer = inner_optimizer
        self.allow_fresh_adam = allow_fresh_adam
        if backend == "higher":
            import higher  # noqa: F401  (fail at construction, not mid-training)
        elif backend == "learn2learn":
            import learn2learn  # noqa: F401

    def __repr__(self) -> str:
        return f"InnerStep(backend={self.backend!r}, inner_optimizer={self.inner_optimizer!r})"

    # ------------------------------------------------------------------ public
    def adapt(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        lr: float,
        optimizer: torch.optim.Optimizer | None = None,
    ) -> AdaptedModel:
        """Return ``F_{θ'}`` after one differentiable step on ``loss_fn``.

        Args:
            model: the model F (its own parameters are not modified).
            loss_fn: maps a callable model to the scalar inner loss ``L_f``.
            lr: the inner learning rate η.
            optimizer: F's optimiser (read-only; needed for ``"adam"``).
        """
        if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
            raise ValueError(f"lr must be a finite positive number, got {lr!r}")
        params = [p for p in model.parameters() if p.requires_grad]
        if not params:
            raise ValueError("the model has no trainable parameters to adapt")
        if self.inner_optimizer == "adam":
            _, states = _adam_state(optimizer, params)
            if any(not s for s in states):
                message = (
                    "inner_optimizer='adam' with an optimizer that has not stepped yet: a fresh "
                    "Adam step is g/|g|, whose hypergradient is 100-3000x smaller than SGD's"
                )
                if not self.allow_fresh_adam:
                    raise FreshAdamError(message + " (pass allow_fresh_adam=True to force it)")
                warnings.warn(message, stacklevel=2)
        adapt = {
            "torch.func": self._adapt_torch_func,
            "higher": self._adapt_higher,
            "learn2learn": self._adapt_learn2learn,
        }[self.backend]
        return adapt(model, loss_fn, float(lr), optimizer)

    # ---------------------------------------------------------------- backends
    def _adapt_torch_func(
        self, model: nn.Module, loss_fn: LossFn, lr: float, optimizer: torch.optim.Optimizer | None
    ) -> AdaptedModel:
        named, bind = bind_weights(model)
        loss = loss_fn(bind(named))
        # autograd.grad (not backward(create_graph=True)) keeps the graph out of
        # .grad and avoids the parameter ↔ gradient reference cycle that leaks.
        grads = torch.autograd.grad(loss, list(named.values()), create_graph=True, allow_unused=True)
        # On P processes: the joined batch's gradient, still differentiable (see .distributed).
        return bind(self.update(named, differentiable_mean(grads), lr, optimizer))

    def update(
        self,
        params: dict[str, Tensor],
        grads: Sequence[Tensor | None],
        lr: float,
        optimizer: torch.optim.Optimizer | None = None,
    ) -> dict[str, Tensor]:
        """``θ'`` from ``θ`` and ``∇_θ L_f`` by this step's rule (differentiable in both).

        ``optimizer`` is F's optimiser, read for the Adam state of ``params``' values.
        A ``None`` gradient leaves its parameter unchanged.
        """
        if self.inner_optimizer == "sgd":
            return {
                n: p if g is None else p - lr * g for (n, p), g in zip(params.items(), grads, strict=True)
            }
        return self._adam_update(params, grads, lr, optimizer)

    def _adam_update(
        self,
        named: dict[str, Tensor],
        grads: Sequence[Tensor | None],
        lr: float,
        optimizer: torch.optim.Optimizer | None,
    ) -> dict[str, Tensor]:
        group, states = _adam_state(optimizer, list(named.values()))
        beta1, beta2 = group["betas"]
        eps, weight_decay = group["eps"], group["weight_decay"]
        new: dict[str, Tensor] = {}
        for (name, p), g, state in zip(named.items(), grads, states, strict=True):
            if g is None:
                new[name] = p
                continue
            if weight_decay:
                g = g + weight_decay * p
            step = float(state["step"]) + 1 if state else 1.0
            exp_avg = state["exp_avg"] if state else torch.zeros_like(p)
            exp_avg_sq = state["exp_avg_sq"] if state else torch.zeros_like(p)
            m = beta1 * exp_avg + (1 - beta1) * g
            v = beta2 * exp_avg_sq + (1 - beta2) * g * g
            m_hat = m / (1 - beta1**step)
            denom = (v / (1 - beta2**step)).sqrt() + eps
            new[name] = p - lr * m_hat / denom
        return new

    def _adapt_higher(
        self, model: nn.Module, loss_fn: LossFn, lr: float, optimizer: torch.optim.Optimizer | None
    ) -> AdaptedModel:
        import higher

        params = [p for p in model.parameters() if p.requires_grad]
        if self.inner_optimizer == "sgd":
            opt: torch.optim.Optimizer = torch.optim.SGD(params, lr=lr)
        else:
            group, _ = _adam_state(optimizer, params)
            opt = torch.optim.Adam(
                params, lr=lr, betas=group["betas"], eps=group["eps"], weight_decay=group["weight_decay"]
            )
            # higher copies the optimiser's state when it builds the differentiable one.
            opt.load_state_dict(_state_for(optimizer, params, opt))
        # copy_initial_weights=False: the fast weights start from F's real parameters
        # (we never ask for their gradient, only for φ's).
        fmodel = higher.monkeypatch(model, copy_initial_weights=False, track_higher_grads=True)
        diffopt = higher.optim.get_diff_optim(opt, params, fmodel=fmodel, track_higher_grads=True)
        diffopt.step(loss_fn(fmodel), grad_callback=differentiable_mean if world_size() > 1 else None)
        return fmodel

    def _adapt_learn2learn(
        self, model: nn.Module, loss_fn: LossFn, lr: float, optimizer: torch.optim.Optimizer | None
    ) -> AdaptedModel:
        import learn2learn as l2l

        if world_size() > 1:
            raise RuntimeError("the learn2learn backend computes its inner gradient inside adapt(), where it "
                               "cannot be averaged over processes: use 'torch.func' or 'higher' with several")
        maml = l2l.algorithms.MAML(model, lr=lr, first_order=False, allow_unused=True)
        clone = maml.clone()
        clone.adapt(loss_fn(clone))
        return clone


def _state_for(
    source: torch.optim.Optimizer | None, params: list[nn.Parameter], target: torch.optim.Optimizer
) -> dict:
    """F's Adam state re-indexed for an optimiser over ``params`` only."""
    assert source is not None
    state = {i: {k: (v.clone() if isinstance(v, Tensor) else v) for k, v in source.state[p].items()}
             for i, p in enumerate(params) if p in source.state}
    target_dict = target.state_dict()
    return {"state": state, "param_groups": target_dict["param_groups"]}


__all__ = ["InnerStep", "FreshAdamError", "BACKENDS", "AdaptedModel", "LossFn", "bind_weights"]
