"""Data parallelism of the meta step: P processes compute what one does on the joined batch.

Every loss the learner differentiates is a mean over its batch, and every process
holds an equal shard, so a joined-batch mean is the mean of the shards' means. Three
things make a meta step on P processes equal to the single-process one on the
concatenated batch:

* the inner gradient ``g = ∇_θ L_f`` is averaged over the processes *inside* the
  differentiable inner step (:func:`differentiable_mean`, an all-reduce with a
  backward), so every process takes the same look-ahead ``θ'`` and the
  hypergradient flows back into every process's share of ``g``;
* every optimiser step (T's look-ahead T', F's, T's, G's outer step) first averages
  its gradients over the processes (:func:`average_gradients_before_step`);
* the hypergradient of each process is averaged (:func:`mean_over_processes`): in
  the unrolled mode each process's ``∂(Σ_s L_t^s)/∂φ`` through its own ``g_r`` sums
  to ``P·∂L_t/∂φ``; in the forward mode each holds ``∂/∂φ⟨∇ℓ_r, J_r w⟩`` with the
  averaged ``v`` and ``w``, whose mean is ``∂L_t/∂φ``.

DDP is not used: it averages inside ``backward()``, and has no double backward
(the unrolled hypergradient back-propagates through the inner gradient). BatchNorm
statistics stay per process (no SyncBN): a net with BatchNorm in training mode
sees its shard's statistics, so parity with one process holds exactly for nets
without batch statistics (LayerNorm, GroupNorm, none) and approximately otherwise.
The learn2learn backend computes its gradient inside ``adapt`` with no hook to
average it, so it is refused on more than one process.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

__all__ = ["average_gradients_before_step", "differentiable_mean", "mean_over_processes", "world_size"]


def world_size() -> int:
    """The number of processes of the default process group (1 without one).

    >>> world_size()
    1
    """
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def _flat(tensors: Sequence[Tensor]) -> Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def _unflat(flat: Tensor, like: Sequence[Tensor]) -> list[Tensor]:
    out, offset = [], 0
    for t in like:
        out.append(flat[offset : offset + t.numel()].view_as(t))
        offset += t.numel()
    return out


def mean_over_processes(tensors: Sequence[Tensor | None]) -> list[Tensor | None]:
    """The mean of each tensor over the processes (one all-reduce; no graph). ``None`` stays.

    Every process must pass tensors of the same shapes, ``None`` at the same places.

    >>> mean_over_processes([torch.ones(2), None])   # one process: the tensors themselves
    [tensor([1., 1.]), None]
    """
    world = world_size()
    present = [t for t in tensors if t is not None]
    if world == 1 or not present:
        return list(tensors)
    import torch.distributed as dist

    flat = _flat([t.detach() for t in present]).clone()
    dist.all_reduce(flat)
    values = iter(_unflat(flat / world, present))
    return [None if t is None else next(values) for t in tensors]


def differentiable_mean(tensors: Sequence[Tensor | None]) -> list[Tensor | None]:
    """The mean over the processes, differentiable: its backward all-reduces the cotangents.

    For the inner gradient built with ``create_graph``: ``θ' = θ − η·mean_r(g_r)`` is then
    the same on every process, and a backward from any process's task loss reaches
    every process's ``g_r`` (and through it, its G). ``None`` stays ``None``.

    >>> g = torch.ones(3, requires_grad=True)
    >>> differentiable_mean([g * 2])[0]   # one process: the tensor itself
    tensor([2., 2., 2.], grad_fn=<MulBackward0>)
    """
    world = world_size()
    present = [t for t in tensors if t is not None]
    if world == 1 or not present:
        return list(tensors)
    from torch.distributed.nn.functional import all_reduce

    flat = all_reduce(_flat(present)) / world
    values = iter(_unflat(flat, present))
    return [None if t is None else next(values) for t in tensors]


def _average_hook(optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
    params = [p for group in optimizer.param_groups for p in group["params"]]
    if world_size() == 1 or not params:
        return
    import torch.distributed as dist

    # A parameter without a gradient on one process but with one on another counts as a zero there.
    present = torch.tensor([p.grad is not None for p in params], dtype=torch.float32, device=params[0].device)
    dist.all_reduce(present)
    chosen = [p for p, n in zip(params, present.tolist(), strict=True) if n > 0]
    if not chosen:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in chosen]
    averaged = mean_over_processes(grads)
    for p, g in zip(chosen, averaged, strict=True):
        p.grad = g.clone()  # type: ignore[union-attr]


def average_gradients_before_step(optimizer: torch.optim.Optimizer | None) -> None:
    """Make ``optimizer`` average its gradients over the processes before every step (once).

    A second call on the same optimiser does nothing, so the learner and an engine
    wrapper may both ask for it.

    >>> w = torch.nn.Parameter(torch.ones(1))
    >>> opt = torch.optim.SGD([w], lr=1.0)
    >>> average_gradients_before_step(opt); average_gradients_before_step(opt)
    >>> len(opt._optimizer_step_pre_hooks)
    1
    """
    if optimizer is None or getattr(optimizer, "_lfl_averages_gradients", False):
        return
    optimizer.register_step_pre_hook(_average_hook)
    optimizer._lfl_averages_gradients = True  # type: ignore[attr-defined]
