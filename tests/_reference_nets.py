"""Plain NCHW reference implementations of TDFusion's ReFusion and LPN (test oracle).

Written from the architecture description of the public code (HaowenBai/TDFusion,
``nets/ReFusion.py``) in the most direct way: NCHW tensors, a hand-written layer
norm over the channels, per-head reshapes for the transposed attention, and each
convolution called as a module. No fusion, no layout tricks. The parameter layout
is the PUBLIC one: every convolution is registered under two names (``X.weight``
and ``X.conv.weight``, the same tensor), layer norms live under ``.body``,
temperatures are ``[heads, 1, 1]``; ``state_dict()`` therefore has exactly the
keys of ``/work/shared/reference/tdfusion_official_state_dict_keys.json``.

Also used by ``benchmarks/fusion_net.py`` as the "straightforward implementation"
baseline.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class AliasedConv(nn.Module):
    """A convolution whose weight is also registered as ``self.weight`` (public key layout)."""

    def __init__(self, cin: int, cout: int, kernel: int, groups: int = 1, bias: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, padding=kernel // 2, groups=groups, bias=bias)
        self.weight = self.conv.weight
        if self.conv.bias is not None:
            self.bias = self.conv.bias

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class BodyNorm(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))


class ChannelNorm(nn.Module):
    """Per-pixel layer norm over C of an NCHW tensor, computed by hand."""

    def __init__(self, dim: int):
        super().__init__()
        self.body = BodyNorm(dim)

    def forward(self, x: Tensor) -> Tensor:
        mean = x.mean(dim=1, keepdim=True)
        var = ((x - mean) ** 2).mean(dim=1, keepdim=True)
        x = (x - mean) / torch.sqrt(var + 1e-5)
        return x * self.body.weight.view(1, -1, 1, 1) + self.body.bias.view(1, -1, 1, 1)


def split_heads(x: Tensor, heads: int) -> Tensor:
    b, c, h, w = x.shape
    return x.reshape(b, heads, c // heads, h * w)


def merge_heads(x: Tensor, h: int, w: int) -> Tensor:
    b, heads, c, _ = x.shape
    return x.reshape(b, heads * c, h, w)


def transposed_attention(
    q: Tensor, k: Tensor, v: Tensor, heads: int, temperature: Tensor
) -> Tensor:
    """softmax(τ · normalize(q) normalize(k)ᵀ) v per head, over channels; NCHW in and out."""
    h, w = q.shape[-2:]
    q = F.normalize(split_heads(q, heads), dim=-1)
    k = F.normalize(split_heads(k, heads), dim=-1)
    v = split_heads(v, heads)
    attn = torch.softmax(q @ k.transpose(-2, -1) * temperature, dim=-1)
    return merge_heads(attn @ v, h, w)


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, bias: bool = False):
        super().__init__()
        self.heads = heads
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.qkv = AliasedConv(dim, dim * 3, 1, bias=bias)
        self.qkv_dwconv = AliasedConv(dim * 3, dim * 3, 3, groups=dim * 3, bias=bias)
        self.project_out = AliasedConv(dim, dim, 1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = self.qkv_dwconv(self.qkv(x)).chunk(3, dim=1)
        return self.project_out(transposed_attention(q, k, v, self.heads, self.temperature))


class FeedForward(nn.Module):
    def __init__(self, dim: int, factor: float = 2, bias: bool = False):
        super().__init__()
        hidden = int(dim * factor)
        self.project_in = AliasedConv(dim, hidden * 2, 1, bias=bias)
        self.dwconv = AliasedConv(hidden * 2, hidden * 2, 3, groups=hidden * 2, bias=bias)
        self.project_out = AliasedConv(hidden, dim, 1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        gate, value = self.dwconv(self.project_in(x)).chunk(2, dim=1)
        return self.project_out(F.gelu(gate) * value)


class TransformerBlock(nn.Module):
    def __init__(self, dim: int, heads: int, factor: float = 2, bias: bool = False):
        super().__init__()
        self.norm1 = ChannelNorm(dim)
        self.attn = Attention(dim, heads, bias)
        self.norm2 = ChannelNorm(dim)
        self.ffn = FeedForward(dim, factor, bias)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))


class PReLUParam(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.full((1,), 0.25))

    def forward(self, x: Tensor) -> Tensor:
        return torch.where(x >= 0, x, self.weight * x)


class AFM(nn.Module):
    def __init__(self, dim: int = 16, heads: int = 8, bias: bool = False):
        super().__init__()
        self.heads = heads
        self.temperature1 = nn.Parameter(torch.ones(heads, 1, 1))
        self.temperature2 = nn.Parameter(torch.ones(heads, 1, 1))
        self.qkv1 = AliasedConv(dim, dim * 3, 1, bias=bias)
        self.qkv1_dwconv = AliasedConv(dim * 3, dim * 3, 3, groups=dim * 3, bias=bias)
        self.qkv2 = AliasedConv(dim, dim * 3, 1, bias=bias)
        self.qkv2_dwconv = AliasedConv(dim * 3, dim * 3, 3, groups=dim * 3, bias=bias)
        self.project_mid1 = AliasedConv(dim, dim, 1, bias=bias)
        self.project_mid2 = AliasedConv(dim, dim, 1, bias=bias)
        self.project_E = AliasedConv(dim * 2, dim * 8, 1, bias=bias)
        self.project_E_d = AliasedConv(dim * 8, dim * 8, 3, groups=dim * 8, bias=bias)
        self.project_E1 = AliasedConv(dim, dim * 4, 1, bias=bias)
        self.project_E1_d = AliasedConv(dim * 4, dim * 4, 3, groups=dim * 4, bias=bias)
        self.project_E2 = AliasedConv(dim, dim * 4, 1, bias=bias)
        self.project_E2_d = AliasedConv(dim * 4, dim * 4, 3, groups=dim * 4, bias=bias)
        self.project_out1 = AliasedConv(dim * 4, dim * 2, 1, bias=bias)
        self.project_out2 = AliasedConv(dim * 4, dim * 2, 1, bias=bias)

    def forward(self, x1: Tensor, x2: Tensor) -> Tensor:
        q1, k1, v1 = self.qkv1_dwconv(self.qkv1(x1)).chunk(3, dim=1)
        q2, k2, v2 = self.qkv2_dwconv(self.qkv2(x2)).chunk(3, dim=1)
        # cross attention: branch 1 is queried by branch 2 and vice versa
        out1 = transposed_attention(q2, k1, v1, self.heads, self.temperature1)
        out2 = transposed_attention(q1, k2, v2, self.heads, self.temperature2)
        x1 = x1 + self.project_mid1(out1)
        x2 = x2 + self.project_mid2(out2)
        both = torch.cat([x1, x2], dim=1)
        g1, g2 = self.project_E_d(self.project_E(both)).chunk(2, dim=1)
        y1 = F.gelu(g1) * self.project_E1_d(self.project_E1(x1))
        y2 = F.gelu(g2) * self.project_E2_d(self.project_E2(x2))
        return both + self.project_out1(y1) + self.project_out2(y2)


class ReferenceReFusion(nn.Module):
    """ReFusion in plain NCHW; ``forward(a, b)``."""

    def __init__(self, dim=16, num_blocks=2, heads=8, ffn_expansion_factor=2, bias=False):
        super().__init__()
        self.project_in_1 = AliasedConv(1, dim, 3, bias=bias)
        self.project_in_2 = AliasedConv(1, dim, 3, bias=bias)
        make = lambda d: TransformerBlock(d, heads, ffn_expansion_factor, bias)  # noqa: E731
        self.encoder1 = nn.ModuleList([make(dim) for _ in range(num_blocks)])
        self.encoder2 = nn.ModuleList([make(dim) for _ in range(num_blocks)])
        self.FM = AFM(dim, heads, bias)
        self.decoder = nn.ModuleList([make(dim * 2) for _ in range(num_blocks)])
        self.project_out_0 = AliasedConv(dim * 2, dim, 3, bias=bias)
        self.project_out_1 = AliasedConv(dim, 1, 3, bias=bias)

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        x1, x2 = self.project_in_1(a), self.project_in_2(b)
        for block in self.encoder1:
            x1 = block(x1)
        for block in self.encoder2:
            x2 = block(x2)
        out = self.FM(x1, x2)
        for block in self.decoder:
            out = block(out)
        out = F.leaky_relu(self.project_out_0(out), 0.01)
        return torch.sigmoid(self.project_out_1(out))


class ReferenceLPN(nn.Module):
    """LPN in plain NCHW; ``forward(a, b)`` → softmax weights ``[B, 2, H, W]``."""

    def __init__(self, dim=16, num_blocks=2, heads=8, ffn_expansion_factor=2, bias=False):
        super().__init__()
        self.patch_embed1 = AliasedConv(1, dim, 3, bias=bias)
        self.patch_embed2 = AliasedConv(1, dim, 3, bias=bias)
        make = lambda d: TransformerBlock(d, heads, ffn_expansion_factor, bias)  # noqa: E731
        self.encoder1 = nn.ModuleList([make(dim) for _ in range(num_blocks)])
        self.encoder2 = nn.ModuleList([make(dim) for _ in range(num_blocks)])
        self.encoder3 = nn.ModuleList([make(dim * 2) for _ in range(num_blocks)])
        self.out1 = AliasedConv(dim * 2, dim, 3, bias=bias)
        self.out2 = PReLUParam()
        self.out3 = AliasedConv(dim, 2, 3, bias=bias)

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        x1, x2 = self.patch_embed1(a), self.patch_embed2(b)
        for block in self.encoder1:
            x1 = block(x1)
        for block in self.encoder2:
            x2 = block(x2)
        out = torch.cat([x1, x2], dim=1)
        for block in self.encoder3:
            out = block(out)
        return torch.softmax(self.out3(self.out2(self.out1(out))), dim=1)


def randomize_(model: nn.Module, seed: int = 0, scale: float = 0.3) -> nn.Module:
    """Fill every parameter with seeded random values (so untrained defaults hide nothing).

    Layer-norm scales, temperatures and the PReLU slope get values around 1 / 0.25;
    everything else ``N(0, scale²)``. Works on any module (keys sorted for determinism).
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters(), key=lambda item: item[0]):
            noise = torch.randn(p.shape, generator=generator, dtype=torch.float64).to(p.dtype)
            if "temperature" in name or name.endswith(("norm1.weight", "norm2.weight")) or \
                    name.endswith(("body.weight",)):
                p.copy_(1.0 + 0.3 * noise)
            elif name.startswith("out2"):
                p.copy_(0.25 + 0.1 * noise)
            else:
                p.copy_(scale * noise)
    return model
