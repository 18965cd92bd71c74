"""ReFusion: the Restormer fusion network F used by TDFusion (fast, channels-last)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from learnable_fusion_loss._checks import check_image, check_same_shape
from learnable_fusion_loss.nn import (
    AttentionWeights,
    BlockWeights,
    FeedForwardWeights,
    RestormerBlock,
    conv3x3,
    merge_block_pair,
    nchw_view,
    nhwc,
    restormer_block_nhwc,
)
from learnable_fusion_loss.nn.ops import conv1x1_matrix
from learnable_fusion_loss.registry import MODELS

__all__ = ["AttentionFusionModule", "ReFusionNet", "check_source_pair", "dual_stem", "restormer_config"]


def restormer_config(
    dim: int, num_blocks: int, heads: int, ffn_expansion_factor: float, bias: bool, shown_heads: object = None
) -> dict:
    """The checked size arguments of a Restormer-block network (F and G share them).

    ``shown_heads`` is what the caller was given for ``heads`` (for the error message).

    >>> restormer_config(16, 2, 8, 2.0, False)["heads"]
    8
    >>> restormer_config(16, 2, 5, 2.0, False)
    Traceback (most recent call last):
        ...
    ValueError: need dim >= 1, num_blocks >= 0, heads dividing dim; got dim=16, num_blocks=2, heads=5
    """
    if dim < 1 or num_blocks < 0 or heads < 1 or dim % heads:
        heads_given = heads if shown_heads is None else shown_heads
        raise ValueError(
            "need dim >= 1, num_blocks >= 0, heads dividing dim; "
            f"got {dim=}, {num_blocks=}, heads={heads_given!r}"
        )
    return dict(dim=dim, num_blocks=num_blocks, heads=heads,
                ffn_expansion_factor=ffn_expansion_factor, bias=bias)


def check_source_pair(a: Tensor, b: Tensor) -> None:
    """Both sources must be ``[B, 1, H, W]`` floating tensors of one shape."""
    check_image("a", a)
    check_image("b", b)
    check_same_shape(a=a, b=b)


def dual_stem(a: Tensor, b: Tensor, first: nn.Conv2d, second: nn.Conv2d) -> Tensor:
    """``[first(a) | second(b)]`` as one grouped 3×3 convolution, returned ``[B, H, W, 2C]``."""
    pair = torch.cat([a, b], dim=1).contiguous(memory_format=torch.channels_last)
    weight = torch.cat([first.weight, second.weight])
    bias = None if first.bias is None else torch.cat([first.bias, second.bias])
    return nhwc(F.conv2d(pair, weight, bias, padding=1, groups=2))


class AttentionFusionModule(nn.Module):
    """ReFusion's cross-attention fusion module (public ``AFM``).

    With ``x₁, x₂`` the two encoder outputs (``C`` channels each):

    * cross attention: ``x₁ ← x₁ + mid₁(softmax(τ₁ q̂₂k̂₁ᵀ) v₁)`` and
      ``x₂ ← x₂ + mid₂(softmax(τ₂ q̂₁k̂₂ᵀ) v₂)`` (q/k/v from ``qkv{1,2}`` +
      ``qkv{1,2}_dwconv``), per head, transposed (channel) attention;
    * gated mixing: ``o = [x₁|x₂]``, ``g₁|g₂ = E_d(E(o))``,
      ``out = o + P₁(gelu(g₁)⊙E1_d(E1 x₁)) + P₂(gelu(g₂)⊙E2_d(E2 x₂))``.

    It runs as one attention + one gated feed-forward sub-block over the
    ``2C`` concatenated channels: the cross attention is block-diagonal
    attention with ``2·heads`` heads whose query rows are swapped (x₁'s
    output rows use q₂), and the gated mixing is a feed-forward whose input
    projection stacks ``E`` on ``block_diag(E1, E2)`` and whose output
    projection is ``[P₁ | P₂]``. Parameter names equal the public ones
    (``temperature1/2`` are ``[heads]`` here, ``[heads, 1, 1]`` there).
    """

    def __init__(self, dim: int = 16, heads: int = 8, bias: bool = False) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim ({dim}) must be divisible by heads ({heads})")
        self.heads = heads

        def pointwise(cin: int, cout: int) -> nn.Conv2d:
            return nn.Conv2d(cin, cout, kernel_size=1, bias=bias)

        def depthwise(channels: int) -> nn.Conv2d:
            return nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=bias)

        self.temperature1 = nn.Parameter(torch.ones(heads))
        self.temperature2 = nn.Parameter(torch.ones(heads))
        self.qkv1 = pointwise(dim, dim * 3)
        self.qkv1_dwconv = depthwise(dim * 3)
        self.qkv2 = pointwise(dim, dim * 3)
        self.qkv2_dwconv = depthwise(dim * 3)
        self.project_mid1 = pointwise(dim, dim)
        self.project_mid2 = pointwise(dim, dim)
        self.project_E = pointwise(dim * 2, dim * 8)
        self.project_E_d = depthwise(dim * 8)
        self.project_E1 = pointwise(dim, dim * 4)
        self.project_E1_d = depthwise(dim * 4)
        self.project_E2 = pointwise(dim, dim * 4)
        self.project_E2_d = depthwise(dim * 4)
        self.project_out1 = pointwise(dim * 4, dim * 2)
        self.project_out2 = pointwise(dim * 4, dim * 2)

    def fused(self) -> BlockWeights:
        """The module as one block over ``[x₁ | x₂]`` (no layer norm)."""
        q1, k1, v1 = conv1x1_matrix(self.qkv1).chunk(3)
        q2, k2, v2 = conv1x1_matrix(self.qkv2).chunk(3)
        zeros = torch.zeros_like(q1)
        # rows [q₂ on x₂ | q₁ on x₁ | k₁ | k₂ | v₁ | v₂], columns [x₁ | x₂]
        qkv_weight = torch.cat(
            [
                torch.cat([zeros, q2], dim=1),
                torch.cat([q1, zeros], dim=1),
                torch.block_diag(k1, k2),
                torch.block_diag(v1, v2),
            ]
        )

        def qkv_rows(first: Tensor | None, second: Tensor | None) -> Tensor | None:
            if first is None or second is None:
                return None
            a, b = first.chunk(3), second.chunk(3)
            return torch.cat([b[0], a[0], a[1], b[1], a[2], b[2]])

        dim = q1.shape[1]
        rows = dim // self.heads
        attn = AttentionWeights(
            qkv_weight=qkv_weight,
            qkv_bias=qkv_rows(self.qkv1.bias, self.qkv2.bias),
            dw_weight=qkv_rows(  # type: ignore[arg-type]
                self.qkv1_dwconv.weight, self.qkv2_dwconv.weight
            ),
            dw_bias=qkv_rows(self.qkv1_dwconv.bias, self.qkv2_dwconv.bias),
            temperature=torch.cat([self.temperature1, self.temperature2]).repeat_interleave(rows),
            heads=2 * self.heads,
            proj_weight=torch.block_diag(
                conv1x1_matrix(self.project_mid1), conv1x1_matrix(self.project_mid2)
            ),
            proj_bias=_cat_bias(self.project_mid1, self.project_mid2),
        )
        ffn = FeedForwardWeights(
            in_weight=torch.cat(
                [
                    conv1x1_matrix(self.project_E),
                    torch.block_diag(conv1x1_matrix(self.project_E1), conv1x1_matrix(self.project_E2)),
                ]
            ),
            in_bias=_cat_bias(self.project_E, self.project_E1, self.project_E2),
            dw_weight=torch.cat(
                [self.project_E_d.weight, self.project_E1_d.weight, self.project_E2_d.weight]
            ),
            dw_bias=_cat_bias(self.project_E_d, self.project_E1_d, self.project_E2_d),
            out_weight=torch.cat(
                [conv1x1_matrix(self.project_out1), conv1x1_matrix(self.project_out2)], dim=1
            ),
            out_bias=(
                None
                if self.project_out1.bias is None
                else self.project_out1.bias + self.project_out2.bias
            ),
        )
        return BlockWeights(attn=attn, ffn=ffn, norm_groups=0)

    def forward(self, x1: Tensor, x2: Tensor) -> Tensor:
        """Fuse two ``[B, H, W, C]`` feature maps into ``[B, H, W, 2C]``."""
        return restormer_block_nhwc(torch.cat([x1, x2], dim=-1), self.fused())


def _cat_bias(*convs: nn.Conv2d) -> Tensor | None:
    if convs[0].bias is None:
        return None
    return torch.cat([c.bias for c in convs])  # type: ignore[misc]


@MODELS.register_module()
class ReFusionNet(nn.Module):
    """ReFusion fusion network (TDFusion's F), same function as the public ``ReFusion()``.

    Architecture (defaults ``dim=16, num_blocks=2, heads=8, expansion 2``; 59,856
    parameters): 3×3 stems ``project_in_1/2`` (1→dim) on each source; per source
    ``num_blocks`` Restormer blocks (``encoder1``, ``encoder2``); the cross-attention
    fusion module ``FM`` (:class:`AttentionFusionModule`, dim→2·dim); ``num_blocks``
    Restormer blocks at 2·dim (``decoder``); 3×3 ``project_out_0`` (2·dim→dim),
    LeakyReLU(0.01), 3×3 ``project_out_1`` (dim→1), sigmoid. All convolutions are
    stride 1 with "same" zero padding, so any ``H × W`` works without padding.

    Relation to the public code (``nets/ReFusion.py``): the public forward takes
    ``cat([a, b], 1)``; here ``forward(a, b)``. Public keys map to ours by dropping
    the ``.conv.weight`` aliases of every meta-convolution, ``normX.body.* →
    normX.*``, and temperatures ``[heads, 1, 1] → [heads]`` (see
    :func:`projects.tdfusion.tdfusion.convert.convert_official_state_dict`). The
    ``meta=True`` path of the public code (its manual fast weights) is not needed:
    the inner step uses ``torch.func.functional_call`` / ``higher`` / ``learn2learn``.

    Speed: activations stay channels-last ``[B, H, W, C]``; the two encoder
    branches run as one block-diagonal block, the fusion module as one
    attention + feed-forward block (see :mod:`learnable_fusion_loss.nn.restormer`).
    Twice differentiable, float32/float64, CPU/CUDA.

    Args:
        dim: feature width of each encoder branch.
        num_blocks: Restormer blocks per encoder branch and in the decoder.
        heads: attention heads (must divide ``dim``).
        ffn_expansion_factor: hidden width of the gated feed-forward, ×dim.
        bias: biases in the convolutions (public default: none).
        checkpoint_activations: when autograd is on, keep only each block's input
            and recompute its activations in the backward pass
            (``torch.utils.checkpoint``, non-reentrant, so ``autograd.grad`` and the
            meta step's double backward work). Same outputs and gradients, less
            memory for large crops, one extra forward of every block.

    >>> import torch
    >>> net = ReFusionNet(dim=8, num_blocks=1, heads=2).eval()
    >>> net(torch.rand(1, 1, 20, 27), torch.rand(1, 1, 20, 27)).shape
    torch.Size([1, 1, 20, 27])
    >>> sum(p.numel() for p in ReFusionNet().parameters())
    59856
    """

    def __init__(
        self,
        dim: int = 16,
        num_blocks: int = 2,
        heads: int = 8,
        ffn_expansion_factor: float = 2.0,
        bias: bool = False,
        checkpoint_activations: bool = False,
    ) -> None:
        super().__init__()
        self.config = restormer_config(dim, num_blocks, heads, ffn_expansion_factor, bias)
        self.project_in_1 = nn.Conv2d(1, dim, 3, padding=1, bias=bias)
        self.project_in_2 = nn.Conv2d(1, dim, 3, padding=1, bias=bias)
        self.encoder1 = nn.ModuleList(
            RestormerBlock(dim, heads, ffn_expansion_factor, bias) for _ in range(num_blocks)
        )
        self.encoder2 = nn.ModuleList(
            RestormerBlock(dim, heads, ffn_expansion_factor, bias) for _ in range(num_blocks)
        )
        self.FM = AttentionFusionModule(dim, heads, bias)
        self.decoder = nn.ModuleList(
            RestormerBlock(dim * 2, heads, ffn_expansion_factor, bias) for _ in range(num_blocks)
        )
        self.project_out_0 = nn.Conv2d(dim * 2, dim, 3, padding=1, bias=bias)
        self.project_out_1 = nn.Conv2d(dim, 1, 3, padding=1, bias=bias)
        self.checkpoint_activations = bool(checkpoint_activations)

    def _block(self, x: Tensor, weights: BlockWeights) -> Tensor:
        # The fused weights are computed outside the checkpoint and handed to it as
        # inputs: the recomputation then uses the very tensors of this forward (the
        # fast weights of an inner step), never the module's current attributes.
        if self.checkpoint_activations and torch.is_grad_enabled():
            return checkpoint(restormer_block_nhwc, x, weights, use_reentrant=False)
        return restormer_block_nhwc(x, weights)

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        """Fuse two single-channel sources ``[B, 1, H, W]`` into ``[B, 1, H, W]`` in ``[0, 1]``.

        ``a`` takes the public code's first input channel (``project_in_1``), ``b`` the second.
        """
        check_source_pair(a, b)
        x = dual_stem(a, b, self.project_in_1, self.project_in_2)
        for first, second in zip(self.encoder1, self.encoder2, strict=True):
            x = self._block(x, merge_block_pair(first.fused(), second.fused()))
        x = self._block(x, self.FM.fused())
        for block in self.decoder:
            x = self._block(x, block.fused())
        y = conv3x3(nchw_view(x), self.project_out_0.weight, self.project_out_0.bias)
        y = F.leaky_relu(y, 0.01)
        y = conv3x3(y, self.project_out_1.weight, self.project_out_1.bias)
        return torch.sigmoid(y).contiguous()
