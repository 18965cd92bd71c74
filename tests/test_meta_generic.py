"""The meta learner on a model that is not a fusion net: a one-input denoiser.

The same checks as for fusion (``test_meta.py``): the hypergradient equals central
finite differences in float64 with a smooth task loss, the three backends and the
forward mode agree, a meta step changes G only; plus named (keyword) inputs.
"""

from __future__ import annotations

import copy
import importlib.util

import pytest
import torch
from torch import nn

from learnable_fusion_loss.losses import LearnableLoss
from learnable_fusion_loss.meta import MetaBatch, MetaLossLearner
from learnable_fusion_loss.tasks import ModuleTask

needs_higher = pytest.mark.skipif(
    importlib.util.find_spec("higher") is None, reason="higher not installed (CI installs it)"
)
needs_l2l = pytest.mark.skipif(
    importlib.util.find_spec("learn2learn") is None, reason="learn2learn not installed (CI installs it)"
)


class Denoiser(nn.Module):
    """``noisy -> restored``: a residual conv net with BatchNorm (buffers to protect)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 3, 3, padding=1)
        self.norm = nn.BatchNorm2d(3)
        self.conv2 = nn.Conv2d(3, 1, 3, padding=1)

    def forward(self, noisy: torch.Tensor, strength: float = 1.0) -> torch.Tensor:
        return noisy - strength * self.conv2(torch.tanh(self.norm(self.conv1(noisy))))


def weighted_l1_smooth(output: torch.Tensor, inputs: tuple, weights: torch.Tensor) -> dict:
    """A per-pixel weighted (smooth, so twice differentiable) L1 to the clean image."""
    _, clean = inputs
    error = torch.sqrt((output - clean) ** 2 + 1e-3)
    return {"loss": (weights * error).mean()}


def make_learner(backend: str | None = "torch.func", seed: int = 0, **kwargs) -> MetaLossLearner:
    torch.manual_seed(seed)
    model = Denoiser().double()
    generator = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Tanh(), nn.Conv2d(2, 1, 1), nn.Softplus()).double()
    loss = LearnableLoss(generator, weighted_l1_smooth, generator_inputs=(0,))  # G sees the noisy image only
    task_net = nn.Conv2d(1, 2, 3, padding=1).double()
    task = ModuleTask(task_net, nn.functional.mse_loss, torch.optim.Adam(task_net.parameters(), lr=1e-2))
    return MetaLossLearner(model, loss, task, torch.optim.SGD(model.parameters(), lr=0.5),
                           inner_backend=backend, **kwargs)


def make_batch(seed: int, named: bool = False) -> MetaBatch:
    g = torch.Generator().manual_seed(seed)
    clean = torch.rand(2, 1, 8, 8, generator=g, dtype=torch.float64)
    noisy = clean + 0.2 * torch.randn(clean.shape, generator=g, dtype=torch.float64)
    target = torch.randn(2, 2, 8, 8, generator=g, dtype=torch.float64)
    inputs = {"noisy": noisy, "strength": 0.9} if named else (noisy, 0.9)
    return MetaBatch(inputs=inputs, loss_inputs=(noisy, clean), target=target)


def _flat(grads) -> torch.Tensor:
    return torch.cat([g.reshape(-1) for g in grads])


def _central_differences(learner: MetaLossLearner, tr: MetaBatch, te: MetaBatch) -> torch.Tensor:
    eps, parts = 1e-6, []
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
        (None, "forward"),
    ],
)
def test_denoiser_hypergradient_matches_central_finite_differences(backend, hypergradient):
    learner = make_learner(backend, hypergradient=hypergradient)
    tr, te = make_batch(1), make_batch(2)
    analytic = _flat(learner.hypergradient(tr, te).grads)
    assert analytic.abs().max() > 0
    numeric = _central_differences(learner, tr, te)
    relative = (analytic - numeric).norm() / numeric.norm()
    assert relative <= 1e-4, f"relative error {relative:.2e}"


@pytest.mark.parametrize(
    ("backend", "hypergradient"),
    [
        pytest.param("higher", "unrolled", marks=needs_higher),
        pytest.param("learn2learn", "unrolled", marks=needs_l2l),
        (None, "forward"),
    ],
)
def test_denoiser_backends_and_forward_mode_agree(backend, hypergradient):
    tr, te = make_batch(3), make_batch(4)
    reference = _flat(make_learner().hypergradient(tr, te).grads)
    other = _flat(make_learner(backend, hypergradient=hypergradient).hypergradient(tr, te).grads)
    assert reference.abs().max() > 0
    assert (reference - other).abs().max() <= 1e-8


def test_named_inputs_give_the_same_hypergradient_as_positional():
    positional = _flat(make_learner().hypergradient(make_batch(5), make_batch(6)).grads)
    named = _flat(make_learner().hypergradient(make_batch(5, named=True), make_batch(6, named=True)).grads)
    assert positional.abs().max() > 0
    assert (positional - named).abs().max() == 0


def _state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_denoiser_meta_step_changes_only_the_generator():
    learner = make_learner()
    model, task_net = _state(learner.fusion_net), _state(learner.task.net)
    task_optimizer = copy.deepcopy(learner.task.optimizer.state_dict())
    generator = _state(learner.generator)
    stats = learner.meta_step(make_batch(7), make_batch(8))
    assert stats["hypergrad_norm"] > 0 and stats["skipped_meta"] == 0
    for before, module in ((model, learner.fusion_net), (task_net, learner.task.net)):
        after = _state(module)
        assert all(torch.equal(before[k], after[k]) for k in before)
    assert learner.task.optimizer.state_dict()["state"] == task_optimizer["state"]
    after = _state(learner.generator)
    assert any(not torch.equal(generator[k], after[k]) for k in generator)


def test_denoiser_fusion_step_trains_the_model_and_not_the_generator():
    learner = make_learner()
    model, generator = _state(learner.fusion_net), _state(learner.generator)
    stats = learner.fusion_step(make_batch(9))
    assert stats["skipped_fusion"] == 0 and stats["loss_fusion"] > 0
    assert any(not torch.equal(model[k], v) for k, v in _state(learner.fusion_net).items())
    assert all(torch.equal(generator[k], v) for k, v in _state(learner.generator).items())


def test_warm_up_with_fixed_loss_parameters_needs_them_outside_fusion():
    learner = make_learner()
    with pytest.raises(ValueError, match="warmup_params"):
        learner.fusion_warmup_step(make_batch(1))
    learner = make_learner(warmup_params=lambda batch: torch.ones_like(batch.loss_inputs[0]))
    assert learner.fusion_warmup_step(make_batch(1))["skipped_fusion_warmup"] == 0
    with pytest.raises(ValueError, match="two sources"):
        learner.task_warmup_step(make_batch(1), "mean")
    assert "loss_task" in learner.task_warmup_step(make_batch(1), "fused")


def test_bad_batches_are_named():
    noisy = torch.rand(1, 1, 4, 4)
    with pytest.raises(ValueError, match="loss_inputs is required"):
        MetaBatch(inputs={"noisy": noisy})
    with pytest.raises(TypeError, match="inputs must be a tuple or a mapping"):
        MetaBatch(inputs=noisy)
    loss = LearnableLoss(nn.Identity(), weighted_l1_smooth, generator_inputs=(2,))
    with pytest.raises(ValueError, match="generator_inputs=\\(2,\\) but the loss was given 2 inputs"):
        loss(noisy, noisy, noisy)
    with pytest.raises(ValueError, match="generator_inputs"):
        LearnableLoss(nn.Identity(), weighted_l1_smooth, generator_inputs=(-1,))
