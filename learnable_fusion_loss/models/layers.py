"""Fast Restormer building blocks shared by the fusion network and the LPN.

The public TDFusion code runs every block in NCHW, computes layer norms by hand
through ``b c h w -> b (h w) c`` copies and reshapes q/k/v with einops. Here the
activations stay in one channels-last ``[B, H, W, C]`` tensor for the whole
network, and each block runs as a handful of fused kernels:

* layer norm: ``F.layer_norm`` over the trailing channel axis, without affine;
  its scale/shift are folded into the 1×1 convolution that follows
  (``W·(γ⊙x̂ + β) = (W·diag γ)·x̂ + W·β``);
* 1×1 convolutions: one GEMM over the pixels (:func:`linear`: oneDNN on float32
  CPU, else ``F.linear`` / ``addmm``), the residual addition fused into it;
* depthwise 3×3 convolutions: ``F.conv2d`` on the channels-last view (no copy);
* transposed ("channel") attention: the ``[D, D]`` Gram matrix ``qᵀk`` over the
  pixels with one GEMM on strided views of the qkv tensor, q/k normalisation
  applied to the tiny Gram matrix instead of to the ``[D, H·W]`` maps, heads as
  a block-diagonal mask, and the output projection folded into the attention
  matrix, so ``x + W_o·A·v`` is a single batched GEMM.

Blocks are described by :class:`BlockWeights` (already fused tensors built from
the parameters on every call, so ``torch.func.functional_call``, ``higher`` and
``learn2learn`` see ordinary parameters and everything stays twice
differentiable). Two independent blocks running on two inputs (the two encoder
branches) are merged into one block-diagonal block over the concatenated
channels by :func:`merge_block_pair`; the cross-attention fusion module of
ReFusion is expressed in the same form (see ``refusion.py``).

Parameter layout of the modules mirrors the public code (``qkv``,
``qkv_dwconv``, ``project_out``, ``temperature`` ...) so that conversion is a
renaming; see :mod:`learnable_fusion_loss.models.convert`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd import forward_ad

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
    "merge_block_pair",
    "nchw_view",
    "nhwc",
    "restormer_block_nhwc",
]

LAYER_NORM_EPS = 1e-5  # the public WithBias_LayerNorm's epsilon
NORMALIZE_EPS = 1e-12  # F.normalize's default epsilon


# ----------------------------------------------------------------------------- layout helpers
def nhwc(x: Tensor) -> Tensor:
    """``[B, C, H, W]`` → contiguous ``[B, H, W, C]`` (free for a channels-last tensor)."""
    return x.permute(0, 2, 3, 1).contiguous()


def nchw_view(x: Tensor) -> Tensor:
    """``[B, H, W, C]`` → the ``[B, C, H, W]`` view of the same memory (channels-last)."""
    return x.permute(0, 3, 1, 2)


def _records_graph(tensors: list[Tensor]) -> bool:
    """Whether reverse-mode autograd records an op on these tensors."""
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def _has_tangent(tensors: list[Tensor]) -> bool:
    """Whether forward-mode AD (``torch.autograd.forward_ad``) carries a tangent in.

    Forward-mode AD runs even under ``no_grad``; the oneDNN op and the banded path's
    in-place and ``out=`` kernels would drop the tangents.
    """
    return any(forward_ad.unpack_dual(t).tangent is not None for t in tensors)


class _Conv3x3(torch.autograd.Function):
    """A stride-1, zero-padded 3×3 convolution whose backward is built from first-order ops.

    Why: PyTorch's double backward of a convolution (``_convolution_double_backward``)
    computes the weight term ``conv(ggI, gO)`` whenever the incoming ``ggI`` exists,
    whether or not the weight's gradient is wanted. The meta step's hypergradient
    differentiates F's backward pass w.r.t. G only, so for every convolution inside F
    that term is wasted, and for a depthwise convolution it runs as one 256×256-kernel
    convolution per channel plus a copy: about 40 % of a meta step on CPU. Here the
    backward is a convolution with the adjoint kernel (for the input) and
    ``convolution_backward`` asked for the weight only; the derivatives of those two
    are ordinary convolutions, so the second-order pass does only what autograd's
    pruning asks for.
    """

    @staticmethod
    def forward(x: Tensor, weight: Tensor, groups: int) -> Tensor:  # type: ignore[override]
        return F.conv2d(x, weight, None, padding=1, groups=groups)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:  # type: ignore[override]
        x, weight, groups = inputs
        ctx.save_for_backward(x, weight)
        ctx.groups = groups

    @staticmethod
    def backward(ctx, grad_out: Tensor):  # type: ignore[override]
        x, weight = ctx.saved_tensors
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            # conv2d with the flipped, per-group transposed kernel, not conv_transpose2d:
            # the same values, and oneDNN's depthwise conv2d is 1.5–2× faster on CPU
            # (its transposed depthwise kernel sometimes takes 20× longer at 128+ channels).
            grad_x = F.conv2d(grad_out, _transposed_kernel(weight, ctx.groups), None,
                              padding=1, groups=ctx.groups)
        if ctx.needs_input_grad[1]:
            grad_w = torch.ops.aten.convolution_backward(
                grad_out, x, weight, None, [1, 1], [1, 1], [1, 1], False, [0, 0], ctx.groups,
                [False, True, False],
            )[1]
        return grad_x, grad_w, None


def _transposed_kernel(weight: Tensor, groups: int) -> Tensor:
    """The kernel whose stride-1 "same" convolution is the adjoint of ``weight``'s:
    rotated by 180° with input and output channels swapped within each group."""
    out_channels, in_per_group = weight.shape[:2]
    flipped = weight.flip(2, 3).reshape(groups, out_channels // groups, in_per_group, 3, 3)
    return flipped.transpose(1, 2).reshape(in_per_group * groups, out_channels // groups, 3, 3)


def conv3x3(x: Tensor, weight: Tensor, bias: Tensor | None = None, groups: int = 1) -> Tensor:
    """``F.conv2d(x, weight, bias, padding=1, groups=groups)`` for 3×3 kernels, ``[B, C, H, W]``.

    Same values and gradients; under autograd it uses :class:`_Conv3x3`, whose double
    backward skips the weight terms nobody asked for (see there).
    """
    if not _records_graph([x, weight]):
        return F.conv2d(x, weight, bias, padding=1, groups=groups)
    y = _Conv3x3.apply(x, weight, groups)
    return y if bias is None else y + bias.view(1, -1, 1, 1)


def depthwise_conv3x3_nhwc(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """Depthwise 3×3 convolution (zero padding 1) of a ``[B, H, W, C]`` tensor."""
    y = conv3x3(nchw_view(x), weight, bias, groups=weight.shape[0])
    return y.permute(0, 2, 3, 1)


#: oneDNN's fp32 matmul (the primitive PyTorch's own compiled CPU code calls). Why:
#: ``F.linear``/``addmm`` run on MKL, which takes its AVX2 kernels on AMD CPUs, while
#: oneDNN uses AVX-512 there: 2–3× faster for the 1×1 convolutions and their input
#: gradients here, on the EPYC machines this was developed on. (For the weight
#: gradient, a reduction over the pixels, MKL is faster and keeps it.) A private op,
#: so it is probed, not assumed.
_ONEDNN_LINEAR = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def _onednn_eligible(x: Tensor) -> bool:
    return _ONEDNN_LINEAR and x.dtype == torch.float32 and x.device.type == "cpu"


def _linear_native(x: Tensor, weight: Tensor, bias: Tensor | None, residual: Tensor | None) -> Tensor:
    if residual is None:
        return F.linear(x, weight, bias)
    out = torch.addmm(residual.reshape(-1, residual.shape[-1]), x.reshape(-1, x.shape[-1]), weight.t())
    if bias is not None:
        out = out + bias
    return out.view(residual.shape)


def linear_nograd(x: Tensor, weight: Tensor, bias: Tensor | None = None,
                  residual: Tensor | None = None) -> Tensor:
    """:func:`linear` for code that autograd never sees (no graph, no tangents).

    The banded paths of :func:`restormer_block_nhwc` call it directly.
    """
    if _onednn_eligible(x):
        if residual is None:
            return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")
        return torch.ops.mkldnn._linear_pointwise.binary(x, residual, weight, bias, "add")
    return _linear_native(x, weight, bias, residual)


class _OneDNNLinear(torch.autograd.Function):
    """``residual + x·Wᵀ + b`` by oneDNN, differentiable to any order (its backward calls
    :func:`linear` again, so ``create_graph`` records oneDNN products too)."""

    @staticmethod
    def forward(x: Tensor, weight: Tensor, bias: Tensor | None,  # type: ignore[override]
                residual: Tensor | None) -> Tensor:
        return linear_nograd(x, weight, bias, residual)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:  # type: ignore[override]
        x, weight, _, _ = inputs
        ctx.save_for_backward(x, weight)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        x, weight = ctx.saved_tensors
        grad_x = grad_w = grad_b = grad_r = None
        if ctx.needs_input_grad[0]:
            grad_x = linear(grad, weight.t())
        flat = grad.reshape(-1, grad.shape[-1])
        if ctx.needs_input_grad[1]:
            grad_w = flat.t() @ x.reshape(-1, x.shape[-1])
        if ctx.needs_input_grad[2]:
            grad_b = flat.sum(0)
        if ctx.needs_input_grad[3]:
            grad_r = grad
        return grad_x, grad_w, grad_b, grad_r


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None,
           residual: Tensor | None = None) -> Tensor:
    """``residual + x·weightᵀ + bias`` over the last axis: a 1×1 convolution of
    ``[..., C_in]`` with a ``[C_out, C_in]`` matrix, the residual addition fused.

    float32 on CPU runs oneDNN's matmul (``_ONEDNN_LINEAR``), through
    :class:`_OneDNNLinear` when autograd records; with forward-mode tangents, in
    float64 or on other devices it is ``F.linear``/``addmm``. Same values up to
    float rounding, and the same derivatives.
    """
    tensors = [t for t in (x, weight, bias, residual) if t is not None]
    if not _onednn_eligible(x) or _has_tangent(tensors):
        return _linear_native(x, weight, bias, residual)
    if _records_graph(tensors):
        return _OneDNNLinear.apply(x, weight, bias, residual)
    return linear_nograd(x, weight, bias, residual)


def _head_mask(channels: int, heads: int, device: torch.device) -> Tensor:
    """``[D, D]`` boolean: True where row and column channel belong to the same head."""
    head = torch.arange(channels, device=device) // (channels // heads)
    return head.unsqueeze(1) == head.unsqueeze(0)


# ----------------------------------------------------------------------------- fused weights
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


def _cat_opt(parts: list[Tensor | None]) -> Tensor | None:
    if all(p is None for p in parts):
        return None
    if any(p is None for p in parts):
        raise ValueError("cannot merge a block that has biases with one that has none")
    return torch.cat(parts)  # type: ignore[arg-type]


def merge_block_pair(first: BlockWeights, second: BlockWeights) -> BlockWeights:
    """One block over ``[x₁ | x₂]`` equal to ``first`` on x₁ and ``second`` on x₂.

    1×1 weights become block-diagonal (q, k, v and gate/value rows regrouped so the
    chunking still works), depthwise weights and temperatures are concatenated,
    heads add up, and the layer norm is applied per branch.
    """
    a, b = first.attn, second.attn
    qa, ka, va = a.qkv_weight.chunk(3)
    qb, kb, vb = b.qkv_weight.chunk(3)

    def rows3(x: Tensor | None, y: Tensor | None) -> Tensor | None:
        if x is None and y is None:
            return None
        if x is None or y is None:
            raise ValueError("cannot merge a block that has biases with one that has none")
        xs, ys = x.chunk(3), y.chunk(3)
        return torch.cat([xs[0], ys[0], xs[1], ys[1], xs[2], ys[2]])

    attn = AttentionWeights(
        qkv_weight=torch.cat(
            [torch.block_diag(qa, qb), torch.block_diag(ka, kb), torch.block_diag(va, vb)]
        ),
        qkv_bias=rows3(a.qkv_bias, b.qkv_bias),
        dw_weight=rows3(a.dw_weight, b.dw_weight),  # type: ignore[arg-type]
        dw_bias=rows3(a.dw_bias, b.dw_bias),
        temperature=torch.cat([a.temperature, b.temperature]),
        heads=a.heads + b.heads,
        proj_weight=torch.block_diag(a.proj_weight, b.proj_weight),
        proj_bias=_cat_opt([a.proj_bias, b.proj_bias]),
    )
    fa, fb = first.ffn, second.ffn
    ga, xa = fa.in_weight.chunk(2)
    gb, xb = fb.in_weight.chunk(2)

    def rows2(x: Tensor | None, y: Tensor | None) -> Tensor | None:
        if x is None and y is None:
            return None
        if x is None or y is None:
            raise ValueError("cannot merge a block that has biases with one that has none")
        xs, ys = x.chunk(2), y.chunk(2)
        return torch.cat([xs[0], ys[0], xs[1], ys[1]])

    ffn = FeedForwardWeights(
        in_weight=torch.cat([torch.block_diag(ga, gb), torch.block_diag(xa, xb)]),
        in_bias=rows2(fa.in_bias, fb.in_bias),
        dw_weight=rows2(fa.dw_weight, fb.dw_weight),  # type: ignore[arg-type]
        dw_bias=rows2(fa.dw_bias, fb.dw_bias),
        out_weight=torch.block_diag(fa.out_weight, fb.out_weight),
        out_bias=_cat_opt([fa.out_bias, fb.out_bias]),
    )
    if first.norm_groups != second.norm_groups:
        raise ValueError("cannot merge blocks with and without layer norm")
    return BlockWeights(attn=attn, ffn=ffn, norm_groups=first.norm_groups + second.norm_groups)


# ----------------------------------------------------------------------------- fused kernels
def _layer_norm_groups(x: Tensor, groups: int) -> Tensor:
    """Per-pixel layer norm (no affine) of ``[B, H, W, C]`` in ``groups`` channel groups."""
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
    logits = logits.masked_fill(~_head_mask(channels, w.heads, x.device), float("-inf"))
    attention = torch.softmax(logits, dim=-1)
    mix = torch.matmul(w.proj_weight, attention)  # project_out folded into the attention
    out = torch.baddbmm(x.reshape(batch, pixels, channels), v, mix.transpose(1, 2))
    if w.proj_bias is not None:
        out = out + w.proj_bias
    return out.view(batch, height, width, channels)


def gated_ffn_residual(x: Tensor, normed: Tensor, w: FeedForwardWeights) -> Tensor:
    """``x + W_out·(gelu(g) ⊙ u)``, ``g, u = dwconv3×3(W_in·normed)``, on ``[B, H, W, D]``."""
    shape = x.shape
    hidden = linear(normed, w.in_weight, w.in_bias)
    hidden = depthwise_conv3x3_nhwc(hidden, w.dw_weight, w.dw_bias)
    gate, value = hidden.chunk(2, dim=-1)
    if _records_graph([gate, value]):
        hidden = F.gelu(gate) * value
    else:  # inference: reuse the gate's memory
        hidden = F.gelu(gate).mul_(value)
    flat = hidden.reshape(-1, hidden.shape[-1])
    return linear(flat, w.out_weight, w.out_bias, residual=x.reshape(-1, shape[-1])).view(shape)


#: Rows per band of the no-grad path: a band's intermediates (≈ 18 rows × 640 px ×
#: 128 channels) stay in the last-level cache instead of streaming through memory.
BAND_ROWS = 16


def _block_tensors(x: Tensor, w: BlockWeights) -> list[Tensor]:
    return [t for t in (x, *vars(w.attn).values(), *vars(w.ffn).values()) if isinstance(t, Tensor)]


def _band(height: int, start: int, stop: int, halo: int) -> tuple[int, int]:
    return max(start - halo, 0), min(stop + halo, height)


def _restormer_block_banded(x: Tensor, w: BlockWeights, band_rows: int) -> Tensor:
    """:func:`restormer_block_nhwc` without autograd, streamed over bands of rows.

    Pass 1 computes q, k, v band by band (one halo row each side for the depthwise
    convolution), accumulates the Gram matrix and the q/k norms, and keeps only v.
    Pass 2 applies the attention and the feed-forward band by band. Memory traffic
    per block drops from ~50 to ~5 full-size tensors; the result equals the
    unbanded computation up to float rounding.
    """
    out = torch.empty_like(x)
    a, f = w.attn, w.ffn
    height, width, channels = x.shape[1:]
    mask = _head_mask(channels, a.heads, x.device)
    for image, target in zip(x, out):  # [H, W, D] each
        value = torch.empty_like(image)
        gram = image.new_zeros(channels, channels)
        q_sq = image.new_zeros(channels)
        k_sq = image.new_zeros(channels)
        for start in range(0, height, band_rows):
            stop = min(start + band_rows, height)
            lo, hi = _band(height, start, stop, 1)
            y = _layer_norm_groups(image[lo:hi].unsqueeze(0), w.norm_groups)
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
            lo, hi = _band(height, start, stop, 1)
            rows = hi - lo
            x1 = linear_nograd(value[lo:hi].reshape(-1, channels), mix_t.t(), a.proj_bias,
                               residual=image[lo:hi].reshape(-1, channels))
            x1 = x1.view(1, rows, width, channels)
            y = _layer_norm_groups(x1, w.norm_groups)
            hidden = linear_nograd(y, f.in_weight, f.in_bias)
            hidden = depthwise_conv3x3_nhwc(hidden, f.dw_weight, f.dw_bias)
            hidden = hidden[0, start - lo: stop - lo]
            gate, gated = hidden.chunk(2, dim=-1)  # strided views; work in place
            gate = torch.ops.aten.gelu_(gate).mul_(gated).reshape(-1, gate.shape[-1])
            residual = x1[0, start - lo: stop - lo].reshape(-1, channels)
            band_out = target[start:stop].view(-1, channels)
            band_out.copy_(linear_nograd(gate, f.out_weight, f.out_bias, residual=residual))
    return out


def _unpack(t: Tensor | None) -> tuple[Tensor | None, Tensor | None]:
    """``(primal, tangent)`` of a possibly dual tensor; ``(None, None)`` for ``None``."""
    if t is None:
        return None, None
    primal, tangent = forward_ad.unpack_dual(t)
    return primal, tangent


def _layer_norm_groups_jvp(x: Tensor, x_t: Tensor, groups: int) -> tuple[Tensor, Tensor]:
    """:func:`_layer_norm_groups` and its tangent along ``x_t``.

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


