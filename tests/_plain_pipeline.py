"""A user's plain MMEngine pipeline that knows nothing of this library: a denoiser
with its own L1 loss, a dataset of noisy patches (a fixture it builds from seeds),
and a small task net that predicts the clean image's gradients.

Registered in MMEngine's root registries, as a user's own code would be.
"""

from __future__ import annotations

import torch
from mmengine.model import BaseModel
from mmengine.registry import DATASETS, MODELS
from torch import nn
from torch.utils.data import Dataset


@MODELS.register_module()
class PlainDenoiser(BaseModel):
    """``noisy → noisy − residual``; ``loss`` is its own L1 to the clean image."""

    def __init__(self, channels: int = 4) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, channels, 3, padding=1), nn.BatchNorm2d(channels), nn.Tanh(),
                                  nn.Conv2d(channels, 1, 3, padding=1))
        self.criterion = nn.L1Loss()

    def forward(self, inputs: torch.Tensor, data_samples: dict | None = None, mode: str = "tensor"):
        restored = inputs - self.body(inputs)
        if mode == "loss":
            return {"loss_rec": self.criterion(restored, data_samples["clean"])}
        if mode == "predict":
            return [{"restored": r} for r in restored]
        return restored


@MODELS.register_module()
class GradientNet(nn.Module):
    """The downstream task's net: the restored image → 2 gradient channels."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.conv(image)


@DATASETS.register_module()
class NoisyPatches(Dataset):
    """Smooth random patches (seeded per index) with Gaussian noise, and their gradients."""

    def __init__(self, length: int = 8, size: int = 16, sigma: float = 0.1, seed: int = 0) -> None:
        self.length, self.size, self.sigma, self.seed = length, size, sigma, seed

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        g = torch.Generator().manual_seed(self.seed * 100_003 + index)
        coarse = torch.rand(1, 1, self.size // 4, self.size // 4, generator=g)
        clean = nn.functional.interpolate(coarse, size=(self.size, self.size), mode="bilinear",
                                          align_corners=False)[0]
        noisy = clean + self.sigma * torch.randn(clean.shape, generator=g)
        gradients = torch.cat([clean.diff(dim=-1, append=clean[..., -1:]), clean.diff(dim=-2, append=clean[..., -1:, :])])
        return {"inputs": noisy, "data_samples": {"clean": clean, "gradients": gradients}}
