"""The Restormer block's forward-mode derivative (JVP), streamed over bands by hand.

One of three implementations of the same block maths (``x + attn(LN x)``, then
``x + ffn(LN x)``, on :class:`~.weights.BlockWeights`):

* :mod:`.graph`: the definition, whole-tensor ops for autograd;
* :mod:`.streamed`: the same maths without autograd, band by band;
* this one: :mod:`.streamed`'s loops with each op's tangent written out beside it,
  for dual inputs or weights (``torch.autograd.forward_ad``) without a graph.

:func:`~.block.restormer_block_nhwc` picks one. ``tests/test_networks.py`` proves
they agree: ``test_banded_block_forward_mode_equals_unbanded`` (this = forward-mode
AD of graph, primal and tangent, for a merged pair, one block and a cross-attention
fusion module written as a block (no layer norm), with and without biases), ``test_banded_block_equals_unbanded_for_any_band``
(streamed = graph) and ``test_hypergradient_of_fast_networks_equals_reference_and_checkpointing``
(the forward-mode meta step that runs this = the unrolled one). A change to the
maths goes into all three.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd import forward_ad

from ..ops import depthwise_conv3x3_nhwc, linear_nograd
from .graph import LAYER_NORM_EPS, NORMALIZE_EPS, head_mask
from .streamed import band_bounds
from .weights import BlockWeights

__all__ = ["restormer_block_banded_jvp"]


def _unpack(t: Tensor | None) -> tuple[Tensor | None, Tensor | None]:
    """``(primal, tangent)`` of a possibly dual tensor; ``(None, None)`` for ``None``."""
    if t is None:
        return None, None
    primal, tangent = forward_ad.unpack_dual(t)
    return primal, tangent


def _layer_norm_groups_jvp(x: Tensor, x_t: Tensor, groups: int) -> tuple[Tensor, Tensor]:
    """:func:`~.graph.layer_norm_groups` and its tangent along ``x_t``.

    With ``n = (x − μ)·r`` (``r = 1/σ``) over each group:
    ``dn = r·(dx − mean(dx) − n·mean(n ⊙ dx))``.
    """
    if groups == 0:
        return x, x_t
    shape = x.shape
    size = shape[-1] // groups
    grouped = x.reshape(*shape[:-1], groups, size)
    tangent = x_t.reshape(grouped.shape)
    normed, _, rstd = torch.native_layer_norm(grouped, (size,), None, None, LAYER_NORM_EPS)
    normed_t = tangent - tangent.mean(-1, keepdim=True)
    normed_t.sub_(normed * (normed * tangent).mean(-1, keepdim=True)).mul_(rstd)
    return normed.reshape(shape), normed_t.reshape(shape)


def _bilinear_jvp(
    op: Callable[[Tensor, Tensor, Tensor | None], Tensor],
    x: Tensor, x_t: Tensor, weight: Tensor, weight_t: Tensor | None,
    bias: Tensor | None, bias_t: Tensor | None,
) -> tuple[Tensor, Tensor]:
    """``op(x, W, b)`` for an ``op`` linear in ``x`` and in ``W`` (a 1×1 or depthwise
    convolution), and its tangent ``op(x_t, W, b_t) + op(x, W_t, 0)``."""
    y = op(x, weight, bias)
    y_t = op(x_t, weight, bias_t)
    if weight_t is not None:
        y_t += op(x, weight_t, None)
    return y, y_t


def restormer_block_banded_jvp(x: Tensor, w: BlockWeights, band_rows: int) -> Tensor:
    """:func:`~.streamed.restormer_block_banded` for dual inputs: primal and tangent in one stream.

    This is the meta step's JVP of F (``MetaLossLearner(hypergradient="forward")``).
    Forward-mode AD of the unbanded block runs every op on full-size tensors; here
    each band's primal and tangent are computed together while they are in cache
    (a linear layer's tangent ``x_t·Wᵀ + x·W_tᵀ`` costs two products), and the
    ``[D, D]`` attention algebra (norms, softmax, projection) is left to forward-mode
    AD on the small dual tensors. Returns a dual tensor; equals the unbanded block's
    forward-mode AD up to float rounding.

    >>> from torch.autograd import forward_ad
    >>> from learnable_fusion_loss.nn import RestormerBlock
    >>> from learnable_fusion_loss.nn.restormer.jvp import restormer_block_banded_jvp
    >>> weights = RestormerBlock(4, 2).fused()
    >>> x, x_t = torch.rand(1, 9, 6, 4), torch.rand(1, 9, 6, 4)
    >>> with torch.no_grad(), forward_ad.dual_level():
    ...     out = restormer_block_banded_jvp(forward_ad.make_dual(x, x_t), weights, 4)
    ...     primal, tangent = forward_ad.unpack_dual(out)
    >>> primal.shape, tangent.shape
    (torch.Size([1, 9, 6, 4]), torch.Size([1, 9, 6, 4]))
    """
    x, x_t = _unpack(x)
    assert x is not None
    if x_t is None:
        x_t = torch.zeros_like(x)
    attn = {k: _unpack(v) for k, v in vars(w.attn).items() if k != "heads"}
    ffn = {k: _unpack(v) for k, v in vars(w.ffn).items()}
    qkv_w, dw_w, proj_b = attn["qkv_weight"], attn["dw_weight"], attn["proj_bias"]
    in_w, f_dw_w, out_w, out_b = ffn["in_weight"], ffn["dw_weight"], ffn["out_weight"], ffn["out_bias"]
    out, out_t = torch.empty_like(x), torch.empty_like(x)
    height, width, channels = x.shape[1:]
    mask = head_mask(channels, w.attn.heads, x.device)
    groups = w.norm_groups
    for image, image_t, target, target_t in zip(x, x_t.contiguous(), out, out_t):
        value, value_t = torch.empty_like(image), torch.empty_like(image)
        zeros = image.new_zeros
        gram, gram_t = zeros(channels, channels), zeros(channels, channels)
        q_sq, q_sq_t, k_sq, k_sq_t = (zeros(channels) for _ in range(4))
        for start in range(0, height, band_rows):
            stop = min(start + band_rows, height)
            lo, hi = band_bounds(height, start, stop, 1)
            y, y_t = _layer_norm_groups_jvp(image[lo:hi].unsqueeze(0), image_t[lo:hi].unsqueeze(0), groups)
            qkv, qkv_t = _bilinear_jvp(linear_nograd, y, y_t, *qkv_w, *attn["qkv_bias"])
            qkv, qkv_t = _bilinear_jvp(depthwise_conv3x3_nhwc, qkv, qkv_t, *dw_w, *attn["dw_bias"])
            qkv = qkv[0, start - lo: stop - lo].reshape(-1, 3 * channels)
            qkv_t = qkv_t[0, start - lo: stop - lo].reshape(-1, 3 * channels)
            q, k, v = qkv.split(channels, dim=-1)
            q_t, k_t, v_t = qkv_t.split(channels, dim=-1)
            gram.addmm_(q.t(), k)
            gram_t.addmm_(q_t.t(), k).addmm_(q.t(), k_t)
            q_sq += q.square().sum(0)
            q_sq_t += (q * q_t).sum(0)
            k_sq += k.square().sum(0)
            k_sq_t += (k * k_t).sum(0)
            value[start:stop].copy_(v.view(stop - start, width, channels))
            value_t[start:stop].copy_(v_t.view(stop - start, width, channels))
        # The [D, D] algebra in forward-mode AD, with the block's own dual weights.
        norms = [forward_ad.make_dual(sq, 2 * sq_t).sqrt().clamp_min(NORMALIZE_EPS)
                 for sq, sq_t in ((q_sq, q_sq_t), (k_sq, k_sq_t))]
        logits = (forward_ad.make_dual(gram, gram_t) / (norms[0].unsqueeze(1) * norms[1].unsqueeze(0))
                  * w.attn.temperature.unsqueeze(1))
        attention = torch.softmax(logits.masked_fill(~mask, float("-inf")), dim=-1)
        mix_t, mix_t_tangent = _unpack((w.attn.proj_weight @ attention).t())
        for start in range(0, height, band_rows):
            stop = min(start + band_rows, height)
            lo, hi = band_bounds(height, start, stop, 1)
            rows = hi - lo
            v, v_t = value[lo:hi].reshape(-1, channels), value_t[lo:hi].reshape(-1, channels)
            x1 = linear_nograd(v, mix_t.t(), proj_b[0], residual=image[lo:hi].reshape(-1, channels))
            x1_t = linear_nograd(v_t, mix_t.t(), proj_b[1], residual=image_t[lo:hi].reshape(-1, channels))
            if mix_t_tangent is not None:
                x1_t = linear_nograd(v, mix_t_tangent.t(), residual=x1_t)
            x1, x1_t = x1.view(1, rows, width, channels), x1_t.view(1, rows, width, channels)
            y, y_t = _layer_norm_groups_jvp(x1, x1_t, groups)
            hidden, hidden_t = _bilinear_jvp(linear_nograd, y, y_t, *in_w, *ffn["in_bias"])
            hidden, hidden_t = _bilinear_jvp(
                depthwise_conv3x3_nhwc, hidden, hidden_t, *f_dw_w, *ffn["dw_bias"])
            gate, gated = hidden[0, start - lo: stop - lo].chunk(2, dim=-1)
            gate_t, gated_t = hidden_t[0, start - lo: stop - lo].chunk(2, dim=-1)
            # h = gelu(g)·u,  h_t = gelu'(g)·g_t·u + gelu(g)·u_t
            hidden_t = torch.ops.aten.gelu_backward(gate_t, gate).mul_(gated)
            activated = F.gelu(gate)
            hidden_t.addcmul_(activated, gated_t)
            hidden = activated.mul_(gated).reshape(-1, gate.shape[-1])
            hidden_t = hidden_t.reshape(-1, gate.shape[-1])
            residual = x1[0, start - lo: stop - lo].reshape(-1, channels)
            residual_t = x1_t[0, start - lo: stop - lo].reshape(-1, channels)
            band = linear_nograd(hidden, out_w[0], out_b[0], residual=residual)
            target[start:stop].view(-1, channels).copy_(band)
            band_t = linear_nograd(hidden_t, out_w[0], out_b[1], residual=residual_t)
            if out_w[1] is not None:
                band_t = linear_nograd(hidden, out_w[1], residual=band_t)
            target_t[start:stop].view(-1, channels).copy_(band_t)
    return forward_ad.make_dual(out, out_t)
