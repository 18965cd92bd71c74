"""``LearnableLossHook``: meta-learn one loss term of an existing MMEngine model.

The setting is a user's own pipeline: a plain :class:`mmengine.model.BaseModel` with
its own ``loss`` (``forward(..., mode='loss')``), trained by an ordinary
``IterBasedTrainLoop`` or ``EpochBasedTrainLoop``. The user adds one entry to the
config and changes nothing else::

    custom_hooks = [dict(
        type='LearnableLossHook',
        loss_attr='criterion',          # the model attribute holding the term, called term(pred, reference)
        loss=dict(type='PixelWeightedLoss', generator=dict(type='PixelWeightGenerator')),
        task=dict(type='YOLOv8Task', num_classes=3),   # any task adapter
        target=dict(bboxes='gt_bboxes', labels='gt_labels'),  # per-sample keys of data_samples
        interval=1)]                    # a meta step every `interval` iterations

What it does:

* at the start of training it puts a parameter-free stand-in at ``loss_attr``: the
  model's ``loss`` now calls the learnable loss, whose weights G computes (without a
  graph: the user's optimiser trains the model on the generated loss, and never
  sees G, which is not a submodule of the model);
* after every training iteration, the task T takes one step on the model's
  detached output (``mode='tensor'``) of that batch (``train_task=True``);
* every ``interval`` iterations, a meta step on G
  (:class:`~learnable_fusion_loss.meta.MetaLossLearner`): the previous batch is the
  meta-train batch and this one the meta-test batch; the inner step differentiates
  the model's own ``mode='loss'`` output through ``torch.func.functional_call``, T'
  takes one step, and the task loss of the updated model goes back into G. The
  model, its optimiser and T are left as they were: only G changes;
* G, its optimiser and T (weights and optimiser) are saved in every checkpoint
  (``checkpoint['learnable_loss']``) and restored on resume;
* at the end of training the model's own term is put back.

The meta step is the unrolled one (the loss is computed inside the model, so the
forward mode's assumption, a loss of the output tensor, does not hold), on one
process (a distributed run is refused rather than run with unsynchronised G's).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from mmengine.dist import get_world_size
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from torch import Tensor, nn

from ..losses.learnable import LearnableLoss, LossOutput
from ..meta.batch import MetaBatch
from ..meta.learner import MetaLossLearner
from ..registry import HOOKS, build_module
from ..tasks.targets import collate_for, split_batch_target
from .parts import build_task, task_module, with_device

__all__ = ["GeneratedLossTerm", "LearnableLossHook"]

_STATE_KEY = "learnable_loss"


class GeneratedLossTerm(nn.Module):
    """What the model's loss term becomes: ``term(pred, *args)`` → the learnable loss's scalar.

    It holds no parameters or buffers (the hook keeps the loss, so G is not a
    submodule of the model: the model's optimiser and ``state_dict`` never see it).
    """

    def __init__(self, hook: LearnableLossHook) -> None:
        super().__init__()
        self._owner = [hook]  # a list: not registered as a submodule

    def __deepcopy__(self, memo: dict) -> GeneratedLossTerm:
        # A copy of the model (an EMA hook's, say) shares the hook's loss, not a copy of it.
        return GeneratedLossTerm(self._owner[0])

    def forward(self, output: Tensor, *inputs: Tensor) -> Tensor:
        hook = self._owner[0]
        result = hook.loss(output, *inputs, detach_params=not hook.with_graph)
        hook.last_output = result
        return result.loss


def _resolve(model: nn.Module, path: str) -> tuple[Any, str]:
    """The object holding attribute ``path`` (dotted) of ``model``, and the last name."""
    parent: Any = model
    names = path.split(".")
    for i, name in enumerate(names[:-1]):
        if not hasattr(parent, name):
            raise AttributeError(f"loss_attr={path!r}: {type(model).__name__} has no attribute "
                                 f"{'.'.join(names[: i + 1])!r}")
        parent = getattr(parent, name)
    if not hasattr(parent, names[-1]):
        raise AttributeError(f"loss_attr={path!r}: {type(model).__name__} has no attribute {path!r} "
                             "(name the attribute holding the loss term the model's loss() calls)")
    return parent, names[-1]


def _sample_value(sample: Any, key: str) -> Any:
    if isinstance(sample, Mapping):
        if key not in sample:
            raise KeyError(f"target key {key!r} is not in the data sample (it has {sorted(sample)})")
        return sample[key]
    if not hasattr(sample, key):
        raise KeyError(f"target key {key!r} is not a field of the data sample ({type(sample).__name__})")
    return getattr(sample, key)


@HOOKS.register_module()
class LearnableLossHook(Hook):
    """Meta-learns the loss term at ``loss_attr`` of a plain MMEngine model (see module docstring).

    Args:
        loss_attr: dotted attribute path of the model's loss term (e.g. ``'criterion'``
            or ``'head.loss_fn'``); the model calls it as ``term(pred, *args)`` and the
            learnable loss is called the same way.
        loss: the :class:`~learnable_fusion_loss.losses.LearnableLoss` (or its config)
            that replaces the term, e.g. ``PixelWeightedLoss``.
        task: the task adapter (or its config) that judges the model's
            ``mode='tensor'`` output.
        target: how the task's target is read from the preprocessed batch: a key, or a
            dict of field → key (e.g. ``dict(bboxes='gt_bboxes', labels='gt_labels')``),
            of every data sample, batched by the task's target codec for an image the
            size of ``inputs``; ``None`` for a task without targets.
        interval: a meta step every ``interval`` training iterations (from the second).
        train_task: T takes one step per iteration on the model's detached output.
        outer_lr, outer_step, inner_lr, inner_backend, inner_optimizer,
        keep_task_optimizer_state: as :class:`~learnable_fusion_loss.meta.MetaLossLearner`
            (η defaults to the model optimiser's current learning rate).
        task_scope: default scope the task config is built under (e.g. ``'mmseg'``).
    """

    priority = "NORMAL"

    def __init__(
        self,
        loss_attr: str,
        loss: LearnableLoss | dict,
        task: Any,
        target: str | Mapping[str, str] | None = None,
        interval: int = 1,
        train_task: bool = True,
        outer_lr: float = 1e-4,
        outer_step: str = "adam",
        inner_lr: float | None = None,
        inner_backend: str = "torch.func",
        inner_optimizer: str = "sgd",
        keep_task_optimizer_state: bool = False,
        task_scope: str | None = None,
    ) -> None:
        if not isinstance(loss_attr, str) or not loss_attr:
            raise ValueError(f"loss_attr must name the model's loss term attribute, got {loss_attr!r}")
        if not (isinstance(interval, int) and interval >= 1):
            raise ValueError(f"interval must be an integer >= 1, got {interval!r}")
        if target is not None and not isinstance(target, (str, Mapping)):
            raise TypeError(f"target must be a key, a dict of field -> key, or None; got {type(target).__name__}")
        self.loss = build_module(loss, "loss")
        if not isinstance(self.loss, LearnableLoss):
            raise TypeError(f"loss must be a LearnableLoss (or its config), got {type(self.loss).__name__}")
        self.loss_attr = loss_attr
        self.task_cfg = task
        self.task_scope = task_scope
        self.target = target
        self.interval = interval
        self.train_task = bool(train_task)
        self.learner_args = dict(outer_lr=outer_lr, outer_step=outer_step, inner_lr=inner_lr,
                                 inner_backend=inner_backend, inner_optimizer=inner_optimizer,
                                 keep_task_optimizer_state=keep_task_optimizer_state)
        self.learner: MetaLossLearner | None = None
        self.with_graph = False
        self.last_output: LossOutput | None = None
        self.previous: MetaBatch | None = None
        self.meta_steps = 0
        self._original: tuple[Any, str, Any] | None = None
        self._pending_state: dict | None = None

    # ------------------------------------------------------------ set-up
    @staticmethod
    def _model(runner: Any) -> nn.Module:
        return runner.model.module if is_model_wrapper(runner.model) else runner.model

    def before_train(self, runner: Any) -> None:
        if get_world_size() > 1:
            raise NotImplementedError("LearnableLossHook runs on one process (G's meta steps are not synchronised)")
        model = self._model(runner)
        parent, name = _resolve(model, self.loss_attr)
        self._original = (parent, name, getattr(parent, name))
        setattr(parent, name, GeneratedLossTerm(self))
        device = next(model.parameters()).device
        self.loss.to(device)
        task = build_task(with_device(self.task_cfg), self.task_scope)
        net = task_module(task)
        if net is not None:
            net.to(device)
        optimizer = getattr(runner.optim_wrapper, "optimizer", None)
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise ValueError("LearnableLossHook needs one optimiser of the model (an OptimWrapper, not an "
                             f"{type(runner.optim_wrapper).__name__}): its learning rate is the look-ahead's η")
        self.learner = MetaLossLearner(model, self.loss, task, optimizer, objective=self._objective,
                                       **self.learner_args)
        if self._pending_state is not None:
            self._load_state(self._pending_state)
            self._pending_state = None

    def after_train(self, runner: Any) -> None:
        if self._original is not None:
            parent, name, term = self._original
            setattr(parent, name, term)
            self._original = None

    # ------------------------------------------------------------ training
    def _objective(self, output: Any, batch: MetaBatch, detach_params: bool) -> LossOutput:
        """The model's own loss dict (``mode='loss'``), summed as its optimiser sees it."""
        if detach_params:
            raise RuntimeError("LearnableLossHook's learner only takes meta steps (the user's loop trains the model)")
        if self.last_output is None:
            raise RuntimeError(f"the model's loss did not call its term {self.loss_attr!r}: nothing to learn")
        model = self.learner.fusion_net  # type: ignore[union-attr]
        total, _ = model.parse_losses(output)
        return LossOutput(loss=total, terms={"loss": total}, loss_params=self.last_output.loss_params)

    def _batch(self, runner: Any, data_batch: Any) -> MetaBatch:
        model = self._model(runner)
        with torch.no_grad():
            data = model.data_preprocessor(data_batch, True)
        if not isinstance(data, Mapping):
            raise TypeError(f"the data preprocessor returned {type(data).__name__}; LearnableLossHook needs a dict "
                            "of the model's forward arguments (inputs=..., data_samples=...)")
        return MetaBatch(inputs={**data, "mode": "loss"}, loss_inputs=(), target=self._target(data),
                         task_inputs={**data, "mode": "tensor"})

    def _target(self, data: Mapping[str, Any]) -> Any:
        """The task's batch target: every sample's value(s) at ``target``, through the task's codec."""
        if self.target is None:
            return None
        inputs = data.get("inputs")
        first = inputs[0] if isinstance(inputs, (list, tuple)) and inputs else inputs
        if not isinstance(first, Tensor):
            raise ValueError("target= needs the batch's inputs as tensors (their size is the task image's)")
        count = len(inputs) if isinstance(inputs, (list, tuple)) else int(first.shape[0])
        keys = {"": self.target} if isinstance(self.target, str) else dict(self.target)
        samples = data.get("data_samples")
        if isinstance(samples, Mapping):  # default_collate: one dict of batched fields
            fields = {field: split_batch_target(_sample_value(samples, key), count, key) for field, key in keys.items()}
        elif isinstance(samples, Sequence) and not isinstance(samples, (str, bytes)):
            fields = {field: [_sample_value(s, key) for s in samples] for field, key in keys.items()}
        else:
            raise ValueError("target= needs the batch's data_samples: a list with one per sample, or a dict "
                             f"of batched fields; got {type(samples).__name__}")
        targets = [fields[""][i] if "" in fields else {f: v[i] for f, v in fields.items()} for i in range(count)]
        return collate_for(self.learner.task, targets, tuple(first.shape[-2:]))  # type: ignore[union-attr]

    def after_train_iter(self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: Any = None) -> None:
        if self.learner is None:
            raise RuntimeError("LearnableLossHook was not set up (before_train did not run)")
        batch = self._batch(runner, data_batch)
        stats: dict[str, float] = {}
        if self.train_task:
            stats.update(self.learner.task_step(batch))
        if self.previous is not None and (runner.iter + 1) % self.interval == 0:
            stats.update(self.meta_step(self.previous, batch))
        self.previous = batch
        for key, value in stats.items():
            runner.message_hub.update_scalar(f"train/{key}", value)

    def meta_step(self, meta_train: MetaBatch, meta_test: MetaBatch) -> dict[str, float]:
        """One meta step on G (inner step on the model, T', outer step): G changes, nothing else."""
        self.with_graph, self.last_output = True, None
        try:
            stats = self.learner.meta_step(meta_train, meta_test)  # type: ignore[union-attr]
        finally:
            self.with_graph = False
        self.meta_steps += 1
        return stats

    def hypergradient(self, meta_train: MetaBatch, meta_test: MetaBatch) -> list[Tensor]:
        """``∂L_t/∂φ`` of one meta step through the model's own loss; nothing is updated."""
        self.with_graph, self.last_output = True, None
        try:
            return self.learner.hypergradient(meta_train, meta_test).grads  # type: ignore[union-attr]
        finally:
            self.with_graph = False

    # ------------------------------------------------------------ checkpoints
    def _state(self) -> dict[str, Any]:
        learner = self.learner
        assert learner is not None
        net = task_module(learner.task)
        task_optimizer = getattr(learner.task, "optimizer", None)
        return {
            "generator": learner.generator.state_dict(),
            "generator_optimizer": (learner.generator_optimizer.state_dict()
                                    if learner.generator_optimizer is not None else None),
            "task": net.state_dict() if net is not None else None,
            "task_optimizer": task_optimizer.state_dict() if task_optimizer is not None else None,
            "meta_steps": self.meta_steps,
        }

    def _load_state(self, state: Mapping[str, Any]) -> None:
        learner = self.learner
        assert learner is not None
        learner.generator.load_state_dict(state["generator"])
        if state.get("generator_optimizer") is not None and learner.generator_optimizer is not None:
            learner.generator_optimizer.load_state_dict(state["generator_optimizer"])
        net = task_module(learner.task)
        if state.get("task") is not None and net is not None:
            net.load_state_dict(state["task"])
        task_optimizer = getattr(learner.task, "optimizer", None)
        if state.get("task_optimizer") is not None and task_optimizer is not None:
            task_optimizer.load_state_dict(state["task_optimizer"])
        self.meta_steps = int(state.get("meta_steps", 0))

    def before_save_checkpoint(self, runner: Any, checkpoint: dict) -> None:
        if self.learner is not None:
            checkpoint[_STATE_KEY] = self._state()

    def after_load_checkpoint(self, runner: Any, checkpoint: dict) -> None:
        state = checkpoint.get(_STATE_KEY)
        if state is None:
            return  # a checkpoint of the plain pipeline: G starts afresh
        if self.learner is None:  # resume runs before training starts: apply it then
            self._pending_state = state
        else:
            self._load_state(state)
