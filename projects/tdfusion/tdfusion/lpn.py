"""TDFusion's loss-generation network G (the public ``LPN``), fast and channels-last."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from learnable_fusion_loss.nn import (
    RestormerBlock,
    conv3x3,
    merge_block_pair,
    nchw_view,
    restormer_block_nhwc,
)
from learnable_fusion_loss.registry import MODELS

from .refusion import check_source_pair, dual_stem, restormer_config

__all__ = ["TDFusionLPN"]


@MODELS.register_module()
class TDFusionLPN(nn.Module):
    """TDFusion's loss-parameter network: two sources → per-pixel weights ``[B, 2, H, W]``.

    Architecture (defaults ``dim=16, num_blocks=2, heads=8, expansion 2``; 44,529
    parameters): 3×3 stems ``patch_embed1/2`` (1→dim); per source ``num_blocks``
    Restormer blocks (``encoder1``, ``encoder2``); concatenation; ``num_blocks``
    Restormer blocks at 2·dim (``encoder3``); 3×3 ``out1`` (2·dim→dim); PReLU with one
    shared slope (``out2``); 3×3 ``out3`` (dim→2); softmax over the channels.
    Channel 0 is the weight of source ``a``, channel 1 of ``b``; they sum to one.
    Any ``H × W`` works (stride-1, same-padded convolutions only).

    Same function as the public ``LPN()`` (``nets/ReFusion.py``), which takes
    ``cat([a, b], 1)``. Public keys map to ours by dropping the ``.conv.weight``
    aliases, ``normX.body.* → normX.*``, temperatures ``[heads, 1, 1] → [heads]``;
    ``out2.weight`` (``[1]``) is unchanged (see
    :func:`projects.tdfusion.tdfusion.convert.convert_official_state_dict` with
    ``kind="lpn"``). The two encoder branches run as one block-diagonal block on
    channels-last activations (see :mod:`learnable_fusion_loss.nn.restormer`).
    Twice differentiable, float32/float64.

    Args:
        dim: feature width of each encoder branch.
        num_blocks: Restormer blocks per stage.
        heads: attention heads, an int or the public ``[h, h, h]`` list (as in the
            public code, only the first entry is used).
        ffn_expansion_factor: hidden width of the gated feed-forward, ×dim.
        bias: biases in the convolutions (public default: none).

    >>> import torch
    >>> weights = TDFusionLPN(dim=8, num_blocks=1, heads=2)(torch.rand(1, 1, 9, 11), torch.rand(1, 1, 9, 11))
    >>> weights.shape, bool(torch.allclose(weights.sum(dim=1), torch.ones(1, 9, 11)))
    (torch.Size([1, 2, 9, 11]), True)
    >>> sum(p.numel() for p in TDFusionLPN(heads=[8, 8, 8]).parameters())
    44529
    """

    def __init__(
        self,
        dim: int = 16,
        num_blocks: int = 2,
        heads: int | Sequence[int] = 8,
        ffn_expansion_factor: float = 2.0,
        bias: bool = False,
    ) -> None:
        super().__init__()
        head_count = int(heads) if isinstance(heads, int) else int(list(heads)[0])
        self.config = restormer_config(
            dim, num_blocks, head_count, ffn_expansion_factor, bias, shown_heads=heads)
        self.patch_embed1 = nn.Conv2d(1, dim, 3, padding=1, bias=bias)
        self.patch_embed2 = nn.Conv2d(1, dim, 3, padding=1, bias=bias)
        self.encoder1 = nn.ModuleList(
            RestormerBlock(dim, head_count, ffn_expansion_factor, bias) for _ in range(num_blocks)
        )
        self.encoder2 = nn.ModuleList(
            RestormerBlock(dim, head_count, ffn_expansion_factor, bias) for _ in range(num_blocks)
        )
        self.encoder3 = nn.ModuleList(
            RestormerBlock(dim * 2, head_count, ffn_expansion_factor, bias)
            for _ in range(num_blocks)
        )
        self.out1 = nn.Conv2d(dim * 2, dim, 3, padding=1, bias=bias)
        self.out2 = nn.PReLU(num_parameters=1, init=0.25)
        self.out3 = nn.Conv2d(dim, 2, 3, padding=1, bias=bias)

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        """Weights ``[B, 2, H, W]`` (softmax over dim 1) for sources ``a, b`` ``[B, 1, H, W]``."""
        check_source_pair(a, b)
        x = dual_stem(a, b, self.patch_embed1, self.patch_embed2)
        for first, second in zip(self.encoder1, self.encoder2, strict=True):
            x = restormer_block_nhwc(x, merge_block_pair(first.fused(), second.fused()))
        for block in self.encoder3:
            x = restormer_block_nhwc(x, block.fused())
        y = conv3x3(nchw_view(x), self.out1.weight, self.out1.bias)
        y = F.prelu(y, self.out2.weight)
        y = conv3x3(y, self.out3.weight, self.out3.bias)
        return torch.softmax(y, dim=1).contiguous()
