"""Several task adapters on the same fused images: one task loss from many (multi-task).

:class:`MultiTask` is itself a :class:`~.base.TaskAdapter`. Every member sees the
same fused batch; the target is a dict ``{member name: that member's target}``, and
the target codec delegates to each member's own (:func:`~.targets.collate_for`,
:func:`~.targets.split_for`), so a config reads the members' targets from the data
with a nested ``data_keys.target``::

    task=dict(type='MultiTask', weights=dict(seg=1.0, det=1.0),
              tasks=dict(seg=dict(type='SegFormerTask', num_classes=4),
                         det=dict(type='YOLOv8Task', num_classes=3))),
    data_keys=dict(target=dict(seg='gt_sem_seg',
                               det=dict(bboxes='gt_bboxes', labels='gt_labels')))

Weights:

* fixed (default): ``L = sum_k w_k L_k`` (``w_k >= 0``, 1 each unless given). The
  hypergradient of G is then exactly ``sum_k w_k dL_k/dphi``: each member's T' step
  is its own, and the look-ahead step of F does not depend on T at all.
* learned (``learn_weights=True``): Kendall, Gal & Cipolla (CVPR 2018), homoscedastic
  uncertainty, in the form ``L = sum_k exp(-s_k) L_k + s_k`` with one learnable
  log-variance ``s_k = log sigma_k^2`` per member (initial ``s_k = -log w_k``, 0 by
  default). This is the paper's classification form (``1/sigma^2 L + log sigma^2``
  up to a factor 2 on the regulariser; the regression form's 1/2 would only halve
  every weight); it is used by most implementations since ``s`` is unconstrained and
  ``exp(-s)`` never divides by zero. For a fixed ``L_k`` the optimum is ``s_k = log
  L_k``, i.e. weight ``1/L_k``: members on different scales (cross-entropy ~1, YOLO's
  gained box/cls/dfl sum ~10) count alike. The ``s_k`` are T's parameters: stepped in
  :meth:`MultiTask.train_step` on the members' (detached) losses, in
  :meth:`~MultiTask.snapshot`/:meth:`~MultiTask.restore`, never G's; the ``+ s_k``
  term does not depend on the fused image, so G's hypergradient is
  ``sum_k exp(-s'_k) dL_k/dphi`` with ``s'`` the look-ahead T' step's values.

Training: :meth:`MultiTask.train_step` calls every member's own ``train_step`` (its
own optimiser, unweighted loss: the members' nets are disjoint, so weighting only
rescales a step that Adam normalises anyway), then steps the log-variances. It is
atomic: if any member skips (non-finite loss or gradient), everything is restored
and the step reports ``skipped=1.0``, as a single adapter's does. An ``optim_wrapper.task``
optimiser (one optimiser over :attr:`MultiTask.net`, so MMEngine checkpoints it) is
shared by all members and the log-variances: a per-parameter optimiser (Adam, SGD)
only updates the parameters that got a gradient, so sequential member steps on it
equal separate steps with the same settings.

>>> import torch
>>> from torch import nn
>>> from learnable_fusion_loss.tasks import ModuleTask
>>> def member(out: int) -> ModuleTask:
...     net = nn.Conv2d(1, out, 1)
...     return ModuleTask(net, nn.functional.mse_loss, torch.optim.SGD(net.parameters(), lr=0.1))
>>> _ = torch.manual_seed(0)
>>> task = MultiTask(dict(a=member(1), b=member(2)), weights=dict(a=1.0, b=0.5))
>>> fused = torch.rand(2, 1, 4, 4)
>>> target = dict(a=torch.zeros(2, 1, 4, 4), b=torch.zeros(2, 2, 4, 4))
>>> parts = {k: task.tasks[k].loss(fused, target[k]) for k in "ab"}
>>> bool(torch.isclose(task.loss(fused, target), parts["a"] + 0.5 * parts["b"]))
True
>>> sorted(task.train_step(fused, target))
['a/loss_task', 'b/loss_task', 'loss_task']
>>> [sorted(t) for t in task.split_targets(target, 2, (4, 4))]
[['a', 'b'], ['a', 'b']]
"""

from __future__ import annotations

import copy
import inspect
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor, nn

from ..registry import MODELS
from .base import TaskAdapter, TaskSnapshot, as_task, finite_step, step_stats
from .targets import collate_for, split_for

__all__ = ["MultiTask", "MultiTaskNet", "MultiTaskSnapshot"]

_OPTIMIZER_ARGS = ("lr", "weight_decay", "optimizer")


class MultiTaskNet(nn.Module):
    """The one module holding T's parameters: each member's net and the log-variances."""

    def __init__(self, members: Mapping[str, nn.Module], log_vars: Tensor | None) -> None:
        super().__init__()
        self.members = nn.ModuleDict(dict(members))
        self.log_vars = None if log_vars is None else nn.Parameter(log_vars)


