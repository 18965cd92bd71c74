"""The Restormer block as a function (:func:`restormer_block_nhwc`) and as modules.

:func:`restormer_block_nhwc` runs a block described by
:class:`~.weights.BlockWeights` through one of its three implementations, chosen
by which autodiff is active: :mod:`.graph` when reverse-mode autograd records,
:mod:`.jvp` when only forward-mode tangents come in, :mod:`.streamed` otherwise.

The modules (:class:`RestormerBlock` = :class:`ChannelLayerNorm` +
:class:`ChannelAttention` + :class:`GatedFeedForward`) hold the parameters and
build the fused weights on every call (``fused()``). Their parameter layout mirrors
the public Restormer code (``qkv``, ``qkv_dwconv``, ``project_out``,
``temperature`` ...) so that converting a public checkpoint is a renaming (a
network's converter derives the mapping from the module itself).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..ops import conv1x1_matrix, has_tangent, records_graph
from .graph import LAYER_NORM_EPS, restormer_block_graph
from .jvp import restormer_block_banded_jvp
from .streamed import BAND_ROWS, restormer_block_banded
from .weights import AttentionWeights, BlockWeights, FeedForwardWeights, block_tensors

__all__ = [
    "ChannelAttention",
    "ChannelLayerNorm",
    "GatedFeedForward",
    "RestormerBlock",
    "restormer_block_nhwc",
]


def restormer_block_nhwc(x: Tensor, w: BlockWeights, band_rows: int | None = BAND_ROWS) -> Tensor:
    """One Restormer block (``x + attn(LN x)``, then ``x + ffn(LN x)``) on ``[B, H, W, D]``.

    Without reverse-mode autograd (``torch.no_grad`` / ``inference_mode``, or nothing
    requiring grad) it streams over bands of ``band_rows`` rows (``None``: never), also
    when forward-mode AD carries tangents (then primal and tangent stream together).

    >>> from learnable_fusion_loss.nn import RestormerBlock, restormer_block_nhwc
    >>> weights, x = RestormerBlock(4, 2).fused(), torch.rand(2, 7, 5, 4)
    >>> with torch.no_grad():
    ...     banded = restormer_block_nhwc(x, weights, band_rows=3)
    ...     whole = restormer_block_nhwc(x, weights, band_rows=None)
    >>> banded.shape, torch.allclose(banded, whole, atol=1e-5)
    (torch.Size([2, 7, 5, 4]), True)
    """
    x = x.contiguous()
    tensors = block_tensors(x, w)
    if band_rows is not None and not records_graph(tensors):
        if has_tangent(tensors):  # primal and tangent stream together
            return restormer_block_banded_jvp(x, w, band_rows)
        return restormer_block_banded(x, w, band_rows)
    return restormer_block_graph(x, w)


# ----------------------------------------------------------------------------- modules
class ChannelLayerNorm(nn.Module):
    """Layer norm over the channels of each pixel (public ``LayerNorm`` / ``WithBias_LayerNorm``).

    Holds ``weight`` (ones) and ``bias`` (zeros), ``[C]``; public keys are
    ``normX.body.weight`` / ``normX.body.bias``, ours ``normX.weight`` / ``normX.bias``.

    >>> from learnable_fusion_loss.nn import ChannelLayerNorm
    >>> y = ChannelLayerNorm(4)(torch.rand(1, 2, 3, 4))
    >>> y.shape, bool(y.mean(-1).abs().max() < 1e-6)
    (torch.Size([1, 2, 3, 4]), True)
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: Tensor) -> Tensor:
        """Normalise a ``[B, H, W, C]`` tensor."""
        return F.layer_norm(x, (x.shape[-1],), self.weight, self.bias, eps=LAYER_NORM_EPS)


def _fold_norm(conv: nn.Conv2d, norm: ChannelLayerNorm | None) -> tuple[Tensor, Tensor | None]:
    """``conv``'s 1×1 weight and bias with ``norm``'s affine folded in:
    ``W·(γ⊙x̂ + β) + b = (W·diag γ)·x̂ + (W·β + b)``."""
    weight, bias = conv1x1_matrix(conv), conv.bias
    if norm is not None:
        folded_bias = weight @ norm.bias
        bias = folded_bias if bias is None else bias + folded_bias
        weight = weight * norm.weight
    return weight, bias


