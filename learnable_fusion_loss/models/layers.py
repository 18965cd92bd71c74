"""Compatibility shim: the fast Restormer blocks now live in :mod:`learnable_fusion_loss.nn`.

Every name this module used to define is re-exported from its new home, so old
imports keep working; new code imports from :mod:`learnable_fusion_loss.nn`:

==================================  =====================================================
``nn.ops``                          layout helpers, :func:`conv3x3`, :func:`linear`
``nn.restormer.weights``            :class:`BlockWeights` & co., :func:`merge_block_pair`
``nn.restormer.graph``              the autograd path (:func:`attention_residual` ...)
``nn.restormer.streamed``           the banded no-grad path
``nn.restormer.jvp``                the banded forward-mode path
``nn.restormer.block``              :func:`restormer_block_nhwc`, the modules
==================================  =====================================================

``_ONEDNN_LINEAR`` here is a copy taken at import: to switch the 1×1 convolutions to
``F.linear``/``addmm``, set ``learnable_fusion_loss.nn.ops._ONEDNN_LINEAR``.
"""

# The public names (``__all__`` is nn's own list), then every private one of the old module.
from ..nn import (  # noqa: F401
    AttentionWeights, BlockWeights, ChannelAttention, ChannelLayerNorm, FeedForwardWeights,
    GatedFeedForward, RestormerBlock, __all__, attention_residual, conv3x3,
    depthwise_conv3x3_nhwc, gated_ffn_residual, linear, linear_nograd, merge_block_pair,
    nchw_view, nhwc, restormer_block_nhwc,
)
from ..nn.ops import (  # noqa: F401
    _ONEDNN_LINEAR, _Conv3x3, _linear_native, _onednn_eligible, _OneDNNLinear, _transposed_kernel,
)
from ..nn.ops import has_tangent as _has_tangent  # noqa: F401
from ..nn.ops import records_graph as _records_graph  # noqa: F401
from ..nn.ops import conv1x1_matrix as _flat  # noqa: F401
from ..nn.restormer.block import _fold_norm  # noqa: F401
from ..nn.restormer.graph import LAYER_NORM_EPS, NORMALIZE_EPS  # noqa: F401
from ..nn.restormer.graph import head_mask as _head_mask  # noqa: F401
from ..nn.restormer.graph import layer_norm_groups as _layer_norm_groups  # noqa: F401
from ..nn.restormer.jvp import _bilinear_jvp, _layer_norm_groups_jvp, _unpack  # noqa: F401
from ..nn.restormer.jvp import restormer_block_banded_jvp as _restormer_block_banded_jvp  # noqa: F401
from ..nn.restormer.streamed import BAND_ROWS  # noqa: F401
from ..nn.restormer.streamed import band_bounds as _band  # noqa: F401
from ..nn.restormer.streamed import restormer_block_banded as _restormer_block_banded  # noqa: F401
from ..nn.restormer.weights import block_tensors as _block_tensors  # noqa: F401
