"""The meta learner: exact hypergradients, backend agreement, isolation, direction."""

from __future__ import annotations

import copy
import importlib.util

import pytest
import torch
from torch import nn

from _tiny import TinyFusion, make_batch, make_learner
from learnable_fusion_loss.generators import ConstantWeights, ConvWeightGenerator
from learnable_fusion_loss.losses import LearnableFusionLoss
from learnable_fusion_loss.meta import FreshAdamError, FusionBatch, InnerStep, MetaLossLearner

needs_higher = pytest.mark.skipif(
    importlib.util.find_spec("higher") is None, reason="higher not installed (CI installs it)"
)
needs_l2l = pytest.mark.skipif(
    importlib.util.find_spec("learn2learn") is None, reason="learn2learn not installed (CI installs it)"
)
def _flat(grads) -> torch.Tensor:
    return torch.cat([g.reshape(-1) for g in grads])


def _central_differences(learner: MetaLossLearner, tr: FusionBatch, te: FusionBatch) -> torch.Tensor:
    eps = 1e-6
    parts = []
    for param in learner.generator_params:
        flat = param.data.view(-1)
        numeric = torch.zeros_like(flat)
        for i in range(flat.numel()):
            original = flat[i].item()
            flat[i] = original + eps
            plus = learner.meta_objective(tr, te)
            flat[i] = original - eps
            minus = learner.meta_objective(tr, te)
            flat[i] = original
            numeric[i] = (plus - minus) / (2 * eps)
        parts.append(numeric)
    return torch.cat(parts)


@pytest.mark.parametrize(
    ("backend", "hypergradient"),
    [
        ("torch.func", "unrolled"),
        pytest.param("higher", "unrolled", marks=needs_higher),
        pytest.param("learn2learn", "unrolled", marks=needs_l2l),
        ("torch.func", "forward"),
    ],
)
def test_hypergradient_matches_central_finite_differences(backend, hypergradient):
    learner = make_learner(backend, hypergradient=hypergradient)
    tr, te = make_batch(1), make_batch(2)
    analytic = _flat(learner.hypergradient(tr, te).grads)
    assert analytic.abs().max() > 0
    numeric = _central_differences(learner, tr, te)
    relative = (analytic - numeric).norm() / numeric.norm()
    assert relative <= 1e-4, f"relative error {relative:.2e}"


@pytest.mark.parametrize("inner_optimizer", ["sgd", "adam"])
def test_forward_mode_equals_unrolled_hypergradient(inner_optimizer):
    tr, te = make_batch(3), make_batch(4)
    results = []
    for mode in ("unrolled", "forward"):
        learner = make_learner(inner_optimizer=inner_optimizer, hypergradient=mode)
        if inner_optimizer == "adam":
            learner.fusion_optimizer = torch.optim.Adam(
                learner.fusion_net.parameters(), lr=1e-2, weight_decay=1e-3
            )
            learner.fusion_step(make_batch(7))  # give Adam a state
        hyper = learner.hypergradient(tr, te)
        results.append((_flat(hyper.grads), hyper.loss_task, hyper.inner.loss.detach()))
    (unrolled, task_u, inner_u), (forward, task_f, inner_f) = results
    assert unrolled.abs().max() > 0
    assert (unrolled - forward).abs().max() <= 1e-10 * unrolled.abs().max()
    torch.testing.assert_close(task_u, task_f, rtol=1e-12, atol=0)
    torch.testing.assert_close(inner_u, inner_f, rtol=1e-12, atol=0)


@pytest.mark.parametrize("backend", ["higher", "learn2learn"])
def test_backends_give_the_same_hypergradient(backend):
    pytest.importorskip(backend)
    tr, te = make_batch(3), make_batch(4)
    reference = _flat(make_learner("torch.func").hypergradient(tr, te).grads)
    other = _flat(make_learner(backend).hypergradient(tr, te).grads)
    assert (reference - other).abs().max() <= 1e-8


@needs_higher
def test_adam_inner_step_agrees_between_torch_func_and_higher():
    tr, te = make_batch(5), make_batch(6)
    grads = []
    for backend in ("torch.func", "higher"):
        learner = make_learner(backend, inner_optimizer="adam")
        learner.fusion_optimizer = torch.optim.Adam(learner.fusion_net.parameters(), lr=1e-2)
        learner.fusion_step(make_batch(7))  # give Adam a state
        grads.append(_flat(learner.hypergradient(tr, te).grads))
    assert grads[0].abs().max() > 0
    assert (grads[0] - grads[1]).abs().max() <= 1e-8


def test_fresh_adam_is_refused_or_warned():
    learner = make_learner(inner_optimizer="adam")
    learner.fusion_optimizer = torch.optim.Adam(learner.fusion_net.parameters(), lr=1e-3)
    with pytest.raises(FreshAdamError, match="allow_fresh_adam"):
        learner.hypergradient(make_batch(1), make_batch(2))
    learner.inner.allow_fresh_adam = True
    with pytest.warns(UserWarning, match="100-3000x smaller"):
        learner.hypergradient(make_batch(1), make_batch(2))


def _state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _assert_identical(before: dict, after: dict) -> None:
    assert before.keys() == after.keys()
    for key in before:
        assert torch.equal(before[key], after[key]), key


