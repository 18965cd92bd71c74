"""Every learner and optimiser option does what it says, or is refused naming its key."""

from __future__ import annotations

import pytest
import torch
from mmengine.logging import MessageHub

from learnable_fusion_loss.engine import MetaFusionModel, MultiModuleOptimWrapperConstructor
from learnable_fusion_loss.generators import ConvWeightGenerator
from learnable_fusion_loss.losses import LearnableFusionLoss
from learnable_fusion_loss.meta import MetaLossLearner

from _tiny import TinyFusion, make_batch, make_learner
from test_engine import EngineTestFusion, EngineTestTask, batch


def model_and_optim(wrapper: dict | None = None, task=None) -> tuple[MetaFusionModel, object]:
    torch.manual_seed(0)
    model = MetaFusionModel(fusion_net=EngineTestFusion(),
                            loss=LearnableFusionLoss(ConvWeightGenerator(hidden=4, depth=1)),
                            task=task or EngineTestTask())
    cfg = {name: dict(type="OptimWrapper", optimizer=dict(type="SGD", lr=1.0))
           for name in ("fusion", "generator", "task")}
    for name, extra in (wrapper or {}).items():
        cfg[name] = {**cfg[name], **extra}
    return model, MultiModuleOptimWrapperConstructor(cfg)(model)


def test_clip_grad_clips_the_step_and_logs_its_norm():
    """SGD lr 1: the step is minus the gradient, so its norm is the clipped norm."""
    hub = MessageHub.get_current_instance()
    for max_norm in (None, 1e-3):
        extra = {} if max_norm is None else {"clip_grad": dict(max_norm=max_norm)}
        model, optim = model_and_optim({"fusion": extra})
        before = [p.detach().clone() for p in model.fusion_net.parameters()]
        model.train_step({"phase": "fusion", "inputs": batch(3)}, optim)
        step = torch.cat([(b - p.detach()).reshape(-1) for b, p in zip(before, model.fusion_net.parameters(),
                                                                         strict=True)]).norm()
        if max_norm is None:
            assert step > 1e-2  # unclipped, far above the bound tested next
        else:
            assert float(step) == pytest.approx(max_norm, rel=1e-4)
            assert hub.get_scalar("train/grad_norm_fusion").current() > max_norm


def test_clip_grad_applies_to_the_hypergradient():
    steps = []
    for max_norm in (None, "half"):
        extra = {} if max_norm is None else {"clip_grad": dict(max_norm=steps[0] / 2)}
        model, optim = model_and_optim({"generator": extra})
        before = [p.detach().clone() for p in model.generator.parameters()]
        model.train_step({"phase": "meta", "meta_train": batch(1), "meta_test": batch(2)}, optim)
        steps.append(float(torch.cat([(b - p.detach()).reshape(-1) for b, p in
                                      zip(before, model.generator.parameters(), strict=True)]).norm()))
    assert steps[0] > 0 and steps[1] == pytest.approx(steps[0] / 2, rel=1e-3)  # clip: max/(norm + 1e-6)


def test_wrapper_settings_the_learner_cannot_honour_are_refused():
    model, optim = model_and_optim({"fusion": {"accumulative_counts": 2}})
    with pytest.raises(ValueError, match="optim_wrapper.fusion.accumulative_counts=2 is not supported"):
        model.train_step({"phase": "fusion", "inputs": batch(3)}, optim)
    # MMEngine builds an AmpOptimWrapper only on an accelerator; the check is by type.
    from mmengine.optim import AmpOptimWrapper

    from learnable_fusion_loss.engine.optim import check_wrapper

    with pytest.raises(ValueError, match="optim_wrapper.task: AmpOptimWrapper is not supported"):
        check_wrapper("task", AmpOptimWrapper.__new__(AmpOptimWrapper))


def test_task_optimiser_set_twice_is_refused():
    from learnable_fusion_loss.registry import MODELS

    @MODELS.register_module(force=True)
    class OptionsTestTask(EngineTestTask):
        def __init__(self, lr: float = 1e-3) -> None:
            super().__init__()

    model, optim = model_and_optim(task=dict(type="OptionsTestTask", lr=0.5))
    with pytest.raises(ValueError, match=r"model.task sets \['lr'\] and optim_wrapper has a 'task' entry"):
        model.train_step({"phase": "fusion", "inputs": batch(3)}, optim)