class ChannelAttention(nn.Module):
    """Multi-Dconv-head transposed attention (public ``Attention``).

    Parameters (public names): ``temperature`` (ours ``[heads]``, public
    ``[heads, 1, 1]``), ``qkv`` (1×1, dim→3·dim), ``qkv_dwconv`` (depthwise 3×3),
    ``project_out`` (1×1). Runs through :func:`~.graph.attention_residual`.

    >>> from learnable_fusion_loss.nn import ChannelAttention
    >>> fused = ChannelAttention(8, heads=2).fused(None)
    >>> tuple(fused.qkv_weight.shape), tuple(fused.temperature.shape), fused.heads
    ((24, 8), (8,), 2)
    """

    def __init__(self, dim: int, heads: int, bias: bool = False) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim ({dim}) must be divisible by heads ({heads})")
        self.heads = heads
        self.temperature = nn.Parameter(torch.ones(heads))
        self.qkv = nn.Conv2d(dim, dim * 3, kernel_size=1, bias=bias)
        self.qkv_dwconv = nn.Conv2d(dim * 3, dim * 3, 3, padding=1, groups=dim * 3, bias=bias)
        self.project_out = nn.Conv2d(dim, dim, kernel_size=1, bias=bias)

    def fused(self, norm: ChannelLayerNorm | None) -> AttentionWeights:
        """The fused weights, with ``norm``'s affine folded into ``qkv``."""
        weight, bias = _fold_norm(self.qkv, norm)
        rows = self.qkv.weight.shape[1] // self.heads
        return AttentionWeights(
            qkv_weight=weight,
            qkv_bias=bias,
            dw_weight=self.qkv_dwconv.weight,
            dw_bias=self.qkv_dwconv.bias,
            temperature=self.temperature.repeat_interleave(rows),
            heads=self.heads,
            proj_weight=conv1x1_matrix(self.project_out),
            proj_bias=self.project_out.bias,
        )


class GatedFeedForward(nn.Module):
    """Gated-Dconv feed-forward network (public ``FeedForward``).

    ``project_in`` (1×1, dim→2h), ``dwconv`` (depthwise 3×3), ``project_out``
    (1×1, h→dim) with ``h = int(dim · expansion)``.

    >>> from learnable_fusion_loss.nn import GatedFeedForward
    >>> fused = GatedFeedForward(8, expansion=1.5).fused(None)
    >>> tuple(fused.in_weight.shape), tuple(fused.out_weight.shape)
    ((24, 8), (8, 12))
    """

    def __init__(self, dim: int, expansion: float = 2.0, bias: bool = False) -> None:
        super().__init__()
        hidden = int(dim * expansion)
        self.project_in = nn.Conv2d(dim, hidden * 2, kernel_size=1, bias=bias)
        self.dwconv = nn.Conv2d(hidden * 2, hidden * 2, 3, padding=1, groups=hidden * 2, bias=bias)
        self.project_out = nn.Conv2d(hidden, dim, kernel_size=1, bias=bias)

    def fused(self, norm: ChannelLayerNorm | None) -> FeedForwardWeights:
        """The fused weights, with ``norm``'s affine folded into ``project_in``."""
        weight, bias = _fold_norm(self.project_in, norm)
        return FeedForwardWeights(
            in_weight=weight,
            in_bias=bias,
            dw_weight=self.dwconv.weight,
            dw_bias=self.dwconv.bias,
            out_weight=conv1x1_matrix(self.project_out),
            out_bias=self.project_out.bias,
        )


class RestormerBlock(nn.Module):
    """Restormer transformer block (public ``TransformerBlock``): ``norm1, attn, norm2, ffn``.

    ``x ← x + attn(norm1(x))``; ``x ← x + ffn(norm2(x))``. Call it on a
    channels-last ``[B, H, W, C]`` tensor, or use :meth:`fused` with
    :func:`restormer_block_nhwc` / :func:`~.weights.merge_block_pair`.

    >>> from learnable_fusion_loss.nn import RestormerBlock
    >>> block = RestormerBlock(8, heads=2)
    >>> block(torch.rand(1, 5, 6, 8)).shape
    torch.Size([1, 5, 6, 8])
    >>> sum(p.numel() for p in block.parameters())
    1178
    """

    def __init__(self, dim: int, heads: int, expansion: float = 2.0, bias: bool = False) -> None:
        super().__init__()
        self.norm1 = ChannelLayerNorm(dim)
        self.attn = ChannelAttention(dim, heads, bias)
        self.norm2 = ChannelLayerNorm(dim)
        self.ffn = GatedFeedForward(dim, expansion, bias)

    def fused(self) -> BlockWeights:
        """Fused weights (layer-norm affines folded into the following 1×1 convolutions)."""
        return BlockWeights(
            attn=self.attn.fused(self.norm1), ffn=self.ffn.fused(self.norm2), norm_groups=1
        )

    def forward(self, x: Tensor) -> Tensor:
        """Apply the block to ``[B, H, W, C]``."""
        return restormer_block_nhwc(x.contiguous(), self.fused())
