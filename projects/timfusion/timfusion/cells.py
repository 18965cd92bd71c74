"""TIMFusion's cells (notes §2.2): ``Cell_Chain2`` and the multi-scale ``Cell_Fusion``.

A genotype gives each cell two op names; the cell chains them (the released
genotypes' edge indices and ``*_concat`` are ignored by the released cells, and so
here). ``CellFusion`` runs the chain at three scales (``C`` at ``H``, ``2C`` at
``H/2``, ``4C`` at ``H/4``) between residual blur-pool down-samplers and residual
up-samplers, and merges the scales with SKFF; its input's sides must be multiples of 4.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .operations import make_op

__all__ = [
    "BlurPool",
    "ResidualDownSample",
    "DownSample",
    "ResidualUpSample",
    "UpSample",
    "SKFF",
    "ReLUConvBN",
    "CellChain2",
    "CellFusion",
]


class BlurPool(nn.Module):
    """Anti-aliased stride-2 down-sampling: depthwise binomial ``[1,2,1]²/16`` filter, reflect pad 1.

    The filter is a fixed buffer (no parameters). Halves even sides exactly.

    >>> import torch
    >>> BlurPool(3)(torch.rand(1, 3, 8, 6)).shape
    torch.Size([1, 3, 4, 3])
    >>> float(BlurPool(1)(torch.ones(1, 1, 4, 4)).min())
    1.0
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        taps = torch.tensor([1.0, 2.0, 1.0])
        kernel = taps[:, None] * taps[None, :]
        self.register_buffer("filt", (kernel / kernel.sum()).expand(channels, 1, 3, 3).clone())
        self.channels = channels

    def forward(self, x: Tensor) -> Tensor:
        x = F.pad(x, (1, 1, 1, 1), mode="reflect")
        return F.conv2d(x, self.filt.to(x.dtype), stride=2, groups=self.channels)


