"""Data parallelism for a model that runs its own optimiser steps."""

from __future__ import annotations

from typing import Any

import torch
from mmengine.optim import OptimWrapperDict
from mmengine.registry import MODEL_WRAPPERS
from torch import nn

from ..meta.distributed import average_gradients_before_step, world_size

__all__ = ["GradientAveragingWrapper"]


@MODEL_WRAPPERS.register_module()
class GradientAveragingWrapper(nn.Module):
    """Data parallelism for a model that runs its own optimiser steps.

    DDP averages gradients inside ``backward()``, which neither the hypergradient
    (``torch.autograd.grad``, assigned to ``.grad`` by hand) nor the task adapter's
    own steps go through. This wrapper instead registers a pre-step hook on every
    optimiser of the ``OptimWrapperDict`` that all-reduces (averages) the gradients
    of that optimiser's parameters right before it steps, so F, G and T see the
    gradient of the global batch; the learner itself averages the inner gradient
    and the hypergradient (:mod:`learnable_fusion_loss.meta.distributed`), so a meta
    step on P processes is the single-process one on the joined batch. Parameters
    and buffers are broadcast from rank 0 at construction. Use with ``model_wrapper_cfg=dict(type='GradientAveragingWrapper')``.

    Every rank must take the same optimiser steps in the same order (true for
    :class:`~learnable_fusion_loss.engine.MetaFusionModel`, except when a step is
    skipped for a non-finite value on some ranks only: the other ranks then wait in
    the all-reduce, so a diverging data-parallel run hangs rather than stops).
    """

    def __init__(self, module: nn.Module, broadcast_parameters: bool = True) -> None:
        super().__init__()
        self.module = module
        if broadcast_parameters and world_size() > 1:
            import torch.distributed as dist

            with torch.no_grad():
                for tensor in list(module.parameters()) + list(module.buffers()):
                    dist.broadcast(tensor.data, src=0)

    def _install(self, optim_wrapper: OptimWrapperDict) -> None:
        for _, wrapper in optim_wrapper.items():
            average_gradients_before_step(wrapper.optimizer)

    def train_step(self, data: Any, optim_wrapper: OptimWrapperDict) -> dict[str, float]:
        if world_size() > 1:
            self._install(optim_wrapper)
        return self.module.train_step(data, optim_wrapper)

    def val_step(self, data: Any) -> list:
        return self.module.val_step(data)

    def test_step(self, data: Any) -> list:
        return self.module.test_step(data)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.module(*args, **kwargs)
