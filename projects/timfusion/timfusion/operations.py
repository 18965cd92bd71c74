"""TIMFusion's searched operations (notes §2.1), built from genotype op names.

An op name is ``Name_k_d`` (``Name_k`` for the attention ops, ``d = 1``); every op
maps ``C`` channels to ``C`` channels. Convolutions are bias-free (the released
``BasicConv``: no BN, no activation, padding from :data:`PADDING`), BN is affine and
every PReLU has a single slope; these conventions reproduce the notes' analytic
parameter counts exactly (see ``projects/timfusion/README.md``).

All ops are twice differentiable and support forward-mode AD.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = [
    "PADDING",
    "OP_NAMES",
    "BasicConv",
    "ResidualBlock",
    "DenseBlock",
    "DilConv",
    "SepConv",
    "ECAAttention",
    "SpatialAttention",
    "parse_op_name",
    "make_op",
]

#: Padding of a ``k×k`` convolution with dilation ``d`` (the released table).
PADDING: dict[tuple[int, int], int] = {(3, 1): 1, (3, 2): 2, (5, 1): 2, (5, 2): 4, (7, 1): 3, (7, 2): 6}

#: Op-name prefixes and whether they take a dilation (``Name_k_d``) or not (``Name_k``).
OP_NAMES: dict[str, bool] = {
    "Residualblocks": True,
    "Denseblocks": True,
    "DilConv": True,
    "SepConv": True,
    "ECAattention": False,
    "SPAattention": False,
}


class BasicConv(nn.Conv2d):
    """A bias-free ``k×k`` convolution, dilation ``d``, size-keeping padding from :data:`PADDING`.

    >>> import torch
    >>> BasicConv(4, 4, 5, dilation=2, groups=4)(torch.rand(1, 4, 9, 7)).shape
    torch.Size([1, 4, 9, 7])
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int = 1,
                 groups: int = 1, stride: int = 1) -> None:
        if (kernel_size, dilation) not in PADDING and kernel_size != 1:
            raise ValueError(f"no padding known for kernel {kernel_size}, dilation {dilation}; "
                             f"known (k, d): {sorted(PADDING)} and k = 1")
        padding = 0 if kernel_size == 1 else PADDING[(kernel_size, dilation)]
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                         dilation=dilation, groups=groups, bias=False)