def _restormer_block_banded_jvp(x: Tensor, w: BlockWeights, band_rows: int) -> Tensor:
    """:func:`_restormer_block_banded` for dual inputs: primal and tangent in one stream.

    This is the meta step's JVP of F (``MetaLossLearner(hypergradient="forward")``).
    Forward-mode AD of the unbanded block runs every op on full-size tensors; here
    each band's primal and tangent are computed together while they are in cache
    (a linear layer's tangent ``x_t·Wᵀ + x·W_tᵀ`` costs two products), and the
    ``[D, D]`` attention algebra (norms, softmax, projection) is left to forward-mode
    AD on the small dual tensors. Returns a dual tensor; equals the unbanded block's
    forward-mode AD up to float rounding.
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
    mask = _head_mask(channels, w.attn.heads, x.device)
    groups = w.norm_groups
    for image, image_t, target, target_t in zip(x, x_t.contiguous(), out, out_t):
        value, value_t = torch.empty_like(image), torch.empty_like(image)
        zeros = image.new_zeros
        gram, gram_t = zeros(channels, channels), zeros(channels, channels)
        q_sq, q_sq_t, k_sq, k_sq_t = (zeros(channels) for _ in range(4))
        for start in range(0, height, band_rows):
            stop = min(start + band_rows, height)
            lo, hi = _band(height, start, stop, 1)
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
            lo, hi = _band(height, start, stop, 1)
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


def restormer_block_nhwc(x: Tensor, w: BlockWeights, band_rows: int | None = BAND_ROWS) -> Tensor:
    """One Restormer block (``x + attn(LN x)``, then ``x + ffn(LN x)``) on ``[B, H, W, D]``.

    Without reverse-mode autograd (``torch.no_grad`` / ``inference_mode``, or nothing
    requiring grad) it streams over bands of ``band_rows`` rows (``None``: never), also
    when forward-mode AD carries tangents (then primal and tangent stream together).
    """
    x = x.contiguous()
    tensors = _block_tensors(x, w)
    if band_rows is not None and not _records_graph(tensors):
        if _has_tangent(tensors):  # primal and tangent stream together
            return _restormer_block_banded_jvp(x, w, band_rows)
        return _restormer_block_banded(x, w, band_rows)
    x = attention_residual(x, _layer_norm_groups(x, w.norm_groups), w.attn)
    return gated_ffn_residual(x, _layer_norm_groups(x, w.norm_groups), w.ffn)


# ----------------------------------------------------------------------------- modules


class ChannelLayerNorm(nn.Module):
    """Layer norm over the channels of each pixel (public ``LayerNorm`` / ``WithBias_LayerNorm``).

    Holds ``weight`` (ones) and ``bias`` (zeros), ``[C]``; public keys are
    ``normX.body.weight`` / ``normX.body.bias``, ours ``normX.weight`` / ``normX.bias``.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: Tensor) -> Tensor:
        """Normalise a ``[B, H, W, C]`` tensor."""
        return F.layer_norm(x, (x.shape[-1],), self.weight, self.bias, eps=LAYER_NORM_EPS)


