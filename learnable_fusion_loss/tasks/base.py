"""The task protocol: what the meta learner needs from a downstream task net T.

``meta`` knows nothing about segmentation or detection. It sees a task as:

* ``loss(fused, target)`` – a scalar, differentiable w.r.t. ``fused`` (and twice
  differentiable through it, because the outer step back-propagates through the
  inner step);
* ``train_step(fused, target)`` – one ordinary optimiser step of T (paper eq. 9),
  returning log values; a step whose loss or gradient is non-finite is not applied
  and returns ``skipped=1.0`` (:func:`finite_step` does both);
* ``snapshot()`` / ``restore(snapshot)`` – an in-memory copy of T's parameters,
  buffers and optimiser state, used to form T' (eq. 5) and to undo it;
* optionally ``collate_targets`` / ``split_targets`` – the task's target codec
  between per-sample targets and its batch format (:mod:`.targets`).

``fused`` is a grey image batch ``[B, 1, H, W]`` in [0, 1].
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from .._checks import all_finite
from ..registry import MODELS, build_module


@runtime_checkable
class TaskAdapter(Protocol):
    """Structural type of a downstream task (see module docstring)."""

    def loss(self, fused: Tensor, target: Any) -> Tensor: ...

    def train_step(self, fused: Tensor, target: Any) -> dict[str, float]: ...

    def snapshot(self) -> Any: ...

    def restore(self, snapshot: Any) -> None: ...


@dataclass(frozen=True)
class TaskSnapshot:
    """Detached copies of a task net's tensors and its optimiser state."""

    tensors: dict[str, Tensor]
    optimizer_state: dict[str, Any] | None
    training: bool


def snapshot_module(module: nn.Module, optimizer: torch.optim.Optimizer | None) -> TaskSnapshot:
    """Copy parameters, buffers and optimiser state of ``module`` into memory."""
    tensors = {k: v.detach().clone() for k, v in module.state_dict(keep_vars=True).items()}
    opt_state = copy.deepcopy(optimizer.state_dict()) if optimizer is not None else None
    return TaskSnapshot(tensors=tensors, optimizer_state=opt_state, training=module.training)


def restore_module(
    module: nn.Module, optimizer: torch.optim.Optimizer | None, snapshot: TaskSnapshot
) -> None:
    """Write a :func:`snapshot_module` copy back in place (bit-identical)."""
    state = module.state_dict(keep_vars=True)
    with torch.no_grad():
        for key, saved in snapshot.tensors.items():
            state[key].copy_(saved)
    for param in module.parameters():
        param.grad = None
    if optimizer is not None and snapshot.optimizer_state is not None:
        # load_state_dict keeps references to the tensors it is given: hand it a copy
        # so the snapshot stays reusable.
        optimizer.load_state_dict(copy.deepcopy(snapshot.optimizer_state))
    module.train(snapshot.training)


def finite_step(optimizer: torch.optim.Optimizer, loss: Tensor) -> bool:
    """Back-propagate ``loss`` and step ``optimizer``, unless the loss or a gradient is non-finite.

    A skipped step changes neither the parameters nor the optimiser's state (a NaN
    applied once poisons every later step); the gradients are cleared either way.
    Returns whether the step was applied.

    >>> import torch
    >>> w = torch.nn.Parameter(torch.ones(1))
    >>> opt = torch.optim.SGD([w], lr=0.5)
    >>> finite_step(opt, (w * float("nan")).sum()), w.item()
    (False, 1.0)
    >>> finite_step(opt, (w * 2).sum()), w.item()
    (True, 0.0)
    """
    optimizer.zero_grad(set_to_none=True)
    applied = bool(torch.isfinite(loss.detach()).all())
    if applied:
        loss.backward()
        applied = all_finite(p.grad for group in optimizer.param_groups for p in group["params"])
        if applied:
            optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return applied


