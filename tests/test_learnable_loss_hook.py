"""LearnableLossHook in a user's plain MMEngine pipeline (tests/_plain_pipeline.py).

The user's model, dataset and loop are ordinary MMEngine ones; the hook is one
``custom_hooks`` entry. Checked: the pipeline trains unchanged without the hook
and meta-learns with it (through tools/train.py), a meta step changes G only,
checkpoint and resume keep G, its optimiser and T, and the hypergradient through
the hook equals the learner's on the same model, loss, task and batches.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mmengine.runner import Runner
from torch import nn

import _plain_pipeline  # noqa: F401  (registers the user's types)
from _plain_pipeline import NoisyPatches, PlainDenoiser
from learnable_fusion_loss import compat
from learnable_fusion_loss.engine import LearnableLossHook
from learnable_fusion_loss.losses import PixelWeightedLoss
from learnable_fusion_loss.meta import MetaBatch, MetaLossLearner
from learnable_fusion_loss.tasks import ModuleTask

compat.patch_mmengine_checkpoint_loading()  # as tools/train.py does: MMEngine's resume under torch >= 2.6

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent

HOOK = dict(
    type="LearnableLossHook",
    loss_attr="criterion",
    loss=dict(type="PixelWeightedLoss", base="charbonnier",
              generator=dict(type="PixelWeightGenerator", in_channels=1, hidden=4, depth=1)),
    task=dict(type="ModuleTask", net=dict(type="GradientNet"), criterion="mse_loss",
              optimizer=dict(type="Adam", lr=1e-2)),
    target="gradients",
    interval=1,
    outer_lr=1e-2,
)

CONFIG = """
default_scope = 'lfl'
model = dict(type='PlainDenoiser', channels=4)
train_dataloader = dict(
    dataset=dict(type='NoisyPatches', length=8, size=16),
    sampler=dict(type='DefaultSampler', shuffle=False), batch_size=2, num_workers=0,
    collate_fn=dict(type='default_collate'))
train_cfg = dict(type='IterBasedTrainLoop', max_iters=6)
optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.1))
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=3, by_epoch=False),
                     logger=dict(type='LoggerHook', interval=1))