def test_inner_backend_is_refused_where_it_would_do_nothing():
    with pytest.raises(ValueError, match="inner_backend='higher' has no effect with hypergradient='forward'"):
        net = EngineTestFusion()
        MetaLossLearner(net, LearnableFusionLoss(ConvWeightGenerator(hidden=2, depth=1)),
                        lambda fused, target: fused.mean(), torch.optim.SGD(net.parameters(), lr=0.1),
                        inner_backend="higher", hypergradient="forward")


def test_max_norm_outer_step_follows_fs_learning_rate_when_asked():
    sizes = {}
    for follow in (False, True):
        learner = make_learner("torch.func", dtype=torch.float64, outer_step="max_norm", outer_lr=1e-2,
                               outer_lr_from_fusion=follow)
        for group in learner.fusion_optimizer.param_groups:
            group["lr"] = 1e-3  # as a StepLR would have decayed it
        tr, te = make_batch(1), make_batch(2)
        before = [p.detach().clone() for p in learner.generator_params]
        learner.meta_step(tr, te)
        sizes[follow] = max(float((b0 - p.detach()).abs().max())
                            for b0, p in zip(before, learner.generator_params, strict=True))
    assert sizes[False] == pytest.approx(1e-2, rel=1e-6)  # max |step| = lr exactly
    assert sizes[True] == pytest.approx(1e-3, rel=1e-6)
    with pytest.raises(ValueError, match="outer_lr_from_fusion=True needs outer_step='max_norm'"):
        make_learner("torch.func", outer_lr_from_fusion=True)


def test_train_tool_clips_when_asked_and_logs_the_norm(tmp_path, data_root):
    """The issue's command: ``--cfg-options optim_wrapper.fusion.clip_grad.max_norm=0.1``."""
    import os
    import re
    import subprocess
    import sys
    from pathlib import Path

    pytest.importorskip("ultralytics", reason="ultralytics is not installed (task of the mini config)")
    repo = Path(__file__).resolve().parents[1]
    options = ["train_cfg.max_epochs=1", "train_cfg.meta_steps=1", "train_cfg.fusion_steps=5",
               "train_dataloader.dataset.pipeline.0.size=[64,64]",
               "train_dataloader.dataset.pipeline.1.size=32", "optim_wrapper.fusion.clip_grad.max_norm=0.1",
               "default_hooks.logger.interval=1"]
    done = subprocess.run(
        [sys.executable, "tools/train.py", "projects/tdfusion/configs/tdfusion_yolov8_msrsdet_mini.py",
         "--work-dir", str(tmp_path / "work"), "--cfg-options", *options], cwd=repo, text=True,
        capture_output=True, timeout=600, env=dict(os.environ, OMP_NUM_THREADS="1", YOLO_OFFLINE="1"))
    assert done.returncode == 0, done.stderr[-3000:]
    norms = [float(v) for v in re.findall(r"grad_norm_fusion: ([0-9.e+-]+)", done.stdout + done.stderr)]
    assert norms and all(v > 0 for v in norms), (done.stdout + done.stderr)[-3000:]


def test_task_optimiser_state_of_t_prime_is_kept_only_when_asked():
    """The public code reloads T's weights after T' but keeps its Adam moments and step count."""
    for keep in (False, True):
        learner = make_learner("torch.func", dtype=torch.float64, keep_task_optimizer_state=keep)
        net, optimizer = learner.task.net, learner.task.optimizer
        learner.fusion_step(make_batch(0))  # one real T step: Adam has a state to keep or restore
        weights = {k: v.clone() for k, v in net.state_dict().items()}
        steps = [float(s["step"]) for s in optimizer.state.values()]
        learner.meta_step(make_batch(1), make_batch(2))
        assert all(torch.equal(weights[k], v) for k, v in net.state_dict().items())  # T restored either way
        after = [float(s["step"]) for s in optimizer.state.values()]
        assert after == ([s + 1 for s in steps] if keep else steps)
    with pytest.raises(ValueError, match="keep_task_optimizer_state=True needs a task with an optimizer"):
        fusion = TinyFusion()
        MetaLossLearner(fusion, LearnableFusionLoss(ConvWeightGenerator(hidden=4, depth=1)),
                        lambda fused, target: fused.mean(), torch.optim.SGD(fusion.parameters(), lr=0.1),
                        keep_task_optimizer_state=True)
