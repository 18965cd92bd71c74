"""What a fused Restormer block is: its weights, as plain tensors, and how two merge.

A block is described by :class:`BlockWeights` (an :class:`AttentionWeights` and a
:class:`FeedForwardWeights`): already fused tensors (layer-norm affines folded into
the following 1×1 convolutions, 1×1 kernels as matrices) built from the module
parameters on every call, so ``torch.func.functional_call``, ``higher`` and
``learn2learn`` see ordinary parameters and everything stays twice differentiable.
The three implementations of the block (``graph.py``, ``streamed.py``, ``jvp.py``)
all read this description.

Two independent blocks running on two inputs (two encoder branches) are merged into
one block-diagonal block over the concatenated channels by :func:`merge_block_pair`;
other sub-networks can be written in the same form and run by the same code (a
cross-attention fusion module of two feature maps, say: block-diagonal attention
with swapped query rows and a gated feed-forward over the concatenated channels).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["AttentionWeights", "BlockWeights", "FeedForwardWeights", "merge_block_pair"]


@dataclass
class AttentionWeights:
    """Fused weights of one transposed-attention sub-block on ``D`` channels.

    ``qkv_weight`` ``[3D, D]`` (rows q, k, v; LN affine folded in),
    ``dw_weight`` ``[3D, 1, 3, 3]``, ``temperature`` ``[D]`` (each head's value
    repeated over its rows), ``proj_weight`` ``[D, D]``.
    """

    qkv_weight: Tensor
    qkv_bias: Tensor | None
    dw_weight: Tensor
    dw_bias: Tensor | None
    temperature: Tensor
    heads: int
    proj_weight: Tensor
    proj_bias: Tensor | None


@dataclass
class FeedForwardWeights:
    """Fused weights of one gated-dconv feed-forward sub-block.

    ``in_weight`` ``[2h, D]`` (rows: gate, value), ``dw_weight`` ``[2h, 1, 3, 3]``,
    ``out_weight`` ``[D, h]``: ``out = W_out·(gelu(gate) ⊙ value)``.
    """

    in_weight: Tensor
    in_bias: Tensor | None
    dw_weight: Tensor
    dw_bias: Tensor | None
    out_weight: Tensor
    out_bias: Tensor | None


@dataclass
class BlockWeights:
    """A residual attention + feed-forward block; ``norm_groups`` = 0 means no layer norm.

    With ``norm_groups = g`` the channels are layer-normalised in ``g`` independent
    groups (two merged branches have two).
    """

    attn: AttentionWeights
    ffn: FeedForwardWeights
    norm_groups: int


def _interleave_rows(x: Tensor | None, y: Tensor | None, parts: int) -> Tensor | None:
    """``[x₁, y₁, …, x_parts, y_parts]`` of the ``parts`` row chunks of each (``None``
    for two ``None``): keeps a q/k/v (or gate/value) stack chunkable after a merge."""
    if x is None and y is None:
        return None
    if x is None or y is None:
        raise ValueError("cannot merge a block that has biases with one that has none")
    return torch.cat([c for pair in zip(x.chunk(parts), y.chunk(parts)) for c in pair])


def merge_block_pair(first: BlockWeights, second: BlockWeights) -> BlockWeights:
    """One block over ``[x₁ | x₂]`` equal to ``first`` on x₁ and ``second`` on x₂.

    1×1 weights become block-diagonal (q, k, v and gate/value rows regrouped so the
    chunking still works), depthwise weights and temperatures are concatenated,
    heads add up, and the layer norm is applied per branch.

    >>> from learnable_fusion_loss.nn import RestormerBlock, merge_block_pair, restormer_block_nhwc
    >>> _ = torch.manual_seed(0)
    >>> first, second = RestormerBlock(4, 2), RestormerBlock(4, 2)
    >>> merged = merge_block_pair(first.fused(), second.fused())
    >>> merged.attn.heads, merged.norm_groups, tuple(merged.attn.qkv_weight.shape)
    (4, 2, (24, 8))
    >>> x = torch.rand(1, 5, 6, 8)
    >>> with torch.no_grad():
    ...     halves = torch.cat([first(x[..., :4]), second(x[..., 4:])], dim=-1)
    ...     torch.allclose(restormer_block_nhwc(x, merged), halves, atol=1e-5)
    True
    """
    a, b = first.attn, second.attn
    qa, ka, va = a.qkv_weight.chunk(3)
    qb, kb, vb = b.qkv_weight.chunk(3)
    attn = AttentionWeights(
        qkv_weight=torch.cat(
            [torch.block_diag(qa, qb), torch.block_diag(ka, kb), torch.block_diag(va, vb)]
        ),
        qkv_bias=_interleave_rows(a.qkv_bias, b.qkv_bias, 3),
        dw_weight=_interleave_rows(a.dw_weight, b.dw_weight, 3),  # type: ignore[arg-type]
        dw_bias=_interleave_rows(a.dw_bias, b.dw_bias, 3),
        temperature=torch.cat([a.temperature, b.temperature]),
        heads=a.heads + b.heads,
        proj_weight=torch.block_diag(a.proj_weight, b.proj_weight),
        proj_bias=_interleave_rows(a.proj_bias, b.proj_bias, 1),
    )
    fa, fb = first.ffn, second.ffn
    ga, xa = fa.in_weight.chunk(2)
    gb, xb = fb.in_weight.chunk(2)
    ffn = FeedForwardWeights(
        in_weight=torch.cat([torch.block_diag(ga, gb), torch.block_diag(xa, xb)]),
        in_bias=_interleave_rows(fa.in_bias, fb.in_bias, 2),
        dw_weight=_interleave_rows(fa.dw_weight, fb.dw_weight, 2),  # type: ignore[arg-type]
        dw_bias=_interleave_rows(fa.dw_bias, fb.dw_bias, 2),
        out_weight=torch.block_diag(fa.out_weight, fb.out_weight),
        out_bias=_interleave_rows(fa.out_bias, fb.out_bias, 1),
    )
    if first.norm_groups != second.norm_groups:
        raise ValueError("cannot merge blocks with and without layer norm")
    return BlockWeights(attn=attn, ffn=ffn, norm_groups=first.norm_groups + second.norm_groups)


def block_tensors(x: Tensor, w: BlockWeights) -> list[Tensor]:
    """``x`` and every tensor of ``w``: what decides which implementation runs."""
    return [t for t in (x, *vars(w.attn).values(), *vars(w.ffn).values()) if isinstance(t, Tensor)]