@dataclass(frozen=True)
class MultiTaskSnapshot:
    """Each member's snapshot, the log-variances and their (or the shared) optimiser state."""

    members: dict[str, Any]
    log_vars: Tensor | None
    optimizer_state: dict[str, Any] | None


def _member_module(task: Any) -> nn.Module | None:
    if isinstance(task, nn.Module):
        return task
    net = getattr(task, "net", None)
    return net if isinstance(net, nn.Module) else None


def _build_member(name: str, spec: Any, device: str | torch.device | None) -> TaskAdapter:
    """A member adapter: given as is, or built from a ``MODELS`` config dict."""
    if not isinstance(spec, Mapping):
        if not isinstance(spec, TaskAdapter) and not callable(spec):
            raise TypeError(f"tasks[{name!r}] must be a task adapter or a config dict, "
                            f"got {type(spec).__name__}")
        return as_task(spec)
    args = dict(spec)
    kind = args.pop("type", None)
    if kind is None:
        raise ValueError(f"tasks[{name!r}] has no 'type' (e.g. 'SegFormerTask', 'YOLOv8Task')")
    cls = MODELS.get(kind) if isinstance(kind, str) else kind
    if cls is None:
        raise KeyError(
            f"tasks[{name!r}].type={kind!r} is not a registered task adapter; import its module "
            "first (custom_imports: 'learnable_fusion_loss.tasks.segformer' / '.yolov8')")
    if device is not None and "device" not in args:
        try:
            if "device" in inspect.signature(cls).parameters:
                args["device"] = device
        except (TypeError, ValueError):
            pass
    task = cls(**args)
    if not isinstance(task, TaskAdapter):
        raise TypeError(f"tasks[{name!r}] ({type(task).__name__}) does not follow the TaskAdapter "
                        "protocol (loss, train_step, snapshot, restore)")
    return task