def _flat(conv: nn.Conv2d) -> Tensor:
    """A 1×1 convolution's weight as a ``[C_out, C_in]`` matrix (a view)."""
    return conv.weight.view(conv.weight.shape[0], conv.weight.shape[1])


def _fold_norm(conv: nn.Conv2d, norm: ChannelLayerNorm | None) -> tuple[Tensor, Tensor | None]:
    """``conv``'s 1×1 weight and bias with ``norm``'s affine folded in:
    ``W·(γ⊙x̂ + β) + b = (W·diag γ)·x̂ + (W·β + b)``."""
    weight, bias = _flat(conv), conv.bias
    if norm is not None:
        folded_bias = weight @ norm.bias
        bias = folded_bias if bias is None else bias + folded_bias
        weight = weight * norm.weight
    return weight, bias


class ChannelAttention(nn.Module):
    """Multi-Dconv-head transposed attention (public ``Attention``).

    Parameters (public names): ``temperature`` (ours ``[heads]``, public
    ``[heads, 1, 1]``), ``qkv`` (1×1, dim→3·dim), ``qkv_dwconv`` (depthwise 3×3),
    ``project_out`` (1×1). Runs through :func:`attention_residual`.
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
            proj_weight=_flat(self.project_out),
            proj_bias=self.project_out.bias,
        )


class GatedFeedForward(nn.Module):
    """Gated-Dconv feed-forward network (public ``FeedForward``).

    ``project_in`` (1×1, dim→2h), ``dwconv`` (depthwise 3×3), ``project_out``
    (1×1, h→dim) with ``h = int(dim · expansion)``.
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
            out_weight=_flat(self.project_out),
            out_bias=self.project_out.bias,
        )


class RestormerBlock(nn.Module):
    """Restormer transformer block (public ``TransformerBlock``): ``norm1, attn, norm2, ffn``.

    ``x ← x + attn(norm1(x))``; ``x ← x + ffn(norm2(x))``. Call it on a
    channels-last ``[B, H, W, C]`` tensor, or use :meth:`fused` with
    :func:`restormer_block_nhwc` / :func:`merge_block_pair`.
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
