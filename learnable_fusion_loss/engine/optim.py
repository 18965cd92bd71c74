"""Optimisers of a meta-fusion run: one MMEngine wrapper per module, stepped by the learner.

:class:`MultiModuleOptimWrapperConstructor` builds the ``OptimWrapperDict``
(``fusion`` → F, ``generator`` → G, ``task`` → T). The learner calls each
``optimizer.step()`` itself, so a wrapper's own machinery is attached as optimiser
hooks (:class:`ClipBeforeStep`, :class:`StepCounter`), and what it cannot honour is
refused (:func:`check_wrapper`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from mmengine.logging import print_log
from mmengine.optim import DefaultOptimWrapperConstructor, OptimWrapper, OptimWrapperDict
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS
from torch import nn

__all__ = [
    "ClipBeforeStep", "MultiModuleOptimWrapperConstructor", "StepCounter", "attach_wrapper", "check_wrapper",
]


def check_wrapper(name: str, wrapper: OptimWrapper) -> None:
    """Refuse the OptimWrapper settings the learner's own steps cannot honour."""
    from mmengine.optim import AmpOptimWrapper

    if isinstance(wrapper, AmpOptimWrapper):
        raise ValueError(
            f"optim_wrapper.{name}: AmpOptimWrapper is not supported: the learner steps the "
            "optimisers itself and the hypergradient is taken by autograd.grad, so the loss "
            "scaler would never run; use type='OptimWrapper'")
    if getattr(wrapper, "_accumulative_counts", 1) != 1:
        raise ValueError(
            f"optim_wrapper.{name}.accumulative_counts={wrapper._accumulative_counts} is not "
            "supported: every meta and fusion step of Algorithm 1 is one optimiser step "
            "(raise the batch size instead)")


class ClipBeforeStep:
    """Optimiser pre-step hook: the wrapper's ``clip_grad`` on that optimiser's gradients."""

    def __init__(self, wrapper: OptimWrapper) -> None:
        self.wrapper = wrapper

    def __call__(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        self.wrapper._clip_grad()


class StepCounter:
    """Optimiser post-step hook: count the step in the wrapper's ``_global_step``.

    MMEngine's parameter schedulers set ``wrapper._global_step = -1`` and wrap
    ``wrapper.step`` to count its calls; their first ``step()`` warns ("Detected call
    of `scheduler.step()` before `optimizer.step()`") while the count is below 0. The
    learner steps ``wrapper.optimizer`` itself, so without this hook every run with
    a scheduler warns. MMEngine (0.10.7) has no public counter to use instead: the
    public ``inner_count`` counts ``backward()`` calls (for gradient accumulation,
    refused here), and ``update_params`` / ``step`` would take the step themselves,
    whereas the learner's steps come from its own gradients (the hypergradient, a
    skipped non-finite step) and ``meta`` knows nothing of MMEngine wrappers. The
    count changes nothing else (the schedulers step per iteration or epoch).
    """

    def __init__(self, wrapper: OptimWrapper) -> None:
        self.wrapper = wrapper

    def __call__(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        if hasattr(self.wrapper, "_global_step"):  # only once a parameter scheduler set it
            self.wrapper._global_step += 1


def attach_wrapper(name: str, wrapper: OptimWrapper) -> None:
    """Make the learner's own ``optimizer.step()`` calls honour the wrapper ``name``.

    The learner steps the torch optimisers directly, so the wrapper's gradient
    clipping runs as a pre-step hook on its optimiser: every step of F, G (the
    hypergradient) and T, including T's step inside a meta step, is clipped, and the
    norm is logged as ``grad_norm_<name>``. Settings it cannot honour are refused
    (:func:`check_wrapper`).
    """
    check_wrapper(name, wrapper)
    if wrapper.clip_grad_kwargs:
        wrapper.grad_name = f"grad_norm_{name}"
        wrapper.optimizer.register_step_pre_hook(ClipBeforeStep(wrapper))
    # A parameter scheduler's step count, read for a warning only (see StepCounter).
    wrapper.optimizer.register_step_post_hook(StepCounter(wrapper))


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class MultiModuleOptimWrapperConstructor:
    """Builds one :class:`OptimWrapper` per named sub-module into an :class:`OptimWrapperDict`.

    The model must have ``optim_modules() -> {name: module}``; each key of the
    config (other than ``constructor``) is an ordinary single-optimiser wrapper
    config (``type``, ``optimizer``, optional ``paramwise_cfg``) for that module,
    or None (no optimiser; lets a derived config drop an entry).
    A module without trainable parameters (e.g. ``ConstantWeights``) or absent
    (a parameter-free task) gets no wrapper, with a log line saying so::

        optim_wrapper = dict(
            constructor='MultiModuleOptimWrapperConstructor',
            fusion=dict(type='OptimWrapper', optimizer=dict(type='Adam', lr=1e-4)),
            generator=dict(type='OptimWrapper', optimizer=dict(type='Adam', lr=1e-4, eps=1e-10)),
            task=dict(type='OptimWrapper', optimizer=dict(type='Adam', lr=1e-4)))
    """

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg: dict | None = None) -> None:
        if paramwise_cfg is not None:
            raise ValueError("put paramwise_cfg inside each optimiser entry, not at the top level")
        if not optim_wrapper_cfg:
            raise ValueError("optim_wrapper needs at least one entry (e.g. fusion=...)")
        for name, cfg in optim_wrapper_cfg.items():
            if cfg is not None and (not isinstance(cfg, Mapping) or "optimizer" not in cfg):
                raise ValueError(
                    f"optim_wrapper.{name} must be a wrapper config with an 'optimizer' (or None)"
                )
        self.optim_wrapper_cfg = optim_wrapper_cfg

    def __call__(self, model: nn.Module) -> OptimWrapperDict:
        module_of = getattr(model, "module", model)
        if not hasattr(module_of, "optim_modules"):
            raise TypeError(f"{type(module_of).__name__} has no optim_modules()")
        modules = module_of.optim_modules()
        wrappers: dict[str, OptimWrapper] = {}
        for name, cfg in self.optim_wrapper_cfg.items():
            if cfg is None:  # removed by a derived config (e.g. a parameter-free G)
                continue
            if name not in modules:
                raise KeyError(f"optim_wrapper.{name}: the model has no module {name!r} ({sorted(modules)})")
            module = modules[name]
            if module is None or not any(p.requires_grad for p in module.parameters()):
                print_log(f"optim_wrapper.{name}: no trainable parameters, no optimiser built",
                          logger="current")
                continue
            cfg = dict(cfg)
            paramwise = cfg.pop("paramwise_cfg", None)
            wrappers[name] = DefaultOptimWrapperConstructor(cfg, paramwise)(module)
        return OptimWrapperDict(**wrappers)
