"""The loop's optional warm-ups: F alone on the ½–½ loss, T alone on sources or a rule."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner

from learnable_fusion_loss.meta import TASK_WARMUP_SOURCES

from test_engine import base_cfg, batch, changed, make_model, make_plan, optim_for, params_of


def test_task_warmup_trains_only_t():
    model = make_model()
    optim = optim_for(model)
    for source in TASK_WARMUP_SOURCES:
        f0, g0, t0 = params_of(model.fusion_net), params_of(model.generator), params_of(model.task_net)
        stats = model.train_step({"phase": "task_warmup", "inputs": batch(1), "source": source}, optim)
        assert changed(t0, model.task_net), source
        assert not changed(f0, model.fusion_net) and not changed(g0, model.generator), source
        assert "loss_task" in stats, (source, stats)
    with pytest.raises(ValueError, match="task warm-up source"):
        model.train_step({"phase": "task_warmup", "inputs": batch(1), "source": "ir"}, optim)


def test_task_warmup_sees_the_chosen_input():
    model = make_model()
    seen = []
    model.task.train_step = lambda fused, target: seen.append(fused.clone()) or {"loss_task": 0.0}
    data = batch(2)
    for source in ("a", "b", "both", "mean", "max"):
        seen.clear()
        model.train_step({"phase": "task_warmup", "inputs": data, "source": source}, optim_for(model))
        a, b = data["source_a"], data["source_b"]
        expected = {"a": [a], "b": [b], "both": [a, b], "mean": [(a + b) / 2],
                    "max": [torch.maximum(a, b)]}[source]
        assert len(seen) == len(expected) and all(torch.equal(x, y) for x, y in zip(seen, expected))


def test_fusion_warmup_changes_f_and_never_g_nor_t():
    model = make_model()
    optim = optim_for(model)
    f0, g0, t0 = params_of(model.fusion_net), params_of(model.generator), params_of(model.task_net)
    calls = []
    real = model.generator.forward
    model.generator.forward = lambda *x: calls.append(1) or real(*x)
    for seed in range(3):
        stats = model.train_step({"phase": "fusion_warmup", "inputs": batch(seed)}, optim)
    assert changed(f0, model.fusion_net)
    assert not changed(g0, model.generator) and not changed(t0, model.task_net)
    assert not calls  # G is not even run: the weights are the fixed ½–½
    assert stats["w_ir"] == pytest.approx(0.5) and stats["w_vis"] == pytest.approx(0.5)
    assert "loss_task" not in stats


def test_warmup_plan_precedes_the_epochs_and_is_validated():
    plan = make_plan(n=20, meta_steps=2, fusion_steps=3)
    loader = plan.template
    from learnable_fusion_loss.engine import EpochPlan

    warm = EpochPlan(loader, 2, 3, "phased", seed=7, fusion_warmup_steps=4, task_warmup_steps=3,
                     task_warmup_source="max")
    phases = [p.phase for p in warm.warmup_plan()]
    assert phases == ["fusion_warmup"] * 4 + ["task_warmup"] * 3
    assert warm.warmup_iters == 7 and len(warm) == len(plan) == 5
    # The epochs themselves are unchanged by the warm-up.
    assert repr(warm.plan(0)) == repr(plan.plan(0))
    data = [d for _, _, d in warm.iterate_warmup(5)]
    assert [d.phase for d in data] == ["task_warmup"] * 2 and data[0].source == "max"
    with pytest.raises(ValueError, match="fusion_warmup_steps"):
        EpochPlan(loader, 2, 3, "phased", seed=7, fusion_warmup_steps=-1)
    with pytest.raises(ValueError, match="task_warmup_source"):
        EpochPlan(loader, 2, 3, "phased", seed=7, task_warmup_source="vis")


def test_runner_runs_the_warmups_first_and_resumes_inside_them(tmp_path: Path):
    cfg = base_cfg(tmp_path / "full", fusion_warmup_steps=3, task_warmup_steps=2)
    cfg["default_hooks"]["checkpoint"]["interval"] = 4  # iter_4: inside the task warm-up
    runner = Runner.from_cfg(Config(cfg))
    runner.train()
    assert runner.iter == 5 + 2 * (2 + 3) and runner.epoch == 2
    text = next((tmp_path / "full").glob("*/*.log")).read_text()
    assert text.index("fusion_warmup") < text.index("task_warmup") < text.index("meta phase")
    # Warm-up lines count the 5 warm-up iterations, not as iterations of an epoch (also of 5).
    assert "Warm-up(train) [fusion_warmup][1/5]" in text and "Warm-up(train) [task_warmup][5/5]" in text
    assert text.count("Epoch(train) [1][1/5]") == 1 and "Epoch(train) [2][5/5]" in text
    logs = [json.loads(line) for line in
            next((tmp_path / "full").glob("*/vis_data/scalars.json")).read_text().splitlines()]
    assert [r["w_ir"] for r in logs[:3]] == [0.5, 0.5, 0.5]  # F's warm-up: fixed weights
    # Resumed from iteration 4 (inside the task warm-up): the same final weights.
    again = base_cfg(tmp_path / "resumed", fusion_warmup_steps=3, task_warmup_steps=2)
    again.update(resume=True, load_from=str(tmp_path / "full" / "iter_4.pth"))
    resumed = Runner.from_cfg(Config(again))
    resumed.train()
    assert resumed.iter == runner.iter
    for (name, a), b in zip(runner.model.state_dict().items(), resumed.model.state_dict().values(),
                            strict=True):
        assert torch.equal(a, b), name