def step_stats(applied: bool, stats: dict[str, float]) -> dict[str, float]:
    """A task step's log values, with ``skipped=1.0`` added when the step was not applied.

    >>> step_stats(True, {"loss_task": 0.5}), step_stats(False, {"loss_task": 0.5})
    ({'loss_task': 0.5}, {'loss_task': 0.5, 'skipped': 1.0})
    """
    return stats if applied else {**stats, "skipped": 1.0}


def build_optimizer(
    params: Iterable[nn.Parameter], lr: float, weight_decay: float, optimizer: dict | None
) -> torch.optim.Optimizer:
    """A task net's optimiser: ``Adam(lr, weight_decay)`` (default) or ``dict(type='AdamW', lr=...)``.

    ``optimizer`` names a ``torch.optim`` class; its ``lr`` defaults to ``lr`` (and
    ``weight_decay`` is then the class's own default unless given).

    >>> w = [torch.nn.Parameter(torch.ones(1))]
    >>> type(build_optimizer(w, 1e-3, 0.0, None)).__name__
    'Adam'
    >>> build_optimizer(w, 1e-3, 0.0, dict(type="SGD")).defaults["lr"]
    0.001
    """
    if optimizer is None:
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    cfg = dict(optimizer)
    name = cfg.pop("type", "Adam")
    cls = getattr(torch.optim, str(name), None)
    if not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)):
        raise ValueError(f"optimizer.type={name!r} is not a torch.optim optimizer")
    cfg.setdefault("lr", lr)
    return cls(params, **cfg)


def require_backend(module: str, extra: str) -> None:
    """Import ``module`` (a task's optional backend) or say which extra installs it."""
    try:
        __import__(module)
    except ImportError as err:  # pragma: no cover - exercised only without the backend
        raise ImportError(
            f"{module} is required for this task adapter: "
            f"pip install 'learnable_fusion_loss[{extra}]' ({err})"
        ) from err


@contextlib.contextmanager
def buffers_kept_unless(module: nn.Module) -> Iterator[list[bool]]:
    """Restore ``module``'s buffers (BatchNorm statistics) on exit unless told the step counted.

    A skipped step's forward pass still moved the running statistics, and a
    non-finite activation would leave them NaN for good. Set ``flag[0] = True``
    inside the block when the step was applied.

    >>> import torch
    >>> norm = torch.nn.BatchNorm1d(1)
    >>> with buffers_kept_unless(norm) as applied:
    ...     _ = norm(torch.randn(4, 1) + 5)
    >>> norm.running_mean.item(), int(norm.num_batches_tracked)
    (0.0, 0)
    """
    saved = {name: buffer.detach().clone() for name, buffer in module.named_buffers()}
    applied = [False]
    try:
        yield applied
    finally:
        if not applied[0]:
            with torch.no_grad():
                for name, buffer in module.named_buffers():
                    buffer.copy_(saved[name])


def restore_keeping_optimizer(task: Any, snapshot: Any) -> None:
    """``task.restore(snapshot)`` for T's weights and buffers; its optimiser keeps its state.

    (A reference implementation that reloads T's ``state_dict`` only does this: Adam's
    moments and step count keep the step taken since the snapshot.) A :class:`TaskSnapshot` is
    restored without its optimiser state, so the optimiser is not touched at all;
    another adapter's snapshot is restored whole and the optimiser state put back.
    """
    if isinstance(snapshot, TaskSnapshot):
        task.restore(replace(snapshot, optimizer_state=None))
        return
    kept = copy.deepcopy(task.optimizer.state_dict())
    task.restore(snapshot)
    task.optimizer.load_state_dict(kept)


