"""Method-agnostic network building blocks: fast CPU kernels and the Restormer block.

* :mod:`.ops`: channels-last layout helpers and the kernels everything is built from,
  :func:`conv3x3` (a 3×3 convolution with a lean double backward) and :func:`linear`
  (a 1×1 convolution on oneDNN for float32 CPU, the residual addition fused);
* :mod:`.restormer`: the Restormer transformer block on ``[B, H, W, C]`` activations,
  as fused weights (:class:`BlockWeights`), a function (:func:`restormer_block_nhwc`)
  and modules (:class:`RestormerBlock`).

Nothing here knows about a fusion method; the networks built from these live with
the method that uses them (a project's package), beside the generic ones of
:mod:`learnable_fusion_loss.generators`.

>>> import torch
>>> from learnable_fusion_loss.nn import RestormerBlock, nchw_view, nhwc
>>> x = torch.rand(1, 8, 6, 5)
>>> nchw_view(RestormerBlock(8, heads=2)(nhwc(x))).shape
torch.Size([1, 8, 6, 5])
"""

from .ops import conv3x3, depthwise_conv3x3_nhwc, linear, linear_nograd, nchw_view, nhwc
from .restormer.block import (
    ChannelAttention,
    ChannelLayerNorm,
    GatedFeedForward,
    RestormerBlock,
    restormer_block_nhwc,
)
from .restormer.graph import attention_residual, gated_ffn_residual
from .restormer.weights import AttentionWeights, BlockWeights, FeedForwardWeights, merge_block_pair

__all__ = [
    "AttentionWeights",
    "BlockWeights",
    "ChannelAttention",
    "ChannelLayerNorm",
    "FeedForwardWeights",
    "GatedFeedForward",
    "RestormerBlock",
    "attention_residual",
    "conv3x3",
    "depthwise_conv3x3_nhwc",
    "gated_ffn_residual",
    "linear",
    "linear_nograd",
    "merge_block_pair",
    "nchw_view",
    "nhwc",
    "restormer_block_nhwc",
]
