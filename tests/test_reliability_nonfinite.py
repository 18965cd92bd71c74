"""Reliability catalogue, item 4: a non-finite loss or gradient is skipped, in every phase.

A NaN is injected (F's output, T's loss, T's gradient, all learning rates at 1e6)
and each phase must skip the step without applying it, count it in
``skipped_<phase>`` / ``skipped_total``, name the phase and iteration, and stop
only after ``max_consecutive`` skips in a row. Before, a NaN fusion loss was
applied (or crashed later in T's input check) and ``skipped_total`` stayed 0.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from _tiny import make_batch, make_learner
from learnable_fusion_loss.meta import NonFiniteError, NonFiniteGuard
from learnable_fusion_loss.tasks import ModuleTask, finite_step

REPO_ROOT = Path(__file__).resolve().parents[1]


def _state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _same(before: dict[str, torch.Tensor], module: nn.Module) -> bool:
    return all(torch.equal(before[k], v) for k, v in module.state_dict().items())


class _Poison:
    """A forward hook that makes F's output NaN while ``on``."""

    def __init__(self) -> None:
        self.on = True

    def __call__(self, module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        return output * float("nan") if self.on else output


def _poisoned_learner(**kwargs):
    learner = make_learner(guard=NonFiniteGuard(max_consecutive=5, report=lambda message: None), **kwargs)
    poison = _Poison()
    learner.fusion_net.register_forward_hook(poison)
    return learner, poison


def test_guard_reports_counts_and_stops_after_a_run_of_skips():
    messages: list[str] = []
    guard = NonFiniteGuard(max_consecutive=3, report=messages.append)
    guard.iteration = 12
    assert guard.record("fusion", False, "fusion loss") == {"skipped_fusion": 1.0, "skipped_total": 1.0}
    assert guard.record("task", False) == {"skipped_task": 1.0, "skipped_total": 2.0}
    assert guard.record("fusion", True)["skipped_fusion"] == 0.0  # a finite step ends the run
    guard.record("fusion", False)
    guard.record("fusion", False)
    assert "iteration 12" in messages[0] and "fusion step skipped" in messages[0]
    with pytest.raises(NonFiniteError, match=r"iteration 12: 3 consecutive fusion steps"):
        guard.record("fusion", False)
    with pytest.raises(ValueError, match="max_consecutive"):
        NonFiniteGuard(max_consecutive=0)


def test_a_nan_fusion_loss_is_skipped_and_never_applied():
    learner, poison = _poisoned_learner()
    f_before, t_before = _state(learner.fusion_net), _state(learner.task.net)
    opt_before = copy.deepcopy(learner.fusion_optimizer.state_dict())
    stats = learner.fusion_step(make_batch(0))
    assert stats["skipped_fusion"] == 1.0 and stats["skipped_task"] == 1.0  # T never saw the NaN
    assert stats["skipped_total"] == 2.0
    assert _same(f_before, learner.fusion_net) and _same(t_before, learner.task.net)
    assert learner.fusion_optimizer.state_dict() == opt_before
    assert all(p.grad is None for p in learner.fusion_params)
    poison.on = False
    stats = learner.fusion_step(make_batch(1))
    assert stats["skipped_fusion"] == 0.0 and stats["skipped_total"] == 2.0
    assert not _same(f_before, learner.fusion_net)


@pytest.mark.parametrize("hypergradient", ["unrolled", "forward"])
def test_a_nan_in_the_meta_step_is_skipped(hypergradient: str):
    learner, _ = _poisoned_learner(hypergradient=hypergradient)
    g_before, t_before = _state(learner.generator), _state(learner.task.net)
    stats = learner.meta_step(make_batch(0), make_batch(1))
    assert stats["skipped_meta"] == 1.0 and stats["skipped_total"] == 1.0
    assert _same(g_before, learner.generator) and _same(t_before, learner.task.net)


def test_the_interleaved_meta_step_skips_f_and_t_too():
    learner, _ = _poisoned_learner()
    f_before = _state(learner.fusion_net)
    stats = learner.meta_step(make_batch(0), make_batch(1), update_fusion=True)
    assert stats["skipped_meta"] == 1.0
    assert _same(f_before, learner.fusion_net)


def test_warmups_skip_non_finite_steps():
    learner, _ = _poisoned_learner()
    f_before, t_before = _state(learner.fusion_net), _state(learner.task.net)
    assert learner.fusion_warmup_step(make_batch(0))["skipped_fusion_warmup"] == 1.0
    assert learner.task_warmup_step(make_batch(0), "fused")["skipped_task_warmup"] == 1.0
    assert learner.guard.totals == {"fusion_warmup": 1, "task_warmup": 1}
    assert _same(f_before, learner.fusion_net) and _same(t_before, learner.task.net)


def test_a_non_finite_task_gradient_with_a_finite_loss_is_not_applied():
    net = nn.Conv2d(1, 2, 3, padding=1).double()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)

    def criterion(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        zero = prediction - prediction.detach()  # 0, with gradient 1
        return ((prediction - target) ** 2).mean() + torch.sqrt(zero.abs()).sum()  # d√0 = inf

    task = ModuleTask(net, criterion, optimizer)
    before = _state(net)
    batch = make_batch(0)
    stats = task.train_step(batch.a, batch.target)
    assert stats["skipped"] == 1.0 and torch.isfinite(torch.tensor(stats["loss_task"]))
    assert _same(before, net) and optimizer.state_dict()["state"] == {}
    weight = nn.Parameter(torch.ones(1))
    assert finite_step(torch.optim.SGD([weight], lr=1.0), (weight * 2).sum()) and weight.item() == -1.0


def test_a_collapsed_detector_is_reported(data_root: Path):
    """YOLOv8 at task lr 1e6 reaches a finite loss of exactly 0 (nothing assigned): warned once."""
    pytest.importorskip("ultralytics", reason="ultralytics (extra 'det') is not installed")
    from learnable_fusion_loss import compat

    compat.apply_offline_defaults()
    from learnable_fusion_loss.tasks.yolov8 import YOLOv8Task

    task = YOLOv8Task(seed=0, lr=1e6)
    fused = torch.rand(1, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    target = [torch.tensor([[0.0, 0.5, 0.5, 0.4, 0.4]])]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        losses = [task.train_step(fused, target)["loss_task"] for _ in range(6)]
    collapse = [w for w in caught if "collapsed" in str(w.message)]
    assert losses[-1] == 0.0 and len(collapse) == 1, (losses, [str(w.message) for w in caught])
    assert "1e+06" in str(collapse[0].message)


def test_train_tool_logs_each_skip_and_stops_a_diverged_run(tmp_path: Path, data_root: Path):
    """tools/train.py: every skip is a warning with iteration and phase; exit 1 with a message."""
    pytest.importorskip("ultralytics", reason="ultralytics is not installed (task of the mini config)")
    env = dict(os.environ, OMP_NUM_THREADS="1", YOLO_OFFLINE="1", YOLO_AUTOINSTALL="0")
    options = [
        "train_cfg.max_epochs=1", "train_cfg.meta_steps=1", "train_cfg.fusion_steps=4",
        "train_dataloader.dataset.pipeline.0.size=[64,64]", "train_dataloader.dataset.pipeline.1.size=32",
        "model.max_consecutive_skips=3", *(f"optim_wrapper.{key}.optimizer.lr=1e6"
                                           for key in ("fusion", "generator", "task")),
    ]
    done = subprocess.run(
        [sys.executable, "tools/train.py", "projects/tdfusion/configs/tdfusion_yolov8_msrsdet_mini.py",
         "--work-dir", str(tmp_path / "work"), "--cfg-options", *options],
        cwd=REPO_ROOT, env=env, text=True, capture_output=True, timeout=600)
    log = done.stdout + done.stderr
    assert done.returncode == 1, log[-3000:]
    assert "iteration 1: meta step skipped, non-finite" in log
    assert "consecutive" in done.stderr.splitlines()[-1] and "Traceback" not in done.stderr