class NetTask:
    """What every adapter around one ``nn.Module`` T (``self.net``) and its optimiser
    (``self.optimizer``) shares: in-memory snapshot/restore, the guarded optimiser
    step and an eval-mode context."""

    net: nn.Module
    optimizer: torch.optim.Optimizer | None

    def snapshot(self) -> TaskSnapshot:
        return snapshot_module(self.net, self.optimizer)

    def restore(self, snapshot: TaskSnapshot) -> None:
        restore_module(self.net, self.optimizer, snapshot)

    def guarded_step(self, loss_and_stats: Callable[[], tuple[Tensor, dict[str, float]]]) -> dict[str, float]:
        """One step of T in train mode on ``loss, stats = loss_and_stats()``, via :func:`finite_step`.

        A skipped step (non-finite loss or gradient) also leaves T's buffers as they
        were (:func:`buffers_kept_unless`). Returns ``loss_task``, then ``stats``, plus
        ``skipped=1.0`` when the step was not applied (:func:`step_stats`).
        """
        if self.optimizer is None:
            raise RuntimeError(f"{type(self).__name__}.train_step needs an optimizer")
        self.net.train()
        with buffers_kept_unless(self.net) as applied:
            loss, stats = loss_and_stats()
            applied[0] = finite_step(self.optimizer, loss)
        return step_stats(applied[0], {"loss_task": float(loss.detach()), **stats})

    @contextlib.contextmanager
    def _eval_mode(self) -> Iterator[None]:
        """Eval mode without autograd; the previous train/eval mode is restored after."""
        was_training = self.net.training
        self.net.eval()
        try:
            with torch.no_grad():
                yield
        finally:
            self.net.train(was_training)


@MODELS.register_module()
class ModuleTask(NetTask):
    """A task made of any ``nn.Module`` T, a criterion and an optimiser.

    ``loss(fused, target) = criterion(net(fused), target)``. This is the generic
    adapter (the core's tests use it; the SegFormer and YOLOv8 adapters follow the
    same protocol). From a config: ``net`` a ``MODELS`` config, ``criterion`` a
    ``torch.nn.functional`` name and ``optimizer`` a ``dict(type='Adam', lr=...)``.

    >>> task = ModuleTask(torch.nn.Conv2d(1, 1, 1), "mse_loss", dict(type="SGD", lr=0.1))
    >>> type(task.net).__name__, type(task.optimizer).__name__
    ('Conv2d', 'SGD')
    """

    def __init__(
        self,
        net: nn.Module | dict,
        criterion: Callable[[Any, Any], Tensor] | str,
        optimizer: torch.optim.Optimizer | dict | None = None,
    ) -> None:
        self.net = build_module(net, "net")
        if isinstance(criterion, str):
            function = getattr(torch.nn.functional, criterion, None)
            if not callable(function):
                raise ValueError(f"criterion={criterion!r} is not a torch.nn.functional loss")
            criterion = function
        self.criterion = criterion
        if isinstance(optimizer, dict):
            optimizer = build_optimizer(self.net.parameters(), optimizer.get("lr", 1e-3), 0.0, optimizer)
        self.optimizer = optimizer

    def loss(self, fused: Tensor, target: Any) -> Tensor:
        return self.criterion(self.net(fused), target)

    def train_step(self, fused: Tensor, target: Any) -> dict[str, float]:
        return self.guarded_step(lambda: (self.loss(fused, target), {}))


class CallableTask:
    """A fixed, parameter-free task: just ``task_loss(fused, target)``.

    Its train step, snapshot and restore do nothing, so T' = T.
    """

    def __init__(self, task_loss: Callable[[Tensor, Any], Tensor]) -> None:
        self.task_loss = task_loss

    def loss(self, fused: Tensor, target: Any) -> Tensor:
        return self.task_loss(fused, target)

    def train_step(self, fused: Tensor, target: Any) -> dict[str, float]:
        return {}

    def snapshot(self) -> None:
        return None

    def restore(self, snapshot: None) -> None:
        return None


def as_task(task: TaskAdapter | Callable[[Tensor, Any], Tensor]) -> TaskAdapter:
    """Accept a full adapter or a bare ``task_loss(fused, target)`` callable."""
    if isinstance(task, TaskAdapter):
        return task
    if callable(task):
        return CallableTask(task)
    raise TypeError(f"task must be a TaskAdapter or a callable, got {type(task).__name__}")
