"""The two-stage TIMFusion models with the library's ``forward(a, b) -> fused``.

``a`` is IR (IVIF) or MRI (medical), ``b`` VIS or the functional image's Y
channel; both ``[B, 1, H, W]`` in ``[0, 1]``. Inputs of any size are reflect-padded
to multiples of 4 and the outputs cropped back. ``forward_with_aux`` also returns
the stage-1 image, the stage-2 auxiliary heads (named by the source they see) and,
for IVIF, the mask. Outputs are not clamped (``clamp=True`` clamps to ``[0, 1]``;
the release clamps only when saving).

The argument orders of the released scripts (notes §6) are the defaults; the
medical stage-1 order is not known (``stage1_first='a'`` is our choice).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from learnable_fusion_loss.registry import MODELS

from .genotypes import GenotypeSpec
from .networks import TIMFusionRefineIVIF, TIMFusionRefineMedical, TIMFusionStage1, check_pair
from .padding import pad_to_multiple

__all__ = ["TIMFusionIVIF", "TIMFusionMedical", "MEDICAL_TASKS"]

Source = Literal["a", "b"]

#: Per medical task (``a`` = MRI, ``b`` = the other image): which source the
#: released script passes first (to ``stem2``) and the genotypes of the first and
#: second branch. The release's first input takes ``genotype[1]``, read here as the
#: second-listed genotype of the notes' pair (``fusion_mri / fusion_ct`` etc.), an
#: inference: for CT and SPECT it puts the functional-named genotype on the MRI.
MEDICAL_TASKS: dict[str, dict[str, str]] = {
    "ct": dict(stage2_first="a", first_genotype="fusion_ct", second_genotype="fusion_mri"),
    "pet": dict(stage2_first="b", first_genotype="fusion_pet", second_genotype="fusion_mri_pet"),
    "spect": dict(stage2_first="a", first_genotype="fusion_spect", second_genotype="fusion_mri_spect"),
}


def _check_source(name: str, first: object) -> None:
    if first not in ("a", "b"):
        raise ValueError(f"{name} must be 'a' or 'b', got {first!r}")


def _order(a: Tensor, b: Tensor, first: str) -> tuple[Tensor, Tensor]:
    return (a, b) if first == "a" else (b, a)


class _TwoStage(nn.Module):
    stage1: TIMFusionStage1
    stage2: TIMFusionRefineIVIF | TIMFusionRefineMedical

    def __init__(self, stage1_first: Source, stage2_first: Source, clamp: bool) -> None:
        super().__init__()
        _check_source("stage1_first", stage1_first)
        _check_source("stage2_first", stage2_first)
        self.stage1_first, self.stage2_first, self.clamp = stage1_first, stage2_first, bool(clamp)

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        """Fuse ``a`` and ``b`` (``[B, 1, H, W]``, any size) into ``[B, 1, H, W]``."""
        return self.forward_with_aux(a, b)["fused"]

    def forward_with_aux(self, a: Tensor, b: Tensor) -> dict[str, Tensor]:
        """``fused``, ``stage1``, ``aux_a``/``aux_b`` (the heads of the branches fed ``a``/``b``), ``mask``."""
        check_pair(a, b)
        pair, pad = pad_to_multiple(torch.cat([a, b], dim=1), 4)
        a, b = pair[:, :1], pair[:, 1:]
        f1 = self.stage1.features(*_order(a, b, self.stage1_first))
        out = self.stage2.forward_with_aux(*_order(a, b, self.stage2_first), f1)
        first, second = ("a", "b") if self.stage2_first == "a" else ("b", "a")
        named = {"fused": out["fused"], "stage1": f1}
        if "aux_first" in out:
            named[f"aux_{first}"], named[f"aux_{second}"] = out["aux_first"], out["aux_second"]
        if "mask" in out:
            named["mask"] = out["mask"]
        named = {k: pad.crop(v) for k, v in named.items()}
        if self.clamp:
            named["fused"] = named["fused"].clamp(0, 1)
        return named


@MODELS.register_module()
class TIMFusionIVIF(_TwoStage):
    """IVIF TIMFusion: stage 1 (``fusion_M``) then the IVIF refinement; ``a`` = IR, ``b`` = VIS.

    Released orders: ``f1 = model_1(IR, VIS)``, ``model_2(VIS, IR, f1)`` (VIS takes the
    first branch, ``fusion_vis_proposed``, and gives the mask). 1,232,225 parameters.

    >>> import torch
    >>> net = TIMFusionIVIF(channels=8)
    >>> ir, vis = torch.rand(1, 1, 11, 9), torch.rand(1, 1, 11, 9)
    >>> out = net.forward_with_aux(ir, vis)
    >>> sorted(out), out["fused"].shape
    (['aux_a', 'aux_b', 'fused', 'mask', 'stage1'], torch.Size([1, 1, 11, 9]))
    >>> sum(p.numel() for p in TIMFusionIVIF().parameters())
    1232225
    """

    def __init__(self, stage1_genotype: GenotypeSpec = "fusion_M",
                 first_genotype: GenotypeSpec = "fusion_vis_proposed",
                 second_genotype: GenotypeSpec = "fusion_ir_proposed", channels: int = 48,
                 stage1_first: Source = "a", stage2_first: Source = "b", clamp: bool = False) -> None:
        super().__init__(stage1_first, stage2_first, clamp)
        self.stage1 = TIMFusionStage1(stage1_genotype, channels)
        self.stage2 = TIMFusionRefineIVIF(first_genotype, second_genotype, channels)


@MODELS.register_module()
class TIMFusionMedical(_TwoStage):
    """Medical TIMFusion: stage 1 (``fusion_M``) then the medical refinement; ``a`` = MRI.

    ``task`` (``'ct'``, ``'pet'``, ``'spect'``) picks the released genotypes and
    stage-2 order from :data:`MEDICAL_TASKS`; explicit arguments override it. The
    output is ``tanh``'d, in ``[-1, 1]`` (clip it, or ``clamp=True``).

    >>> import torch
    >>> net = TIMFusionMedical("pet", channels=8)
    >>> mri, pet_y = torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8)
    >>> net(mri, pet_y).shape, net.stage2_first
    (torch.Size([1, 1, 8, 8]), 'b')
    """

    def __init__(self, task: str | None = "ct", stage1_genotype: GenotypeSpec = "fusion_M",
                 first_genotype: GenotypeSpec | None = None, second_genotype: GenotypeSpec | None = None,
                 channels: int = 48, stage1_first: Source = "a", stage2_first: Source | None = None,
                 aux_heads: bool = True, clamp: bool = False) -> None:
        preset: dict[str, str] = {}
        if task is not None:
            if task not in MEDICAL_TASKS:
                raise ValueError(f"unknown medical task {task!r}; valid: {', '.join(sorted(MEDICAL_TASKS))}")
            preset = MEDICAL_TASKS[task]
        first_genotype = first_genotype if first_genotype is not None else preset.get("first_genotype")
        second_genotype = second_genotype if second_genotype is not None else preset.get("second_genotype")
        stage2_first = stage2_first if stage2_first is not None else preset.get("stage2_first", "a")  # type: ignore[assignment]
        if first_genotype is None or second_genotype is None:
            raise ValueError("give a task or both first_genotype and second_genotype")
        super().__init__(stage1_first, stage2_first, clamp)  # type: ignore[arg-type]
        self.task = task
        self.stage1 = TIMFusionStage1(stage1_genotype, channels)
        self.stage2 = TIMFusionRefineMedical(first_genotype, second_genotype, channels, aux_heads=aux_heads)