@MODELS.register_module()
class MultiTask:
    """Several task adapters driving one task loss (see the module docstring).

    Args:
        tasks: ``{name: adapter or MODELS config dict}``, at least one; names become
            the keys of the target dict and the prefixes of logs and metrics.
        weights: fixed ``{name: w >= 0}`` for every member (default 1 each; at least
            one > 0; a member of weight 0 still trains but is not evaluated in
            :meth:`loss`); with ``learn_weights`` the initial weights (> 0).
        learn_weights: learn the weights as homoscedastic uncertainties (Kendall et al.).
        weight_lr: Adam learning rate of the log-variances (when no shared
            ``optim_wrapper.task`` optimiser replaces it).
        device: given to members built from configs that take a ``device`` and lack one;
            the log-variances live there too.
    """

    def __init__(
        self,
        tasks: Mapping[str, Any],
        weights: Mapping[str, float] | None = None,
        learn_weights: bool = False,
        weight_lr: float = 1e-3,
        device: str | torch.device | None = None,
    ) -> None:
        if not isinstance(tasks, Mapping) or not tasks:
            raise ValueError(f"tasks must be a non-empty dict {{name: task}}, got {tasks!r}")
        names = [str(n) for n in tasks]
        bad = [n for n in names if not n or "/" in n]
        if bad:
            raise ValueError(f"tasks: member names must be non-empty and contain no '/', got {bad}")
        if weights is None:
            weights = dict.fromkeys(names, 1.0)
        if not isinstance(weights, Mapping) or set(map(str, weights)) != set(names):
            given = sorted(map(str, weights)) if isinstance(weights, Mapping) else weights
            raise ValueError(f"weights must have one entry per member of tasks {sorted(names)}, got {given}")
        values = {str(k): float(v) for k, v in weights.items()}
        for name, w in values.items():
            if not math.isfinite(w) or w < 0 or (learn_weights and w == 0):
                need = "> 0 (initial learned weights)" if learn_weights else ">= 0"
                raise ValueError(f"weights[{name!r}] must be finite and {need}, got {w}")
        if not any(w > 0 for w in values.values()):
            raise ValueError(f"weights: at least one must be > 0 (all are 0: {values})")
        if not (weight_lr > 0 and math.isfinite(weight_lr)):
            raise ValueError(f"weight_lr must be a finite positive number, got {weight_lr}")
        #: members whose config sets their optimiser (refused beside a shared optimiser)
        self._optimizer_args = {n: sorted(k for k in _OPTIMIZER_ARGS if k in spec)
                                for n, spec in tasks.items() if isinstance(spec, Mapping)}
        self._optimizer_args = {n: keys for n, keys in self._optimizer_args.items() if keys}
        self.tasks: dict[str, TaskAdapter] = {
            str(n): _build_member(str(n), spec, device) for n, spec in tasks.items()}
        self.names = tuple(self.tasks)
        self.fixed_weights = {n: values[n] for n in self.names}
        self.learn_weights = bool(learn_weights)
        log_vars = None
        if self.learn_weights:
            log_vars = torch.tensor([-math.log(values[n]) for n in self.names],
                                    device=torch.device(device) if device is not None else None)
        modules = {n: m for n, t in self.tasks.items() if (m := _member_module(t)) is not None}
        self.net = MultiTaskNet(modules, log_vars)
        self._shared: torch.optim.Optimizer | None = None
        self._weight_optimizer = (torch.optim.Adam([self.net.log_vars], lr=weight_lr)
                                  if self.learn_weights else None)

    # ------------------------------------------------------------------ weights
    def weights(self) -> dict[str, Tensor]:
        """Each member's current weight: fixed ``w_k``, or ``exp(-s_k)`` (differentiable in ``s``)."""
        if self.net.log_vars is None:
            return {n: torch.tensor(w) for n, w in self.fixed_weights.items()}
        return {n: torch.exp(-self.net.log_vars[k]) for k, n in enumerate(self.names)}

    # ------------------------------------------------------------------ optimiser
    @property
    def optimizer(self) -> torch.optim.Optimizer | None:
        """The optimiser shared by every member and the log-variances (None: each has its own)."""
        return self._shared

    @optimizer.setter
    def optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        if self._optimizer_args:
            raise ValueError(
                f"MultiTask members {self._optimizer_args} set their optimiser and a shared task "
                "optimiser (optim_wrapper.task) replaces it: set T's optimiser in one place "
                "(optim_wrapper.task, or the members' arguments with optim_wrapper.task=None)")
        covered = {id(p) for group in optimizer.param_groups for p in group["params"]}
        missing = [n for n, p in self.net.named_parameters() if p.requires_grad and id(p) not in covered]
        if missing:
            raise ValueError(f"the shared task optimiser does not cover MultiTask.net's {missing[:3]} ...")
        for name, task in self.tasks.items():
            if _member_module(task) is None:
                continue
            if not hasattr(task, "optimizer"):
                raise AttributeError(f"tasks[{name!r}] has no settable `optimizer` to share")
            task.optimizer = optimizer
        self._shared = optimizer
        if self._weight_optimizer is not None:
            self._weight_optimizer = optimizer

    # ------------------------------------------------------------------ targets
    def _targets(self, target: Any) -> dict[str, Any]:
        if not isinstance(target, Mapping):
            raise TypeError(f"MultiTask's target must be a dict {{member: target}} for {list(self.names)}, "
                            f"got {type(target).__name__}")
        missing = [n for n in self.names if n not in target]
        extra = sorted(str(k) for k in target if k not in self.tasks)
        if missing or extra:
            raise KeyError(f"MultiTask's target has no entry for members {missing} and entries {extra} "
                           f"for no member (members: {list(self.names)}); data_keys.target must be a "
                           "dict {member: key spec}")
        return {n: target[n] for n in self.names}

    def collate_targets(self, targets: Sequence[Any], image_size: tuple[int, int]) -> dict[str, Any]:
        """Per-sample ``{member: target}`` dicts → ``{member: its batch target}`` (each member's codec)."""
        rows = [self._targets(t) for t in targets]
        return {n: collate_for(task, [r[n] for r in rows], image_size) for n, task in self.tasks.items()}

    def split_targets(self, target: Any, count: int, image_size: tuple[int, int]) -> list[dict[str, Any]]:
        """``{member: batch target}`` → one ``{member: target}`` per sample (each member's codec)."""
        target = self._targets(target)
        columns = {n: split_for(task, target[n], count, image_size) for n, task in self.tasks.items()}
        return [{n: columns[n][i] for n in self.names} for i in range(count)]

    # ------------------------------------------------------------------ loss
    def member_losses(self, fused: Tensor, target: Any) -> dict[str, Tensor]:
        """``{name: L_k(fused, target[name])}`` for every member, each on the same ``fused``."""
        target = self._targets(target)
        return {n: task.loss(fused, target[n]) for n, task in self.tasks.items()}

    def loss(self, fused: Tensor, target: Any) -> Tensor:
        """``sum_k w_k L_k`` (fixed weights; members of weight 0 are not run) or
        ``sum_k exp(-s_k) L_k + s_k`` (learned)."""
        target = self._targets(target)
        total: Tensor | None = None
        for k, (name, task) in enumerate(self.tasks.items()):
            if self.net.log_vars is None:
                weight = self.fixed_weights[name]
                if weight == 0:
                    continue
                term = weight * task.loss(fused, target[name])
            else:
                value = task.loss(fused, target[name])
                s = self.net.log_vars[k].to(value.dtype)
                term = torch.exp(-s) * value + s
            total = term if total is None else total + term
        assert total is not None  # at least one weight is > 0
        return total

    def _combine(self, losses: Mapping[str, float]) -> float:
        if self.net.log_vars is None:
            return sum(self.fixed_weights[n] * v for n, v in losses.items() if self.fixed_weights[n] > 0)
        s = self.net.log_vars.detach().tolist()
        return sum(math.exp(-s[k]) * losses[n] + s[k] for k, n in enumerate(self.names))

    # ------------------------------------------------------------------ training
    def train_step(self, fused: Tensor, target: Any) -> dict[str, float]:
        """Every member's own step on the same (detached) ``fused``, then the log-variances'.

        Returns ``loss_task`` (the combined loss of the members' pre-step losses), each
        member's stats as ``<name>/<stat>`` and, when learned, ``<name>/weight`` and
        ``<name>/log_var`` (after the step). Atomic: when any member's step (or the log-variances') is not
        applied, T is restored whole and ``skipped=1.0`` is returned.
        """
        target = self._targets(target)
        fused = fused.detach()
        before = self.snapshot()
        stats: dict[str, float] = {}
        losses: dict[str, float] = {}
        applied = True
        for name, task in self.tasks.items():
            reported = dict(task.train_step(fused, target[name]))
            if "loss_task" not in reported:  # e.g. a CallableTask: its loss, for the total
                with torch.no_grad():
                    reported["loss_task"] = float(task.loss(fused, target[name]))
            if reported.pop("skipped", 0.0):
                applied = False
                reported["skipped"] = 1.0
            losses[name] = float(reported["loss_task"])
            stats.update({f"{name}/{key}": float(v) for key, v in reported.items()})
        total = self._combine(losses)
        if applied and self.net.log_vars is not None:
            s = self.net.log_vars
            value = sum(torch.exp(-s[k]) * losses[n] + s[k] for k, n in enumerate(self.names))
            applied = finite_step(self._weight_optimizer, value)
        if not applied:
            self.restore(before)
        if self.net.log_vars is not None:  # fixed weights are in the config, not the log
            for k, (name, weight) in enumerate(self.weights().items()):
                stats[f"{name}/weight"] = float(weight.detach())
                stats[f"{name}/log_var"] = float(self.net.log_vars[k].detach())
        return step_stats(applied, {"loss_task": total, **stats})

    # ------------------------------------------------------------------ state
    def snapshot(self) -> MultiTaskSnapshot:
        """Every member's snapshot, the log-variances and their optimiser's state (a
        shared optimiser's state is copied once, not once per member)."""
        members = {}
        for name, task in self.tasks.items():
            snap = task.snapshot()
            if self._shared is not None and isinstance(snap, TaskSnapshot):
                snap = replace(snap, optimizer_state=None)
            members[name] = snap
        optimizer = self._shared if self._shared is not None else self._weight_optimizer
        return MultiTaskSnapshot(
            members=members,
            log_vars=None if self.net.log_vars is None else self.net.log_vars.detach().clone(),
            optimizer_state=None if optimizer is None else copy.deepcopy(optimizer.state_dict()),
        )

    def restore(self, snapshot: MultiTaskSnapshot) -> None:
        """Write a :meth:`snapshot` back, bit-identically, into every member and the weights."""
        for name, task in self.tasks.items():
            task.restore(snapshot.members[name])
        if self.net.log_vars is not None and snapshot.log_vars is not None:
            with torch.no_grad():
                self.net.log_vars.copy_(snapshot.log_vars)
            self.net.log_vars.grad = None
        optimizer = self._shared if self._shared is not None else self._weight_optimizer
        if optimizer is not None and snapshot.optimizer_state is not None:
            optimizer.load_state_dict(copy.deepcopy(snapshot.optimizer_state))

    # ------------------------------------------------------------------ inference
    def predict(self, fused: Tensor) -> dict[str, Any]:
        """``{name: member.predict(fused)}`` for the members that predict."""
        return {n: t.predict(fused) for n, t in self.tasks.items() if callable(getattr(t, "predict", None))}

    def evaluate(self, batches: Iterable[tuple[Tensor, Any]]) -> dict[str, float]:
        """Each member's ``evaluate`` on its targets of the same batches, as ``<name>/<metric>``
        (members without ``evaluate`` are left out)."""
        batches = [(fused, self._targets(target)) for fused, target in batches]
        if not batches:
            raise ValueError("evaluate() got no batches")
        out: dict[str, float] = {}
        for name, task in self.tasks.items():
            if callable(getattr(task, "evaluate", None)):
                metrics = task.evaluate((fused, target[name]) for fused, target in batches)
                out.update({f"{name}/{key}": float(v) for key, v in metrics.items()})
        return out