@pytest.mark.parametrize("outer_step", ["adam", "max_norm"])
def test_meta_step_changes_only_the_generator(outer_step):
    learner = make_learner(outer_step=outer_step, outer_lr=1e-2)
    task = learner.task
    task.train_step(learner.fusion_net(*make_batch(9).task_sources).detach(), make_batch(9).target)
    f_before, t_before = _state(learner.fusion_net), _state(task.net)
    f_opt_before = copy.deepcopy(learner.fusion_optimizer.state_dict())
    t_opt_before = copy.deepcopy(task.optimizer.state_dict())
    g_before = _state(learner.generator)

    stats = learner.meta_step(make_batch(1), make_batch(2))

    assert stats["skipped_meta"] == 0.0 and stats["hypergrad_norm"] > 0
    _assert_identical(f_before, _state(learner.fusion_net))
    _assert_identical(t_before, _state(task.net))
    assert all(p.grad is None for p in learner.fusion_net.parameters())
    assert all(p.grad is None for p in task.net.parameters())
    assert str(f_opt_before) == str(learner.fusion_optimizer.state_dict())
    t_opt_after = task.optimizer.state_dict()
    assert t_opt_before["state"].keys() == t_opt_after["state"].keys()
    for key, state in t_opt_before["state"].items():
        for name, value in state.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(t_opt_after["state"][key][name]))
    changed = [not torch.equal(g_before[k], v) for k, v in _state(learner.generator).items()]
    assert any(changed)


def test_fusion_step_never_changes_the_generator():
    learner = make_learner(fusion_task_weight=0.5)
    g_before = _state(learner.generator)
    f_before = _state(learner.fusion_net)
    t_before = _state(learner.task.net)
    stats = learner.fusion_step(make_batch(1))
    _assert_identical(g_before, _state(learner.generator))
    assert all(p.grad is None for p in learner.generator.parameters())
    assert any(not torch.equal(f_before[k], v) for k, v in _state(learner.fusion_net).items())
    assert any(not torch.equal(t_before[k], v) for k, v in _state(learner.task.net).items())
    assert {"loss_fusion", "loss_int", "loss_grad", "loss_task", "loss_task_on_f"} <= stats.keys()


def test_non_finite_hypergradient_is_skipped_and_reported():
    learner = make_learner()
    g_before = _state(learner.generator)
    batch = make_batch(2)
    bad_target = batch.target.clone()
    bad_target[0, 0, 0, 0] = float("inf")
    stats = learner.meta_step(make_batch(1), FusionBatch(batch.a, batch.b, target=bad_target))
    assert stats["skipped_meta"] == 1.0 and stats["skipped_total"] == 1.0
    _assert_identical(g_before, _state(learner.generator))


def test_meta_steps_move_weights_toward_the_modality_the_task_sees():
    """The task only sees modality A (it wants the fused image to equal A)."""
    torch.manual_seed(0)
    fusion = TinyFusion(hidden=8, batch_norm=False)
    loss = LearnableFusionLoss(ConvWeightGenerator(hidden=8, depth=1), alpha=0.0)
    learner = MetaLossLearner(
        fusion,
        loss,
        task=lambda fused, target: nn.functional.mse_loss(fused, target),
        fusion_optimizer=torch.optim.SGD(fusion.parameters(), lr=1.0),
        outer_lr=3e-2,
    )

    def batch(seed: int) -> FusionBatch:
        g = torch.Generator().manual_seed(seed)
        a = torch.rand(4, 1, 16, 16, generator=g)
        b = torch.rand(4, 1, 16, 16, generator=g)
        return FusionBatch(a=a, b=b, target=a)

    probe = batch(100)
    start = float(loss.generate(probe.a, probe.b)[:, 0].mean().detach())
    for step in range(25):
        learner.meta_step(batch(2 * step), batch(2 * step + 1))
    end = float(loss.generate(probe.a, probe.b)[:, 0].mean().detach())
    assert end > start + 0.1, (start, end)


def test_constant_generator_has_nothing_to_learn():
    torch.manual_seed(0)
    fusion = TinyFusion()
    learner = MetaLossLearner(
        fusion,
        LearnableFusionLoss(ConstantWeights()),
        task=lambda fused, target: fused.mean(),
        fusion_optimizer=torch.optim.SGD(fusion.parameters(), lr=0.1),
    )
    stats = learner.meta_step(make_batch(1, dtype=torch.float32), make_batch(2, dtype=torch.float32))
    assert stats["hypergrad_norm"] == 0.0
    assert stats["weight_0"] == pytest.approx(0.5)


def test_inner_lr_follows_the_fusion_optimizer():
    learner = make_learner()
    assert learner.current_inner_lr() == 0.5
    learner.fusion_optimizer.param_groups[0]["lr"] = 0.25
    assert learner.current_inner_lr() == 0.25
    assert make_learner(inner_lr=0.1).current_inner_lr() == 0.1


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="backend"):
        InnerStep(backend="jax")
    with pytest.raises(ValueError, match="learn2learn backend supports inner_optimizer='sgd'"):
        InnerStep(backend="learn2learn", inner_optimizer="adam")
    with pytest.raises(ValueError, match="outer_step"):
        make_learner(outer_step="sgd")
    with pytest.raises(ValueError, match="hypergradient must be 'unrolled' or 'forward', got 'reverse'"):
        make_learner(hypergradient="reverse")
    with pytest.raises(ValueError, match="shape mismatch between sources: a=.*b="):
        FusionBatch(a=torch.rand(1, 1, 4, 4), b=torch.rand(1, 1, 4, 5))
    with pytest.raises(ValueError, match="task_a and task_b"):
        FusionBatch(a=torch.rand(1, 1, 4, 4), b=torch.rand(1, 1, 4, 4), task_a=torch.rand(1, 1, 4, 4))
    with pytest.raises(ValueError, match="lr must be a finite positive"):
        InnerStep().adapt(TinyFusion(), lambda m: m(torch.rand(1, 1, 4, 4), torch.rand(1, 1, 4, 4)).mean(), lr=0)