randomness = dict(seed=0)
custom_imports = dict(imports=['_plain_pipeline'], allow_failed_imports=False)
"""


def _runner(work_dir: Path, hooks: list | None = None, max_iters: int = 4, **extra) -> Runner:
    torch.manual_seed(0)
    return Runner(
        model=PlainDenoiser(),
        work_dir=str(work_dir),
        train_dataloader=dict(dataset=NoisyPatches(length=8, size=16),
                              sampler=dict(type="DefaultSampler", shuffle=False), batch_size=2,
                              num_workers=0, collate_fn=dict(type="default_collate")),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        optim_wrapper=dict(optimizer=dict(type="SGD", lr=0.1)),
        custom_hooks=hooks or [],
        default_hooks=dict(checkpoint=dict(type="CheckpointHook", interval=2, by_epoch=False)),
        default_scope="lfl",
        **extra,
    )


def _hook(runner: Runner) -> LearnableLossHook:
    (hook,) = [h for h in runner.hooks if isinstance(h, LearnableLossHook)]
    return hook


def _state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _equal(a: dict, b: dict) -> bool:
    return set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


def _train(tmp_path: Path, name: str, hook: bool) -> subprocess.CompletedProcess:
    config = tmp_path / f"{name}.py"
    config.write_text(CONFIG + (f"custom_hooks = [{HOOK!r}]\n" if hook else ""), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(TESTS)]), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(REPO / "tools/train.py"), str(config), "--work-dir",
                           str(tmp_path / name)], capture_output=True, text=True, env=env, timeout=300)


def test_plain_config_trains_unchanged_without_the_hook_and_meta_learns_with_it(tmp_path):
    plain = _train(tmp_path, "plain", hook=False)
    assert plain.returncode == 0, plain.stderr[-3000:]
    hooked = _train(tmp_path, "hooked", hook=True)
    assert hooked.returncode == 0, hooked.stderr[-3000:]
    plain_ckpt = torch.load(tmp_path / "plain/iter_6.pth", map_location="cpu", weights_only=False)
    hooked_ckpt = torch.load(tmp_path / "hooked/iter_6.pth", map_location="cpu", weights_only=False)
    assert "learnable_loss" not in plain_ckpt
    state = hooked_ckpt["learnable_loss"]
    assert state["meta_steps"] == 5  # from the second iteration on, one per iteration
    # The model's own state_dict keeps its keys (the stand-in term holds no tensors) ...
    assert set(plain_ckpt["state_dict"]) == set(hooked_ckpt["state_dict"])
    # ... and G moved away from its start (a zero last layer: every weight 1).
    last = [v for k, v in state["generator"].items() if k.endswith("weight")][-1]
    assert last.abs().max() > 0
    log = (tmp_path / "hooked").rglob("*.log")
    text = "\n".join(p.read_text() for p in log)
    assert "hypergrad_norm" in text and "loss_task_meta" in text


def test_meta_steps_change_only_the_generator(tmp_path):
    runner = _runner(tmp_path, [copy.deepcopy(HOOK)], max_iters=2)
    runner.train()
    hook = _hook(runner)
    hook.before_train(runner)  # put the generated term back in for a meta step by hand
    model, task = runner.model, hook.learner.task
    before = (_state(model), _state(task.net), copy.deepcopy(runner.optim_wrapper.optimizer.state_dict()),
              copy.deepcopy(task.optimizer.state_dict()), _state(hook.loss.generator))
    batches = [hook._batch(runner, b) for b in list(runner.train_dataloader)[:2]]
    stats = hook.meta_step(*batches)
    assert stats["hypergrad_norm"] > 0 and stats["skipped_meta"] == 0
    assert _equal(before[0], _state(model))
    assert _equal(before[1], _state(task.net))
    assert runner.optim_wrapper.optimizer.state_dict() == before[2]
    assert str(task.optimizer.state_dict()) == str(before[3])
    assert not _equal(before[4], _state(hook.loss.generator))
    hook.after_train(runner)
    assert isinstance(model.criterion, nn.L1Loss)  # the user's own term is back


def test_checkpoint_and_resume_keep_the_generator_its_optimiser_and_the_task(tmp_path):
    runner = _runner(tmp_path, [copy.deepcopy(HOOK)], max_iters=4)
    runner.train()
    saved = torch.load(tmp_path / "iter_4.pth", map_location="cpu", weights_only=False)["learnable_loss"]
    hook = _hook(runner)
    assert _equal(saved["generator"], _state(hook.loss.generator))
    assert saved["generator_optimizer"]["state"], "G's Adam state is saved"

    resumed = _runner(tmp_path, [copy.deepcopy(HOOK)], max_iters=4, resume=True,
                      load_from=str(tmp_path / "iter_4.pth"))
    resumed.train()  # already at max_iters: loads the checkpoint and stops
    other = _hook(resumed)
    assert _equal(saved["generator"], _state(other.loss.generator))
    assert _equal(saved["task"], _state(other.learner.task.net))
    got = other.learner.generator_optimizer.state_dict()
    assert all(torch.equal(got["state"][i]["exp_avg"], s["exp_avg"]) for i, s in saved["generator_optimizer"]["state"].items())
    assert str(other.learner.task.optimizer.state_dict()["state"]) == str(saved["task_optimizer"]["state"])
    assert other.meta_steps == saved["meta_steps"] == 3


def test_hypergradient_through_the_hook_equals_the_learners(tmp_path):
    runner = _runner(tmp_path, [copy.deepcopy(HOOK)], max_iters=2)
    runner.train()
    hook = _hook(runner)
    hook.before_train(runner)
    raw = list(runner.train_dataloader)[:2]
    through_hook = hook.hypergradient(*(hook._batch(runner, b) for b in raw))

    # The same model, loss, task and batches, written directly for the learner.
    model = copy.deepcopy(runner.model)
    loss = PixelWeightedLoss(copy.deepcopy(hook.loss.generator), base="charbonnier")
    task_net = copy.deepcopy(hook.learner.task.net)
    task = ModuleTask(task_net, nn.functional.mse_loss, torch.optim.Adam(task_net.parameters(), lr=1e-2))
    task.optimizer.load_state_dict(hook.learner.task.optimizer.state_dict())
    learner = MetaLossLearner(model, loss, task, torch.optim.SGD(model.parameters(), lr=0.1))

    def batch(data: dict) -> MetaBatch:
        samples = data["data_samples"]
        return MetaBatch(inputs=(data["inputs"],), loss_inputs=(samples["clean"],), target=samples["gradients"])

    direct = learner.hypergradient(batch(raw[0]), batch(raw[1])).grads
    assert torch.cat([g.flatten() for g in direct]).abs().max() > 0
    for a, b in zip(through_hook, direct, strict=True):  # the same operations: the same bits
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    hook.after_train(runner)


def test_bad_hook_arguments_are_named(tmp_path):
    with pytest.raises(ValueError, match="interval"):
        LearnableLossHook(loss_attr="criterion", loss=HOOK["loss"], task=HOOK["task"], interval=0)
    with pytest.raises(TypeError, match="LearnableLoss"):
        LearnableLossHook(loss_attr="criterion", loss=nn.L1Loss(), task=HOOK["task"])
    runner = _runner(tmp_path, [{**copy.deepcopy(HOOK), "loss_attr": "head.loss"}], max_iters=1)
    with pytest.raises(AttributeError, match="loss_attr='head.loss'.*'head'"):
        runner.train()


def test_target_is_read_per_sample_from_a_list_or_a_batched_dict():
    hook = LearnableLossHook(loss_attr="criterion", loss=HOOK["loss"], task=HOOK["task"],
                             target=dict(boxes="gt_bboxes", labels="gt_labels"))
    hook.learner = type("L", (), {"task": object()})()  # no codec: the default stacks per field
    inputs = torch.zeros(2, 1, 4, 4)
    listed = [{"gt_bboxes": torch.ones(1, 4) * i, "gt_labels": torch.tensor([i])} for i in range(2)]
    got = hook._target({"inputs": inputs, "data_samples": listed})
    assert got["boxes"].shape == (2, 1, 4) and got["labels"].tolist() == [[0], [1]]
    batched = {"gt_bboxes": torch.stack([s["gt_bboxes"] for s in listed]),
               "gt_labels": torch.stack([s["gt_labels"] for s in listed])}
    again = hook._target({"inputs": inputs, "data_samples": batched})
    assert torch.equal(again["boxes"], got["boxes"]) and torch.equal(again["labels"], got["labels"])
    with pytest.raises(KeyError, match="'gt_labels' is not in the data sample"):
        hook._target({"inputs": inputs, "data_samples": [{"gt_bboxes": torch.ones(1, 4)}] * 2})
