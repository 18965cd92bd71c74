"""The ablations of TDFusion's Table 3 and the trivial baselines do what defines them.

Each test builds a real config of ``projects/tdfusion/configs`` (F, G and YOLOv8n as
T, on the real ``msrs_det`` pairs), runs a few real iterations of its epoch plan and
checks the behaviour that defines it, not the config values that ask for it:

* I: G never changes and the weights are ½;
* II: the gradient term contributes nothing to L_f;
* III: F moves when only the task loss is non-zero;
* IV: no fusion-phase iterations, F takes its look-ahead step θ' inside the meta
  iteration, and G gets the method's number of updates;
* V: fused = w_a·a + w_b·b (both readings: G's weights, a separate weight net);
* baselines: the fused image is the rule's, and only T trains.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # projects.tdfusion.tdfusion (as tools/*.py do)

from learnable_fusion_loss.compat import apply_offline_defaults  # noqa: E402

apply_offline_defaults()
pytest.importorskip("ultralytics", reason="ultralytics (extra 'det') is not installed")

from mmengine.config import Config  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

from learnable_fusion_loss.engine import EpochPlan  # noqa: E402
from learnable_fusion_loss.engine.config import resolve_data_root  # noqa: E402

CONFIG_DIR = REPO_ROOT / "projects" / "tdfusion" / "configs"
METHOD = "tdfusion_yolov8_msrsdet_mini.py"


class Run:
    """A config's model, optimisers and epoch plan, and its iterations' data."""

    def __init__(self, name: str, work_dir: Path, data_root: Path) -> None:
        cfg = Config.fromfile(str(CONFIG_DIR / name))
        resolve_data_root(cfg, REPO_ROOT, explicit=str(data_root))
        cfg.work_dir = str(work_dir)
        cfg.visualizer = None
        runner = Runner.from_cfg(cfg)
        self.model = runner.model
        self.loop = runner.build_train_loop(cfg.train_cfg)
        self.plan = self.loop.dataloader
        self.optim = runner.build_optim_wrapper(cfg.optim_wrapper)

    def iterations(self, count: int, epoch: int = 0) -> list[tuple[str, dict]]:
        out = []
        for _, phase, data in self.plan.iterate(epoch):
            out.append((phase, data))
            if len(out) == count:
                break
        return out

    def step(self, data: dict) -> dict[str, float]:
        return self.model.train_step(data, self.optim)

    def batch(self, data: dict):
        return self.model.preprocess(data, True)


def snapshot(module: torch.nn.Module | None) -> list[torch.Tensor]:
    return [] if module is None else [p.detach().clone() for p in module.parameters()]


def moved(before: list[torch.Tensor], module: torch.nn.Module | None) -> bool:
    after = [] if module is None else list(module.parameters())
    return any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))


@pytest.fixture
def run(tmp_path, data_root):
    def make(name: str) -> Run:
        torch.manual_seed(0)
        return Run(name, tmp_path / name.removesuffix(".py"), data_root)

    return make


def test_ablation1_keeps_g_fixed_at_one_half(run):
    r = run("ablation1_fixed_weights_msrsdet_mini.py")
    assert r.plan.meta_steps == 0 and "generator" not in r.optim.keys()
    f0 = snapshot(r.model.fusion_net)
    for phase, data in r.iterations(3):
        assert phase == "fusion"
        stats = r.step(data)
        batch = r.batch(data.inputs)
        weights = r.model.loss.generate(batch.a, batch.b)
        assert torch.equal(weights, torch.full_like(weights, 0.5))
        assert stats["w_ir"] == stats["w_vis"] == 0.5
    assert not list(r.model.generator.parameters())  # nothing G could learn
    assert moved(f0, r.model.fusion_net)


def test_ablation2_gradient_term_contributes_nothing(run):
    r2, full = run("ablation2_no_gradient_loss_msrsdet_mini.py"), run(METHOD)
    full.model.generator.load_state_dict(r2.model.generator.state_dict())
    (_, data), = [it for it in r2.iterations(r2.plan.meta_steps + 1) if it[0] == "fusion"]
    batch = r2.batch(data.inputs)
    fused = r2.model.fusion_net(batch.a, batch.b).detach().requires_grad_()
    out2 = r2.model.loss(fused, batch.a, batch.b)
    out_full = full.model.loss(fused, batch.a, batch.b)
    assert float(out_full.terms["loss_grad"].detach()) > 0  # the term is there to drop
    assert torch.equal(out2.loss, out2.terms["loss_int"])
    assert torch.allclose(out2.loss, out_full.terms["loss_int"], rtol=1e-6, atol=0)
    (g2,) = torch.autograd.grad(out2.loss, fused)
    (g_int,) = torch.autograd.grad(out_full.terms["loss_int"], fused)
    assert torch.allclose(g2, g_int, rtol=1e-6, atol=1e-12)


def test_ablation3_task_loss_alone_moves_f(run):
    """With L_f ≡ 0 (zero weights, α = 0), only III's λ·L_t can move F."""
    for name, should_move in (("ablation3_task_loss_on_fusion_msrsdet_mini.py", True), (METHOD, False)):
        r = run(name)
        r.model.loss.alpha = 0.0
        learner = r.model.bind_optimizers(r.optim)
        (_, data), = [it for it in r.iterations(r.plan.meta_steps + 1) if it[0] == "fusion"]
        batch = r.batch(data.inputs)
        zero = torch.zeros(batch.a.shape[0], 2, *batch.a.shape[-2:])
        f0 = snapshot(r.model.fusion_net)
        stats = learner.fusion_step(batch, loss_params=zero, train_task=False)
        assert stats["loss_fusion"] == 0.0
        assert moved(f0, r.model.fusion_net) is should_move, name
        if should_move:
            assert stats["loss_task_on_f"] > 0