class ResidualBlock(nn.Module):
    """``Residualblocks_k_d``: ``x + [dw k×k dil d; dw 3×3 dil 2; 1×1; BN; PReLU](x)``.

    >>> import torch
    >>> ResidualBlock(8, 5, 1)(torch.rand(2, 8, 6, 10)).shape
    torch.Size([2, 8, 6, 10])
    """

    def __init__(self, channels: int, kernel_size: int = 3, dilation: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(
            BasicConv(channels, channels, kernel_size, dilation, groups=channels),
            BasicConv(channels, channels, 3, 2, groups=channels),
            BasicConv(channels, channels, 1),
            nn.BatchNorm2d(channels),
            nn.PReLU(),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class DenseBlock(nn.Module):
    """``Denseblocks_k_d``: three densely connected grouped convs, ``x + 0.333·x3``.

    ``x1 = P(dw k×k(x))``, ``x2 = P(conv(cat[x, x1]))`` (2C→C, groups C),
    ``x3 = P(conv(cat[x, x1, x2]))`` (3C→C, groups C); ``P`` is one shared PReLU. The
    two grouped convs use the op's ``k×k``, dilation ``d`` (the notes do not give their
    kernel; it matters only for ``k ≠ 3`` or ``d ≠ 1``, which no released genotype uses).

    >>> import torch
    >>> DenseBlock(8, 3, 1)(torch.rand(1, 8, 5, 7)).shape
    torch.Size([1, 8, 5, 7])
    """

    def __init__(self, channels: int, kernel_size: int = 3, dilation: int = 1) -> None:
        super().__init__()
        self.conv1 = BasicConv(channels, channels, kernel_size, dilation, groups=channels)
        self.conv2 = BasicConv(2 * channels, channels, kernel_size, dilation, groups=channels)
        self.conv3 = BasicConv(3 * channels, channels, kernel_size, dilation, groups=channels)
        self.act = nn.PReLU()

    def forward(self, x: Tensor) -> Tensor:
        x1 = self.act(self.conv1(x))
        x2 = self.act(self.conv2(torch.cat([x, x1], dim=1)))
        x3 = self.act(self.conv3(torch.cat([x, x1, x2], dim=1)))
        return x + 0.333 * x3


class DilConv(nn.Module):
    """``DilConv_k_d``: ``x + [ReLU; dw k×k dil d; 1×1; BN](x)``.

    >>> import torch
    >>> DilConv(8, 3, 2)(torch.rand(1, 8, 5, 7)).shape
    torch.Size([1, 8, 5, 7])
    """

    def __init__(self, channels: int, kernel_size: int = 3, dilation: int = 2) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReLU(inplace=False),
            BasicConv(channels, channels, kernel_size, dilation, groups=channels),
            BasicConv(channels, channels, 1),
            nn.BatchNorm2d(channels),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class SepConv(nn.Sequential):
    """``SepConv_k_s``: ``[ReLU; dw k×k stride s, pad 1; 1×1; BN; ReLU; dw k×k pad 1; 1×1; BN]``.

    No residual. The second number of the name is the **stride** of the first depthwise
    conv, and the padding is 1 whatever ``k`` (as released), so only ``k = 3, s = 1``
    keeps the size (the only form any genotype uses).

    >>> import torch
    >>> SepConv(8, 3, 1)(torch.rand(1, 8, 5, 7)).shape
    torch.Size([1, 8, 5, 7])
    """

    def __init__(self, channels: int, kernel_size: int = 3, stride: int = 1) -> None:
        def dw(s: int) -> nn.Conv2d:
            return nn.Conv2d(channels, channels, kernel_size, stride=s, padding=1, groups=channels, bias=False)

        super().__init__(
            nn.ReLU(inplace=False), dw(stride), BasicConv(channels, channels, 1), nn.BatchNorm2d(channels),
            nn.ReLU(inplace=False), dw(1), BasicConv(channels, channels, 1), nn.BatchNorm2d(channels),
        )


class ECAAttention(nn.Module):
    """``ECAattention_k``: ECA channel attention, then a bias-free 3×3 conv and PReLU; no residual.

    ECA: global average pool → Conv1d of size ``k`` across channels (no bias) → sigmoid
    → ``x · w``.

    >>> import torch
    >>> ECAAttention(8, 3)(torch.rand(1, 8, 5, 7)).shape
    torch.Size([1, 8, 5, 7])
    """

    def __init__(self, channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.eca = nn.Conv1d(1, 1, kernel_size, padding=(kernel_size - 1) // 2, bias=False)
        self.conv = BasicConv(channels, channels, 3)
        self.act = nn.PReLU()

    def forward(self, x: Tensor) -> Tensor:
        w = x.mean(dim=(2, 3))  # [B, C]
        w = torch.sigmoid(self.eca(w.unsqueeze(1))).squeeze(1)  # Conv1d across channels
        return self.act(self.conv(x * w[:, :, None, None]))


class SpatialAttention(nn.Module):
    """``SPAattention_k``: ``x · σ(conv k×k (2→1)(cat[max_c x, mean_c x]))``; nothing else.

    >>> import torch
    >>> SpatialAttention(8, 3)(torch.rand(1, 8, 5, 7)).shape
    torch.Size([1, 8, 5, 7])
    """

    def __init__(self, channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.conv = BasicConv(2, 1, kernel_size)

    def forward(self, x: Tensor) -> Tensor:
        pooled = torch.cat([x.amax(dim=1, keepdim=True), x.mean(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.conv(pooled))


_CLASSES: dict[str, type[nn.Module]] = {
    "Residualblocks": ResidualBlock,
    "Denseblocks": DenseBlock,
    "DilConv": DilConv,
    "SepConv": SepConv,
    "ECAattention": ECAAttention,
    "SPAattention": SpatialAttention,
}


def parse_op_name(name: str) -> tuple[str, tuple[int, ...]]:
    """Split an op name into its prefix and integer arguments, checking both.

    >>> parse_op_name("Residualblocks_5_1"), parse_op_name("SPAattention_3")
    (('Residualblocks', (5, 1)), ('SPAattention', (3,)))
    >>> parse_op_name("Zero_3_1")
    Traceback (most recent call last):
        ...
    ValueError: unknown operation 'Zero_3_1'; valid forms: Denseblocks_k_d, DilConv_k_d, ...
    """
    prefix, *rest = str(name).split("_")
    forms = ", ".join(f"{p}_k_d" if dil else f"{p}_k" for p, dil in sorted(OP_NAMES.items()))
    if prefix not in OP_NAMES or len(rest) != (2 if OP_NAMES[prefix] else 1) or not all(r.isdigit() for r in rest):
        raise ValueError(f"unknown operation {name!r}; valid forms: {forms}")
    return prefix, tuple(int(r) for r in rest)


def make_op(name: str, channels: int) -> nn.Module:
    """Build the op ``name`` (e.g. ``"DilConv_3_2"``) for ``channels`` channels.

    >>> import torch
    >>> op = make_op("Denseblocks_3_1", 8)
    >>> type(op).__name__, op(torch.rand(1, 8, 4, 4)).shape
    ('DenseBlock', torch.Size([1, 8, 4, 4]))
    """
    prefix, args = parse_op_name(name)
    return _CLASSES[prefix](channels, *args)
