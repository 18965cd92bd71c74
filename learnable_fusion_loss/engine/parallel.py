"""Data parallelism for a model that runs its own optimiser steps."""

from __future__ import annotations

from typing import Any

import torch
from mmengine.optim import OptimWrapperDict
from mmengine.registry import MODEL_WRAPPERS
from torch import nn

__all__ = ["GradientAveragingWrapper"]


@MODEL_WRAPPERS.register_module()
class GradientAveragingWrapper(nn.Module):
    """Data parallelism for a model that runs its own optimiser steps.

    DDP averages gradients inside ``backward()``, which neither the hypergradient
    (``torch.autograd.grad``, assigned to ``.grad`` by hand) nor the task adapter's
    own steps go through. This wrapper instead registers a pre-step hook on every
    optimiser of the ``OptimWrapperDict`` that all-reduces (averages) the gradients
    of that optimiser's parameters right before it steps, so F, G and T see the
    gradient of the global batch. Parameters and buffers are broadcast from rank 0
    at construction. Use with ``model_wrapper_cfg=dict(type='GradientAveragingWrapper')``.

    Every rank must take the same optimiser steps in the same order (true for
    :class:`~learnable_fusion_loss.engine.MetaFusionModel`, except when a step is
    skipped for a non-finite value on some ranks only: the other ranks then wait in
    the all-reduce, so a diverging data-parallel run hangs rather than stops).
    """

    def __init__(self, module: nn.Module, broadcast_parameters: bool = True) -> None:
        super().__init__()
        self.module = module
        self._hooked: set[int] = set()
        if broadcast_parameters and _world_size() > 1:
            import torch.distributed as dist

            with torch.no_grad():
                for tensor in list(module.parameters()) + list(module.buffers()):
                    dist.broadcast(tensor.data, src=0)

    def _install(self, optim_wrapper: OptimWrapperDict) -> None:
        for _, wrapper in optim_wrapper.items():
            optimizer = wrapper.optimizer
            if id(optimizer) not in self._hooked:
                optimizer.register_step_pre_hook(_average_gradients)
                self._hooked.add(id(optimizer))

    def train_step(self, data: Any, optim_wrapper: OptimWrapperDict) -> dict[str, float]:
        if _world_size() > 1:
            self._install(optim_wrapper)
        return self.module.train_step(data, optim_wrapper)

    def val_step(self, data: Any) -> list:
        return self.module.val_step(data)

    def test_step(self, data: Any) -> list:
        return self.module.test_step(data)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.module(*args, **kwargs)


def _world_size() -> int:
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def _average_gradients(optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
    """Optimiser pre-step hook: average ``.grad`` of its parameters over all ranks."""
    import torch.distributed as dist

    world = _world_size()
    if world == 1:
        return
    params = [p for group in optimizer.param_groups for p in group["params"]]
    if not params:
        return
    device = params[0].device
    present = torch.tensor([p.grad is not None for p in params], dtype=torch.float32, device=device)
    dist.all_reduce(present)
    chosen = [p for p, n in zip(params, present.tolist(), strict=True) if n > 0]
    if not chosen:
        return
    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in chosen])
    dist.all_reduce(flat)
    flat.div_(world)
    offset = 0
    for p in chosen:
        count = p.numel()
        p.grad = flat[offset : offset + count].view_as(p).clone()
        offset += count