class ResidualDownSample(nn.Module):
    """``C → 2C`` at half size: ``[1×1, PReLU, 3×3, PReLU, blur-pool, 1×1] + [blur-pool, 1×1]``.

    Bias-free convolutions, single-slope PReLUs (MIRNet's residual down-sampler).

    >>> import torch
    >>> ResidualDownSample(4)(torch.rand(1, 4, 8, 8)).shape
    torch.Size([1, 8, 4, 4])
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.top = nn.Sequential(
            nn.Conv2d(channels, channels, 1, bias=False), nn.PReLU(),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.PReLU(),
            BlurPool(channels), nn.Conv2d(channels, 2 * channels, 1, bias=False),
        )
        self.bot = nn.Sequential(BlurPool(channels), nn.Conv2d(channels, 2 * channels, 1, bias=False))

    def forward(self, x: Tensor) -> Tensor:
        return self.top(x) + self.bot(x)


class DownSample(nn.Sequential):
    """``log2(scale)`` residual down-samplers: ``C`` channels at ``H`` → ``scale·C`` at ``H/scale``.

    >>> import torch
    >>> DownSample(4, 4)(torch.rand(1, 4, 8, 8)).shape
    torch.Size([1, 16, 2, 2])
    """

    def __init__(self, channels: int, scale: int) -> None:
        steps = int(scale).bit_length() - 1
        if scale < 2 or 2 ** steps != scale:
            raise ValueError(f"scale must be a power of 2 >= 2, got {scale}")
        super().__init__(*(ResidualDownSample(channels * 2 ** i) for i in range(steps)))


class ResidualUpSample(nn.Module):
    """``C → C/2`` at twice the size: ``[1×1, PReLU, ConvT 3×3 s2, PReLU, 1×1] + [bilinear ×2, 1×1]``.

    >>> import torch
    >>> ResidualUpSample(8)(torch.rand(1, 8, 3, 5)).shape
    torch.Size([1, 4, 6, 10])
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.top = nn.Sequential(
            nn.Conv2d(channels, channels, 1, bias=False), nn.PReLU(),
            nn.ConvTranspose2d(channels, channels, 3, stride=2, padding=1, output_padding=1, bias=False),
            nn.PReLU(), nn.Conv2d(channels, channels // 2, 1, bias=False),
        )
        self.bot = nn.Conv2d(channels, channels // 2, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        up = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        return self.top(x) + self.bot(up)


class UpSample(nn.Sequential):
    """``log2(scale)`` residual up-samplers: ``C`` channels at ``H`` → ``C/scale`` at ``scale·H``.

    >>> import torch
    >>> UpSample(16, 4)(torch.rand(1, 16, 2, 3)).shape
    torch.Size([1, 4, 8, 12])
    """

    def __init__(self, channels: int, scale: int) -> None:
        steps = int(scale).bit_length() - 1
        if scale < 2 or 2 ** steps != scale:
            raise ValueError(f"scale must be a power of 2 >= 2, got {scale}")
        super().__init__(*(ResidualUpSample(channels // 2 ** i) for i in range(steps)))


class SKFF(nn.Module):
    """Selective-kernel feature fusion (MIRNet) of ``height`` same-shape branches.

    ``U = Σ branches``; ``z = PReLU(1×1(GAP(U)))`` with ``d = max(C // reduction, 4)``
    channels; one ``1×1`` (d→C) per branch; softmax over the branches; ``Σ aᵢ·branchᵢ``.

    >>> import torch
    >>> x = [torch.rand(2, 8, 4, 4) for _ in range(3)]
    >>> SKFF(8)(x).shape
    torch.Size([2, 8, 4, 4])
    """

    def __init__(self, channels: int, height: int = 3, reduction: int = 8) -> None:
        super().__init__()
        d = max(int(channels / reduction), 4)
        self.height = height
        self.conv_du = nn.Sequential(nn.Conv2d(channels, d, 1, bias=False), nn.PReLU())
        self.fcs = nn.ModuleList(nn.Conv2d(d, channels, 1, bias=False) for _ in range(height))

    def forward(self, feats: Sequence[Tensor]) -> Tensor:
        if len(feats) != self.height:
            raise ValueError(f"SKFF expects {self.height} branches, got {len(feats)}")
        stacked = torch.stack(list(feats), dim=1)  # [B, n, C, H, W]
        z = self.conv_du(stacked.sum(dim=1).mean(dim=(2, 3), keepdim=True))
        weights = torch.softmax(torch.stack([fc(z) for fc in self.fcs], dim=1), dim=1)
        return (stacked * weights).sum(dim=1)


class ReLUConvBN(nn.Sequential):
    """A cell's preprocessing: ReLU → bias-free 1×1 → BN (``C → C``).

    >>> import torch
    >>> ReLUConvBN(4)(torch.rand(1, 4, 3, 3)).shape
    torch.Size([1, 4, 3, 3])
    """

    def __init__(self, channels: int) -> None:
        super().__init__(nn.ReLU(inplace=False), nn.Conv2d(channels, channels, 1, bias=False),
                         nn.BatchNorm2d(channels))


def _chain(ops: Sequence[str], channels: int) -> nn.Sequential:
    if len(ops) != 2:
        raise ValueError(f"a cell chains exactly two ops, got {list(ops)}")
    return nn.Sequential(*(make_op(name, channels) for name in ops))


class CellChain2(nn.Module):
    """``Cell_Chain2``: ReLU-1×1-BN, then ``op₁ → op₂``; no cell residual.

    >>> import torch
    >>> cell = CellChain2(["Denseblocks_3_1", "DilConv_3_2"], 8)
    >>> cell(torch.rand(1, 8, 5, 7)).shape
    torch.Size([1, 8, 5, 7])
    """

    def __init__(self, ops: Sequence[str], channels: int) -> None:
        super().__init__()
        self.preprocess = ReLUConvBN(channels)
        self.ops = _chain(ops, channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.ops(self.preprocess(x))


class CellFusion(nn.Module):
    """``Cell_Fusion``: the chain ``op₁ → op₂`` at three scales, merged by SKFF, plus a residual.

    ``p = ReLU-1×1-BN(x)``; scales ``s0 = p``, ``s1 = Down×2(p)`` (2C, H/2),
    ``s2 = Down×4(p)`` (4C, H/4); each runs its own copy of the chain; ``Up×2(s1)``
    and ``Up×4(s2)`` come back to ``C`` channels; output ``p + SKFF(s0, s1, s2)``.
    ``H`` and ``W`` must be multiples of 4 (see :mod:`.padding`).

    >>> import torch
    >>> cell = CellFusion(["Residualblocks_3_1", "DilConv_3_2"], 8)
    >>> cell(torch.rand(1, 8, 8, 12)).shape
    torch.Size([1, 8, 8, 12])
    """

    def __init__(self, ops: Sequence[str], channels: int) -> None:
        super().__init__()
        self.preprocess = ReLUConvBN(channels)
        self.down2 = DownSample(channels, 2)
        self.down4 = DownSample(channels, 4)
        self.chains = nn.ModuleList(_chain(ops, channels * 2 ** i) for i in range(3))
        self.up2 = UpSample(2 * channels, 2)
        self.up4 = UpSample(4 * channels, 4)
        self.skff = SKFF(channels, height=3)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        if h % 4 or w % 4:
            raise ValueError(f"CellFusion needs H and W multiples of 4, got {h}×{w} "
                             "(pad with projects.timfusion.timfusion.padding.pad_to_multiple)")
        p = self.preprocess(x)
        s0 = self.chains[0](p)
        s1 = self.up2(self.chains[1](self.down2(p)))
        s2 = self.up4(self.chains[2](self.down4(p)))
        return p + self.skff([s0, s1, s2])
