"""The Restormer block for autograd: whole-tensor ops, differentiable to any order.

One of three implementations of the same block maths (``x + attn(LN x)``, then
``x + ffn(LN x)``, on :class:`~.weights.BlockWeights`):

* this one, the definition: it runs whenever reverse-mode autograd records (training,
  the meta step's double backward, ``torch.func`` transforms);
* :mod:`.streamed`: the same maths without autograd, streamed over bands of rows;
* :mod:`.jvp`: the streamed path with forward-mode tangents, written out by hand.

:func:`~.block.restormer_block_nhwc` picks one. ``tests/test_networks.py`` proves
they agree: ``test_banded_block_equals_unbanded_for_any_band`` (streamed = this),
``test_banded_block_forward_mode_equals_unbanded`` (jvp = forward-mode AD of this),
and ``test_matches_reference_*`` (both paths = the plain NCHW public network). A
change to the maths goes into all three.

The activations stay in one channels-last ``[B, H, W, C]`` tensor, and each block runs
as a handful of fused kernels:

* layer norm: ``F.layer_norm`` over the trailing channel axis, without affine;
  its scale/shift are folded into the 1×1 convolution that follows
  (``W·(γ⊙x̂ + β) = (W·diag γ)·x̂ + W·β``);
* 1×1 convolutions: one GEMM over the pixels (:func:`~learnable_fusion_loss.nn.linear`:
  oneDNN on float32 CPU, else ``F.linear`` / ``addmm``), the residual addition fused
  into it;
* depthwise 3×3 convolutions: ``F.conv2d`` on the channels-last view (no copy);
* transposed ("channel") attention: the ``[D, D]`` Gram matrix ``qᵀk`` over the
  pixels with one GEMM on strided views of the qkv tensor, q/k normalisation
  applied to the tiny Gram matrix instead of to the ``[D, H·W]`` maps, heads as
  a block-diagonal mask, and the output projection folded into the attention
  matrix, so ``x + W_o·A·v`` is a single batched GEMM.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..ops import depthwise_conv3x3_nhwc, linear, records_graph
from .weights import AttentionWeights, BlockWeights, FeedForwardWeights

__all__ = [
    "LAYER_NORM_EPS",
    "NORMALIZE_EPS",
    "attention_residual",
    "gated_ffn_residual",
    "head_mask",
    "layer_norm_groups",
    "restormer_block_graph",
]

LAYER_NORM_EPS = 1e-5  # the public WithBias_LayerNorm's epsilon
NORMALIZE_EPS = 1e-12  # F.normalize's default epsilon


def head_mask(channels: int, heads: int, device: torch.device) -> Tensor:
    """``[D, D]`` boolean: True where row and column channel belong to the same head.

    >>> from learnable_fusion_loss.nn.restormer.graph import head_mask
    >>> head_mask(4, 2, torch.device("cpu")).int()
    tensor([[1, 1, 0, 0],
            [1, 1, 0, 0],
            [0, 0, 1, 1],
            [0, 0, 1, 1]], dtype=torch.int32)
    """
    head = torch.arange(channels, device=device) // (channels // heads)
    return head.unsqueeze(1) == head.unsqueeze(0)


def layer_norm_groups(x: Tensor, groups: int) -> Tensor:
    """Per-pixel layer norm (no affine) of ``[B, H, W, C]`` in ``groups`` channel groups.

    ``groups`` = 0: ``x`` itself (a block without layer norm).

    >>> from learnable_fusion_loss.nn.restormer.graph import layer_norm_groups
    >>> y = layer_norm_groups(torch.rand(1, 2, 3, 8), 2)
    >>> y.shape, bool(y[..., :4].mean(-1).abs().max() < 1e-6)
    (torch.Size([1, 2, 3, 8]), True)
    """
    if groups == 0:
        return x
    channels = x.shape[-1]
    if groups == 1:
        return F.layer_norm(x, (channels,), eps=LAYER_NORM_EPS)
    size = channels // groups
    grouped = x.reshape(*x.shape[:-1], groups, size)
    return F.layer_norm(grouped, (size,), eps=LAYER_NORM_EPS).reshape(x.shape)


def attention_residual(x: Tensor, normed: Tensor, w: AttentionWeights) -> Tensor:
    """``x + W_o · softmax_heads(τ · q̂ k̂ᵀ) · v`` with Restormer's transposed attention.

    ``q, k, v = dwconv3×3(W_qkv · normed)``; ``q̂, k̂`` are L2-normalised over the
    pixels; the attention matrix is ``[D, D]`` restricted to each head's diagonal
    block. All in ``[B, H, W, D]``.

    >>> from learnable_fusion_loss.nn import RestormerBlock, attention_residual
    >>> x = torch.rand(1, 5, 6, 4)
    >>> attention_residual(x, x, RestormerBlock(4, 2).attn.fused(None)).shape
    torch.Size([1, 5, 6, 4])
    """
    batch, height, width, channels = x.shape
    pixels = height * width
    qkv = linear(normed, w.qkv_weight, w.qkv_bias)
    qkv = depthwise_conv3x3_nhwc(qkv, w.dw_weight, w.dw_bias)
    qkv = qkv.reshape(batch, pixels, 3 * channels)
    q, k, v = qkv.split(channels, dim=-1)  # strided views, no copies
    gram = torch.bmm(q.transpose(1, 2), k)  # [B, D, D], sum over the pixels
    q_norm = torch.linalg.vector_norm(q, dim=1).clamp_min(NORMALIZE_EPS)
    k_norm = torch.linalg.vector_norm(k, dim=1).clamp_min(NORMALIZE_EPS)
    logits = gram / (q_norm.unsqueeze(2) * k_norm.unsqueeze(1)) * w.temperature.unsqueeze(1)
    logits = logits.masked_fill(~head_mask(channels, w.heads, x.device), float("-inf"))
    attention = torch.softmax(logits, dim=-1)
    mix = torch.matmul(w.proj_weight, attention)  # project_out folded into the attention
    out = torch.baddbmm(x.reshape(batch, pixels, channels), v, mix.transpose(1, 2))
    if w.proj_bias is not None:
        out = out + w.proj_bias
    return out.view(batch, height, width, channels)


def gated_ffn_residual(x: Tensor, normed: Tensor, w: FeedForwardWeights) -> Tensor:
    """``x + W_out·(gelu(g) ⊙ u)``, ``g, u = dwconv3×3(W_in·normed)``, on ``[B, H, W, D]``.

    >>> from learnable_fusion_loss.nn import RestormerBlock, gated_ffn_residual
    >>> x = torch.rand(1, 5, 6, 4)
    >>> gated_ffn_residual(x, x, RestormerBlock(4, 2).ffn.fused(None)).shape
    torch.Size([1, 5, 6, 4])
    """
    shape = x.shape
    hidden = linear(normed, w.in_weight, w.in_bias)
    hidden = depthwise_conv3x3_nhwc(hidden, w.dw_weight, w.dw_bias)
    gate, value = hidden.chunk(2, dim=-1)
    if records_graph([gate, value]):
        hidden = F.gelu(gate) * value
    else:  # inference: reuse the gate's memory
        hidden = F.gelu(gate).mul_(value)
    flat = hidden.reshape(-1, hidden.shape[-1])
    return linear(flat, w.out_weight, w.out_bias, residual=x.reshape(-1, shape[-1])).view(shape)


def restormer_block_graph(x: Tensor, w: BlockWeights) -> Tensor:
    """The whole block on a contiguous ``[B, H, W, D]``, as autograd (and forward-mode AD
    of whole tensors) sees it: :func:`attention_residual`, then :func:`gated_ffn_residual`.

    >>> from learnable_fusion_loss.nn import RestormerBlock
    >>> from learnable_fusion_loss.nn.restormer.graph import restormer_block_graph
    >>> block = RestormerBlock(4, 2)
    >>> x = torch.rand(1, 5, 6, 4)
    >>> restormer_block_graph(x, block.fused()).requires_grad
    True
    """
    x = attention_residual(x, layer_norm_groups(x, w.norm_groups), w.attn)
    return gated_ffn_residual(x, layer_norm_groups(x, w.norm_groups), w.ffn)