def test_ablation4_f_keeps_its_look_ahead_step_and_g_gets_the_methods_updates(run):
    r4, full = run("ablation4_no_fusion_phase_msrsdet_mini.py"), run(METHOD)
    phases = [p.phase for p in r4.plan.plan(0)]
    assert phases == ["interleaved"] * full.plan.meta_steps  # no fusion phase at all
    assert sum(p.phase == "meta" for p in full.plan.plan(0)) == len(phases)  # G: same count
    (phase, data), = r4.iterations(1)
    model = r4.model
    learner = model.bind_optimizers(r4.optim)
    meta_train = r4.batch(data.meta_train)
    # θ' = θ − η ∇_θ L_f(F_θ(tr); G_φ(tr)) with G's weights *before* its outer step.
    params = [p for p in model.fusion_net.parameters() if p.requires_grad]
    out = model.loss(model.fusion_net(meta_train.a, meta_train.b), meta_train.a, meta_train.b,
                     detach_params=True)
    grads = torch.autograd.grad(out.loss, params, allow_unused=True)
    eta = learner.current_inner_lr()
    expected = [p.detach() - eta * (0 if g is None else g) for p, g in zip(params, grads, strict=True)]
    g0, t0 = snapshot(model.generator), snapshot(model.task_module)
    fusion_state = {k: dict(v) for k, v in learner.fusion_optimizer.state.items()}
    stats = r4.step(data)
    for p, e in zip(params, expected, strict=True):
        torch.testing.assert_close(p.detach(), e, rtol=1e-5, atol=1e-7)
    assert moved(g0, model.generator) and moved(t0, model.task_module)
    assert stats["skipped_meta"] == 0.0 and "loss_task" in stats
    assert {k: dict(v) for k, v in learner.fusion_optimizer.state.items()} == fusion_state  # SGD rule
    with pytest.raises(ValueError, match="fusion_steps=24 would be ignored"):  # the old config's
        EpochPlan(r4.plan.template, 6, 24, "interleaved", seed=0)


def test_ablation5_fuses_with_gs_own_weights(run):
    r = run("ablation5_weighted_sum_msrsdet_mini.py")
    model = r.model
    assert not list(model.fusion_net.parameters()) and "fusion" not in r.optim.keys()
    its = r.iterations(r.plan.meta_steps + 1)
    meta_data = its[0][1]
    batch = r.batch(meta_data.meta_train)
    w = model.loss.generate(batch.a, batch.b)
    torch.testing.assert_close(model.fusion_net(batch.a, batch.b), w[:, :1] * batch.a + w[:, 1:] * batch.b,
                               rtol=0, atol=1e-6)
    g0 = snapshot(model.generator)
    stats = r.step(meta_data)
    assert stats["hypergrad_norm"] > 0 and moved(g0, model.generator)  # the task teaches G directly
    g1, t1 = snapshot(model.generator), snapshot(model.task_module)
    assert its[-1][0] == "fusion"
    r.step(its[-1][1])
    assert not moved(g1, model.generator) and moved(t1, model.task_module)
    assert not any(k.startswith("fusion_net.") for k in model.state_dict())  # G is stored once, as G


def test_ablation5_weight_net_reading_has_its_own_weights(run):
    r = run("ablation5_weighted_sum_weightnet_msrsdet_mini.py")
    fusion = r.model.fusion_net
    assert fusion.weight_net is not r.model.generator and list(fusion.parameters())
    (_, data), = [it for it in r.iterations(r.plan.meta_steps + 1) if it[0] == "fusion"]
    batch = r.batch(data.inputs)
    w = fusion.weight_net(batch.a, batch.b)
    torch.testing.assert_close(fusion(batch.a, batch.b), w[:, :1] * batch.a + w[:, 1:] * batch.b,
                               rtol=0, atol=1e-6)
    f0, g0 = snapshot(fusion), snapshot(r.model.generator)
    r.step(data)
    assert moved(f0, fusion) and not moved(g0, r.model.generator)  # W is trained by L_f


@pytest.mark.parametrize("name, rule", [("ir", lambda a, b: a), ("vis", lambda a, b: b),
                                        ("mean", lambda a, b: (a + b) / 2), ("max", torch.maximum)])
def test_baselines_fuse_by_their_rule_and_train_only_t(run, name, rule):
    r, full = run(f"baseline_{name}_msrsdet_mini.py"), run(METHOD)
    assert len(r.plan) == full.plan.fusion_steps and r.plan.meta_steps == 0  # T: the method's steps
    (phase, data), = r.iterations(1)
    batch = r.batch(data.inputs)
    assert torch.equal(r.model.fusion_net(batch.a, batch.b), rule(batch.a, batch.b))
    t0 = snapshot(r.model.task_module)
    r.step(data)
    assert moved(t0, r.model.task_module)
    assert set(r.optim.keys()) == {"task"}
