"""Light loss generators: a fixed-weight one and a small convolutional one."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .._checks import check_image, check_same_shape
from ..registry import MODELS


def _check_sources(sources: tuple[Tensor, ...], num_sources: int) -> None:
    if len(sources) != num_sources:
        raise ValueError(f"expected {num_sources} sources, got {len(sources)}")
    named = {f"sources[{i}]": check_image(f"sources[{i}]", s) for i, s in enumerate(sources)}
    check_same_shape(**named)


@MODELS.register_module()
class ConstantWeights(nn.Module):
    """Fixed per-source weights, the same at every pixel (no parameters).

    The default ``½–½`` is the paper's ablation I (a hand-set fusion loss).

    Args:
        weights: one weight per source; normalised to sum to one.
    """

    def __init__(self, weights: tuple[float, ...] = (0.5, 0.5)) -> None:
        super().__init__()
        values = torch.as_tensor(weights, dtype=torch.float64)
        if values.ndim != 1 or len(values) < 2 or bool((values < 0).any()) or values.sum() <= 0:
            raise ValueError(f"weights must be >= 2 non-negative numbers, got {weights}")
        self.register_buffer("weights", values / values.sum(), persistent=False)

    def forward(self, *sources: Tensor) -> Tensor:
        _check_sources(sources, len(self.weights))
        a = sources[0]
        w = self.weights.to(a.dtype).view(1, -1, 1, 1)
        return w.expand(a.shape[0], -1, a.shape[2], a.shape[3])


@MODELS.register_module()
class ConvWeightGenerator(nn.Module):
    """A small fully convolutional G: sources → per-pixel softmax weights.

    ``concat(sources) → [conv3×3 → GELU] × depth → conv3×3 → softmax`` over the
    source axis. About 5k parameters at the defaults: a fast stand-in for a
    Restormer-based generator.

    Args:
        num_sources: K, the number of sources (and output channels).
        hidden: width of the hidden layers.
        depth: number of hidden conv layers.
        temperature: softmax temperature (>0).
    """

    def __init__(
        self, num_sources: int = 2, hidden: int = 16, depth: int = 2, temperature: float = 1.0
    ) -> None:
        super().__init__()
        if num_sources < 2 or hidden < 1 or depth < 1 or temperature <= 0:
            raise ValueError(
                f"need num_sources >= 2, hidden >= 1, depth >= 1, temperature > 0; got "
                f"{num_sources=}, {hidden=}, {depth=}, {temperature=}"
            )
        layers: list[nn.Module] = []
        channels = num_sources
        for _ in range(depth):
            layers += [nn.Conv2d(channels, hidden, 3, padding=1, padding_mode="replicate"), nn.GELU()]
            channels = hidden
        layers.append(nn.Conv2d(channels, num_sources, 3, padding=1, padding_mode="replicate"))
        self.body = nn.Sequential(*layers)
        self.num_sources = num_sources
        self.temperature = temperature

    def forward(self, *sources: Tensor) -> Tensor:
        _check_sources(sources, self.num_sources)
        logits = self.body(torch.cat(sources, dim=1))
        return torch.softmax(logits / self.temperature, dim=1)
