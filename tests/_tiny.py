"""Small, smooth F / G / T for exact hypergradient checks (float64-friendly)."""

from __future__ import annotations

import torch
from torch import nn

from learnable_fusion_loss.generators import ConvWeightGenerator
from learnable_fusion_loss.losses import LearnableFusionLoss
from learnable_fusion_loss.meta import FusionBatch, MetaLossLearner
from learnable_fusion_loss.tasks import ModuleTask


class TinyFusion(nn.Module):
    """conv → BatchNorm → tanh → conv → sigmoid; BN gives F buffers to protect."""

    def __init__(self, hidden: int = 4, batch_norm: bool = True) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(2, hidden, 3, padding=1)
        self.norm = nn.BatchNorm2d(hidden) if batch_norm else nn.Identity()
        self.conv2 = nn.Conv2d(hidden, 1, 3, padding=1)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        x = torch.tanh(self.norm(self.conv1(torch.cat([a, b], dim=1))))
        return torch.sigmoid(self.conv2(x))


class TinyTaskNet(nn.Module):
    def __init__(self, out_channels: int = 2) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, out_channels, 3, padding=1)
        self.norm = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x))


def make_batch(seed: int, size: int = 8, batch: int = 2, dtype=torch.float64) -> FusionBatch:
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(batch, 1, size, size, generator=g, dtype=dtype)
    b = torch.rand(batch, 1, size, size, generator=g, dtype=dtype)
    target = torch.randn(batch, 2, size, size, generator=g, dtype=dtype)
    return FusionBatch(a=a, b=b, target=target)


def make_learner(
    backend: str = "torch.func",
    dtype=torch.float64,
    seed: int = 0,
    inner_lr: float | None = None,
    **kwargs,
) -> MetaLossLearner:
    torch.manual_seed(seed)
    fusion = TinyFusion().to(dtype)
    generator = ConvWeightGenerator(hidden=4, depth=1).to(dtype)
    task_net = TinyTaskNet().to(dtype)
    task = ModuleTask(task_net, nn.functional.mse_loss, torch.optim.Adam(task_net.parameters(), lr=1e-2))
    return MetaLossLearner(
        fusion,
        LearnableFusionLoss(generator),
        task,
        fusion_optimizer=torch.optim.SGD(fusion.parameters(), lr=0.5),
        # the forward-mode hypergradient has no backend (setting one is refused)
        inner_backend=None if kwargs.get("hypergradient") == "forward" else backend,
        inner_lr=inner_lr,
        **kwargs,
    )
