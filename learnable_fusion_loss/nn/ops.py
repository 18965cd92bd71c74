"""Layout helpers and the CPU kernels the fast blocks are built from.

* ``[B, C, H, W]`` ↔ channels-last ``[B, H, W, C]`` (:func:`nhwc`, :func:`nchw_view`),
  a 1×1 convolution's weight as a matrix (:func:`conv1x1_matrix`);
* which autodiff is active on some tensors (:func:`records_graph`, :func:`has_tangent`),
  the test every fast path dispatches on;
* :func:`conv3x3` (and :func:`depthwise_conv3x3_nhwc`): ``F.conv2d`` with a double
  backward that skips the weight terms nobody asked for (:class:`_Conv3x3`);
* :func:`linear` (and :func:`linear_nograd`): a 1×1 convolution of the last axis with
  the residual addition fused, on oneDNN for float32 CPU tensors
  (:class:`_OneDNNLinear`).

Nothing here knows about any network; :mod:`learnable_fusion_loss.nn.restormer` is
written with these.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd import forward_ad

__all__ = [
    "conv1x1_matrix",
    "conv3x3",
    "depthwise_conv3x3_nhwc",
    "has_tangent",
    "linear",
    "linear_nograd",
    "nchw_view",
    "nhwc",
    "records_graph",
]


# ----------------------------------------------------------------------------- layout helpers
def nhwc(x: Tensor) -> Tensor:
    """``[B, C, H, W]`` → contiguous ``[B, H, W, C]`` (free for a channels-last tensor).

    >>> from learnable_fusion_loss.nn import nhwc
    >>> nhwc(torch.zeros(2, 3, 4, 5)).shape
    torch.Size([2, 4, 5, 3])
    """
    return x.permute(0, 2, 3, 1).contiguous()


def nchw_view(x: Tensor) -> Tensor:
    """``[B, H, W, C]`` → the ``[B, C, H, W]`` view of the same memory (channels-last).

    >>> from learnable_fusion_loss.nn import nchw_view, nhwc
    >>> x = torch.rand(2, 3, 4, 5)
    >>> view = nchw_view(nhwc(x))
    >>> view.shape, torch.equal(view, x), view.is_contiguous(memory_format=torch.channels_last)
    (torch.Size([2, 3, 4, 5]), True, True)
    """
    return x.permute(0, 3, 1, 2)


def conv1x1_matrix(conv: torch.nn.Conv2d) -> Tensor:
    """A 1×1 convolution's weight as a ``[C_out, C_in]`` matrix (a view).

    >>> conv1x1_matrix(torch.nn.Conv2d(3, 2, 1)).shape
    torch.Size([2, 3])
    """
    return conv.weight.view(conv.weight.shape[0], conv.weight.shape[1])


def records_graph(tensors: list[Tensor]) -> bool:
    """Whether reverse-mode autograd records an op on these tensors.

    >>> from learnable_fusion_loss.nn.ops import records_graph
    >>> w = torch.ones(2, requires_grad=True)
    >>> records_graph([w]), records_graph([w.detach()])
    (True, False)
    >>> with torch.no_grad():
    ...     records_graph([w])
    False
    """
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def has_tangent(tensors: list[Tensor]) -> bool:
    """Whether forward-mode AD (``torch.autograd.forward_ad``) carries a tangent in.

    Forward-mode AD runs even under ``no_grad``; the oneDNN op and the banded path's
    in-place and ``out=`` kernels would drop the tangents.

    >>> from torch.autograd import forward_ad
    >>> from learnable_fusion_loss.nn.ops import has_tangent
    >>> x = torch.zeros(3)
    >>> with forward_ad.dual_level():
    ...     has_tangent([x]), has_tangent([forward_ad.make_dual(x, torch.ones(3))])
    (False, True)
    """
    return any(forward_ad.unpack_dual(t).tangent is not None for t in tensors)


# ----------------------------------------------------------------------------- 3×3 convolution
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

    >>> from learnable_fusion_loss.nn import conv3x3
    >>> x, w = torch.rand(1, 4, 5, 6), torch.rand(6, 2, 3, 3)
    >>> y = conv3x3(x, w, groups=2)
    >>> y.shape, torch.allclose(y, F.conv2d(x, w, padding=1, groups=2))
    (torch.Size([1, 6, 5, 6]), True)
    """
    if not records_graph([x, weight]):
        return F.conv2d(x, weight, bias, padding=1, groups=groups)
    y = _Conv3x3.apply(x, weight, groups)
    return y if bias is None else y + bias.view(1, -1, 1, 1)


def depthwise_conv3x3_nhwc(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """Depthwise 3×3 convolution (zero padding 1) of a ``[B, H, W, C]`` tensor.

    ``weight`` is ``[C, 1, 3, 3]``; the result is a ``[B, H, W, C]`` view of
    channels-last memory (no copy either way).

    >>> from learnable_fusion_loss.nn import depthwise_conv3x3_nhwc
    >>> x, w = torch.rand(1, 5, 6, 4), torch.rand(4, 1, 3, 3)
    >>> y = depthwise_conv3x3_nhwc(x, w, None)
    >>> expected = F.conv2d(x.permute(0, 3, 1, 2), w, padding=1, groups=4).permute(0, 2, 3, 1)
    >>> y.shape, torch.allclose(y, expected)
    (torch.Size([1, 5, 6, 4]), True)
    """
    y = conv3x3(nchw_view(x), weight, bias, groups=weight.shape[0])
    return y.permute(0, 2, 3, 1)


# ----------------------------------------------------------------------------- 1×1 convolution
#: oneDNN's fp32 matmul (the primitive PyTorch's own compiled CPU code calls). Why:
#: ``F.linear``/``addmm`` run on MKL, which takes its AVX2 kernels on AMD CPUs, while
#: oneDNN uses AVX-512 there: 2–3× faster for the 1×1 convolutions and their input
#: gradients here, on the EPYC machines this was developed on. (For the weight
#: gradient, a reduction over the pixels, MKL is faster and keeps it.) A private op,
#: so it is probed, not assumed. Read at every call, so setting it here (tests do)
#: switches every caller to ``F.linear``/``addmm``.
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

    The banded paths of :func:`~learnable_fusion_loss.nn.restormer_block_nhwc` call
    it directly.

    >>> from learnable_fusion_loss.nn import linear_nograd
    >>> x, w, r = torch.rand(2, 3, 4), torch.rand(5, 4), torch.rand(2, 3, 5)
    >>> torch.allclose(linear_nograd(x, w, residual=r), r + x @ w.t(), atol=1e-6)
    True
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

    >>> from learnable_fusion_loss.nn import linear
    >>> x, w, b = torch.rand(2, 3, 4), torch.rand(5, 4), torch.rand(5)
    >>> y = linear(x, w, b)
    >>> y.shape, torch.allclose(y, F.linear(x, w, b), atol=1e-6)
    (torch.Size([2, 3, 5]), True)
    """
    tensors = [t for t in (x, weight, bias, residual) if t is not None]
    if not _onednn_eligible(x) or has_tangent(tensors):
        return _linear_native(x, weight, bias, residual)
    if records_graph(tensors):
        return _OneDNNLinear.apply(x, weight, bias, residual)
    return linear_nograd(x, weight, bias, residual)
