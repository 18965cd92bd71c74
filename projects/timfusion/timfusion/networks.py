"""TIMFusion's two stages and the light model (notes §2.3), built from genotypes.

* :class:`TIMFusionStage1` - ``Network_Fusion9_Meta``: stem, ``Cell_Fusion``
  (multi-scale) and ``Cell_Chain2`` from one genotype (``fusion_M``), linear head.
* :class:`TIMFusionLight` - the "light" model: the same stem and head around two
  ``Cell_Chain2`` cells of ``fusion_light``.
* :class:`TIMFusionRefineIVIF` - ``Network_Fusion9_3``: two branches (one per
  source, each with the stage-1 output), two auxiliary tanh heads, a spatial mask
  and a linear head on the masked mix.
* :class:`TIMFusionRefineMedical` - ``Network_Fusion9_2``: the same branches, no
  mask, ``tanh(head(cat[Fa, Fb]))``.

The two-stage models with the library's ``forward(a, b) -> fused`` are in
:mod:`.models`. Genotypes are a released name or an explicit structure
(:func:`~.genotypes.resolve_genotype`). ``C = 48`` by default.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from learnable_fusion_loss._checks import check_image, check_same_shape
from learnable_fusion_loss.registry import MODELS

from .cells import CellChain2, CellFusion
from .genotypes import GenotypeSpec, resolve_genotype
from .padding import pad_to_multiple

__all__ = [
    "ConvLayer",
    "FusionHead",
    "TIMFusionStage1",
    "TIMFusionLight",
    "TIMFusionRefineIVIF",
    "TIMFusionRefineMedical",
    "check_pair",
]


def check_pair(a: Tensor, b: Tensor) -> None:
    """Both sources must be ``[B, 1, H, W]`` floating tensors of one shape.

    >>> import torch
    >>> check_pair(torch.rand(1, 1, 4, 4), torch.rand(1, 1, 4, 5))
    Traceback (most recent call last):
        ...
    ValueError: shape mismatch between sources: a=(1, 1, 4, 4), b=(1, 1, 4, 5)
    """
    check_image("a", a)
    check_image("b", b)
    check_same_shape(a=a, b=b)


class ConvLayer(nn.Sequential):
    """Reflection padding ``k // 2`` and a ``k×k`` convolution with bias (the released ``ConvLayer``).

    >>> import torch
    >>> ConvLayer(2, 4, 3)(torch.rand(1, 2, 5, 7)).shape
    torch.Size([1, 4, 5, 7])
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        super().__init__(nn.ReflectionPad2d(kernel_size // 2), nn.Conv2d(in_channels, out_channels, kernel_size))


class FusionHead(nn.Sequential):
    """``3×3 in→C``, [PReLU], ``3×3 C→C/2``, ``1×1 C/2→1`` (bias, reflect padding).

    ``activation=True`` is the stage-1 and auxiliary head; ``False`` the released
    ``head4`` (three convolutions, no activation).

    >>> import torch
    >>> FusionHead(8, 8)(torch.rand(1, 8, 5, 5)).shape
    torch.Size([1, 1, 5, 5])
    """

    def __init__(self, in_channels: int, channels: int, activation: bool = True) -> None:
        layers: list[nn.Module] = [ConvLayer(in_channels, channels, 3)]
        if activation:
            layers.append(nn.PReLU())
        layers += [ConvLayer(channels, channels // 2, 3), ConvLayer(channels // 2, 1, 1)]
        super().__init__(*layers)


def _stem(in_channels: int, channels: int, norm: bool) -> nn.Sequential:
    layers: list[nn.Module] = [ConvLayer(in_channels, 2 * channels, 3), nn.PReLU(),
                               ConvLayer(2 * channels, channels, 3)]
    if norm:
        layers.append(nn.BatchNorm2d(channels))
    layers.append(nn.PReLU())
    return nn.Sequential(*layers)


_CELLS = {"fusion": CellFusion, "chain": CellChain2}


@MODELS.register_module()
class TIMFusionStage1(nn.Module):
    """Stage 1 (``Network_Fusion9_Meta``): multi-scale, feature-level fusion of two grey images.

    ``stem(cat[x1, x2])`` (3×3 → 2C, PReLU, 3×3 → C, PReLU), one cell per entry of
    ``cells`` (``"fusion"`` = ``Cell_Fusion`` with ``genotype.chain_fusion``,
    ``"chain"`` = ``Cell_Chain2`` with ``genotype.normal``), head 3×3 C, PReLU,
    3×3 C/2, 1×1 → 1; **linear output** (not clamped). ``forward(a, b)`` puts ``a``
    first (``x1 = a``) unless ``swap_inputs``; inputs are reflect-padded to
    ``pad_multiple`` (4, needed by ``Cell_Fusion``) and the output cropped back.
    994,917 parameters with the defaults.

    >>> import torch
    >>> net = TIMFusionStage1(channels=8)
    >>> net(torch.rand(1, 1, 13, 10), torch.rand(1, 1, 13, 10)).shape
    torch.Size([1, 1, 13, 10])
    >>> sum(p.numel() for p in TIMFusionStage1().parameters())
    994917
    """

    def __init__(self, genotype: GenotypeSpec = "fusion_M", channels: int = 48,
                 cells: Sequence[str] = ("fusion", "chain"), swap_inputs: bool = False,
                 pad_multiple: int = 4) -> None:
        super().__init__()
        self.genotype = resolve_genotype(genotype)
        unknown = [c for c in cells if c not in _CELLS]
        if unknown or not cells:
            raise ValueError(f"cells must be a non-empty list of 'fusion'/'chain', got {list(cells)}")
        if "fusion" in cells and pad_multiple % 4:
            raise ValueError(f"a 'fusion' cell needs pad_multiple divisible by 4, got {pad_multiple}")
        self.swap_inputs, self.pad_multiple = bool(swap_inputs), int(pad_multiple)
        self.stem = _stem(2, channels, norm=False)
        self.cells = nn.ModuleList(_CELLS[c](self.genotype.ops(c), channels) for c in cells)
        self.head = FusionHead(channels, channels, activation=True)

    def features(self, x1: Tensor, x2: Tensor) -> Tensor:
        """The released ``forward(x1, x2)`` on sides already divisible by ``pad_multiple``."""
        x = self.stem(torch.cat([x1, x2], dim=1))
        for cell in self.cells:
            x = cell(x)
        return self.head(x)

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        """Fuse ``[B, 1, H, W]`` sources (any size) into ``[B, 1, H, W]`` (linear, unclamped)."""
        check_pair(a, b)
        x1, x2 = (b, a) if self.swap_inputs else (a, b)
        pair, pad = pad_to_multiple(torch.cat([x1, x2], dim=1), self.pad_multiple)
        return pad.crop(self.features(pair[:, :1], pair[:, 1:]))


@MODELS.register_module()
class TIMFusionLight(TIMFusionStage1):
    """The "light" model: stage 1 with two ``Cell_Chain2`` cells of ``fusion_light``.

    Released call order ``model_1(VIS, IR)``: with ``a = IR, b = VIS`` the defaults
    swap the inputs. No ``Cell_Fusion``, so no padding is needed (sides >= 2).
    127,358 parameters with the defaults.

    >>> import torch
    >>> net = TIMFusionLight(channels=8)
    >>> net(torch.rand(1, 1, 7, 9), torch.rand(1, 1, 7, 9)).shape
    torch.Size([1, 1, 7, 9])
    >>> sum(p.numel() for p in TIMFusionLight().parameters())
    127358
    """

    def __init__(self, genotype: GenotypeSpec = "fusion_light", channels: int = 48,
                 cells: Sequence[str] = ("chain", "chain"), swap_inputs: bool = True,
                 pad_multiple: int = 1) -> None:
        super().__init__(genotype, channels, cells, swap_inputs, pad_multiple)


class _Branch(nn.Module):
    """One stage-2 branch: ``stem(cat[x, f])`` (with BN), then ``num_cells`` ``Cell_Chain2``."""

    def __init__(self, genotype: GenotypeSpec, channels: int, num_cells: int) -> None:
        super().__init__()
        self.genotype = resolve_genotype(genotype)
        self.stem = _stem(2, channels, norm=True)
        self.cells = nn.Sequential(*(CellChain2(self.genotype.ops("chain"), channels) for _ in range(num_cells)))

    def forward(self, x: Tensor, f: Tensor) -> Tensor:
        return self.cells(self.stem(torch.cat([x, f], dim=1)))


class _Refine(nn.Module):
    def __init__(self, first_genotype: GenotypeSpec, second_genotype: GenotypeSpec, channels: int,
                 num_cells: int, aux_heads: bool, head_in: int) -> None:
        super().__init__()
        self.first = _Branch(first_genotype, channels, num_cells)
        self.second = _Branch(second_genotype, channels, num_cells)
        self.aux_heads = bool(aux_heads)
        if aux_heads:
            self.head_first = FusionHead(channels, channels, activation=True)
            self.head_second = FusionHead(channels, channels, activation=True)
        self.head = FusionHead(head_in, channels, activation=False)

    def forward(self, x1: Tensor, x2: Tensor, f: Tensor) -> Tensor:
        """The refined image ``[B, 1, H, W]`` of ``x1`` (first branch), ``x2`` and stage 1's ``f``."""
        return self.forward_with_aux(x1, x2, f)["fused"]

    def forward_with_aux(self, x1: Tensor, x2: Tensor, f: Tensor) -> dict[str, Tensor]:
        """``fused`` plus ``aux_first``/``aux_second`` (tanh heads, if built) and ``mask`` (IVIF)."""
        fa, fb = self.first(x1, f), self.second(x2, f)
        out = self._merge(fa, fb)
        if self.aux_heads:
            out["aux_first"] = torch.tanh(self.head_first(fa))
            out["aux_second"] = torch.tanh(self.head_second(fb))
        return out

    def _merge(self, fa: Tensor, fb: Tensor) -> dict[str, Tensor]:
        raise NotImplementedError


@MODELS.register_module()
class TIMFusionRefineIVIF(_Refine):
    """IVIF stage 2 (``Network_Fusion9_3``): object-level refinement with a spatial mask.

    ``Fa = cells(stem2(cat[x1, f]))`` with ``first_genotype``, ``Fb`` likewise from
    ``x2`` with ``second_genotype``; auxiliary outputs ``tanh(head(Fa))``,
    ``tanh(head(Fb))``; mask ``m = σ(1×1 (3→1, no bias)([max_c, max_c, mean_c](Fa)))``;
    ``fused = head4(m·Fa + (1−m)·Fb)`` (no activation). The released script calls it
    as ``(VIS, IR, f1)``: the first branch (``fusion_vis_proposed``, the mask's
    source) takes VIS. 237,308 parameters with the defaults.

    >>> import torch
    >>> net = TIMFusionRefineIVIF(channels=8)
    >>> x = torch.rand(1, 1, 6, 7)
    >>> sorted(net.forward_with_aux(x, x, x))
    ['aux_first', 'aux_second', 'fused', 'mask']
    >>> sum(p.numel() for p in TIMFusionRefineIVIF().parameters())
    237308
    """

    def __init__(self, first_genotype: GenotypeSpec = "fusion_vis_proposed",
                 second_genotype: GenotypeSpec = "fusion_ir_proposed", channels: int = 48,
                 num_cells: int = 2, aux_heads: bool = True) -> None:
        super().__init__(first_genotype, second_genotype, channels, num_cells, aux_heads, head_in=channels)
        self.mask_conv = nn.Conv2d(3, 1, 1, bias=False)

    def _merge(self, fa: Tensor, fb: Tensor) -> dict[str, Tensor]:
        peak = fa.amax(dim=1, keepdim=True)
        mask = torch.sigmoid(self.mask_conv(torch.cat([peak, peak, fa.mean(dim=1, keepdim=True)], dim=1)))
        return {"fused": self.head(mask * fa + (1 - mask) * fb), "mask": mask}


@MODELS.register_module()
class TIMFusionRefineMedical(_Refine):
    """Medical stage 2 (``Network_Fusion9_2``): the IVIF branches, no mask, ``tanh(head4(cat[Fa, Fb]))``.

    ``head4`` here takes ``2C`` channels (3×3 2C→C, 3×3 C→C/2, 1×1 → 1). Whether the
    released medical net has the two auxiliary heads is not known; they are built by
    default (``aux_heads=False`` drops them). 235,059 parameters with the defaults and
    the MRI-CT genotypes.

    >>> import torch
    >>> net = TIMFusionRefineMedical("fusion_ct", "fusion_mri", channels=8)
    >>> x = torch.rand(1, 1, 6, 7)
    >>> y = net(x, x, x)
    >>> y.shape, bool(y.abs().max() <= 1)
    (torch.Size([1, 1, 6, 7]), True)
    """

    def __init__(self, first_genotype: GenotypeSpec = "fusion_ct", second_genotype: GenotypeSpec = "fusion_mri",
                 channels: int = 48, num_cells: int = 2, aux_heads: bool = True) -> None:
        super().__init__(first_genotype, second_genotype, channels, num_cells, aux_heads, head_in=2 * channels)

    def _merge(self, fa: Tensor, fb: Tensor) -> dict[str, Tensor]:
        return {"fused": torch.tanh(self.head(torch.cat([fa, fb], dim=1)))}
