"""The Restormer block without autograd, streamed over bands of rows.

One of three implementations of the same block maths (``x + attn(LN x)``, then
``x + ffn(LN x)``, on :class:`~.weights.BlockWeights`):

* :mod:`.graph`: the definition, whole-tensor ops for autograd;
* this one: no graph and no tangents (inference, ``torch.no_grad``), band by band so a
  band's intermediates stay in cache;
* :mod:`.jvp`: this streaming with forward-mode tangents carried alongside.

:func:`~.block.restormer_block_nhwc` picks one. ``tests/test_networks.py`` proves
they agree: ``test_banded_block_equals_unbanded_for_any_band`` (this = graph, for
band heights 1 … 64 and a merged pair), ``test_banded_block_forward_mode_equals_unbanded``
(jvp = forward-mode AD of graph) and ``test_matches_reference_*`` (both = the plain
NCHW public network). A change to the maths goes into all three.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..ops import depthwise_conv3x3_nhwc, linear_nograd
from .graph import NORMALIZE_EPS, head_mask, layer_norm_groups
from .weights import BlockWeights

__all__ = ["BAND_ROWS", "band_bounds", "restormer_block_banded"]

#: Rows per band of the no-grad path: a band's intermediates (≈ 18 rows × 640 px ×
#: 128 channels) stay in the last-level cache instead of streaming through memory.
BAND_ROWS = 16


def band_bounds(height: int, start: int, stop: int, halo: int) -> tuple[int, int]:
    """Rows ``[lo, hi)`` that rows ``[start, stop)`` need with ``halo`` rows each side,
    clipped to the image.

    >>> from learnable_fusion_loss.nn.restormer.streamed import band_bounds
    >>> band_bounds(10, 0, 4, 1), band_bounds(10, 4, 8, 1), band_bounds(10, 8, 10, 1)
    ((0, 5), (3, 9), (7, 10))
    """
    return max(start - halo, 0), min(stop + halo, height)


def restormer_block_banded(x: Tensor, w: BlockWeights, band_rows: int) -> Tensor:
    """:func:`~.block.restormer_block_nhwc` without autograd, streamed over bands of rows.

    Pass 1 computes q, k, v band by band (one halo row each side for the depthwise
    convolution), accumulates the Gram matrix and the q/k norms, and keeps only v.
    Pass 2 applies the attention and the feed-forward band by band. Memory traffic
    per block drops from ~50 to ~5 full-size tensors; the result equals the
    unbanded computation up to float rounding.

    >>> from learnable_fusion_loss.nn import RestormerBlock
    >>> from learnable_fusion_loss.nn.restormer.graph import restormer_block_graph
    >>> from learnable_fusion_loss.nn.restormer.streamed import restormer_block_banded
    >>> weights, x = RestormerBlock(4, 2).fused(), torch.rand(1, 9, 6, 4)
    >>> with torch.no_grad():
    ...     torch.allclose(restormer_block_banded(x, weights, 4), restormer_block_graph(x, weights),
    ...                    atol=1e-5)
    True
    """
    out = torch.empty_like(x)
    a, f = w.attn, w.ffn
    height, width, channels = x.shape[1:]
    mask = head_mask(channels, a.heads, x.device)
    for image, target in zip(x, out):  # [H, W, D] each
        value = torch.empty_like(image)
        gram = image.new_zeros(channels, channels)
        q_sq = image.new_zeros(channels)
        k_sq = image.new_zeros(channels)
        for start in range(0, height, band_rows):
            stop = min(start + band_rows, height)
            lo, hi = band_bounds(height, start, stop, 1)
            y = layer_norm_groups(image[lo:hi].unsqueeze(0), w.norm_groups)
            qkv = linear_nograd(y, a.qkv_weight, a.qkv_bias)
            qkv = depthwise_conv3x3_nhwc(qkv, a.dw_weight, a.dw_bias)
            qkv = qkv[0, start - lo: stop - lo].reshape(-1, 3 * channels)
            q, k, v = qkv.split(channels, dim=-1)
            gram.addmm_(q.t(), k)
            q_sq += q.square().sum(0)
            k_sq += k.square().sum(0)
            value[start:stop].copy_(v.view(stop - start, width, channels))
        norms = q_sq.sqrt().clamp_min(NORMALIZE_EPS), k_sq.sqrt().clamp_min(NORMALIZE_EPS)
        logits = gram / (norms[0].unsqueeze(1) * norms[1].unsqueeze(0)) * a.temperature.unsqueeze(1)
        attention = torch.softmax(logits.masked_fill(~mask, float("-inf")), dim=-1)
        mix_t = (a.proj_weight @ attention).t()
        for start in range(0, height, band_rows):
            stop = min(start + band_rows, height)
            lo, hi = band_bounds(height, start, stop, 1)
            rows = hi - lo
            x1 = linear_nograd(value[lo:hi].reshape(-1, channels), mix_t.t(), a.proj_bias,
                               residual=image[lo:hi].reshape(-1, channels))
            x1 = x1.view(1, rows, width, channels)
            y = layer_norm_groups(x1, w.norm_groups)
            hidden = linear_nograd(y, f.in_weight, f.in_bias)
            hidden = depthwise_conv3x3_nhwc(hidden, f.dw_weight, f.dw_bias)
            hidden = hidden[0, start - lo: stop - lo]
            gate, gated = hidden.chunk(2, dim=-1)  # strided views; work in place
            gate = torch.ops.aten.gelu_(gate).mul_(gated).reshape(-1, gate.shape[-1])
            residual = x1[0, start - lo: stop - lo].reshape(-1, channels)
            band_out = target[start:stop].view(-1, channels)
            band_out.copy_(linear_nograd(gate, f.out_weight, f.out_bias, residual=residual))
    return out
