"""The released TIMFusion genotypes by name (notes §2.5), and genotypes from configs.

A :class:`Genotype` holds the two chained op names of a ``Cell_Chain2``
(``normal``) and, for the stage-1 genotype, of the multi-scale ``Cell_Fusion``
(``chain_fusion``). The released genotypes' edge indices and ``*_concat`` fields
are ignored by the released cells, so they are not kept.

Not included: the released file's unused genotypes (``fusion_ir``/``fusion_vis``,
the ``*_Darts`` baselines, ``fusion_M4``, ``*_proposed2``): the notes do not give
their ops (or, for ``*_Darts``, their exact names).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Union

from .operations import parse_op_name

__all__ = ["Genotype", "GENOTYPES", "genotype", "genotype_names", "resolve_genotype", "GenotypeSpec"]


@dataclass(frozen=True)
class Genotype:
    """Two chained op names per cell kind; ``chain_fusion`` only for the multi-scale cell.

    >>> g = Genotype(normal=("Residualblocks_3_1", "ECAattention_3"))
    >>> g.ops("chain"), g.chain_fusion is None
    (('Residualblocks_3_1', 'ECAattention_3'), True)
    """

    normal: tuple[str, str] | None = None
    chain_fusion: tuple[str, str] | None = None

    def __post_init__(self) -> None:
        if self.normal is None and self.chain_fusion is None:
            raise ValueError("a genotype needs 'normal' or 'chain_fusion' ops")
        for field in ("normal", "chain_fusion"):
            ops = getattr(self, field)
            if ops is None:
                continue
            ops = tuple(str(o) for o in ops)
            if len(ops) != 2:
                raise ValueError(f"genotype.{field} must name two ops, got {list(ops)}")
            for name in ops:
                parse_op_name(name)
            object.__setattr__(self, field, ops)

    def ops(self, cell: str) -> tuple[str, str]:
        """The op names of a ``"chain"`` (``normal``) or ``"fusion"`` (``chain_fusion``) cell."""
        field = {"chain": "normal", "fusion": "chain_fusion"}.get(cell)
        if field is None:
            raise ValueError(f"cell kind must be 'chain' or 'fusion', got {cell!r}")
        ops = getattr(self, field)
        if ops is None:
            raise ValueError(f"this genotype has no {field!r} ops for a {cell!r} cell: {self}")
        return ops


_R31, _R51, _D31 = "Residualblocks_3_1", "Residualblocks_5_1", "Denseblocks_3_1"
_DIL32, _SEP31, _ECA3, _SPA3 = "DilConv_3_2", "SepConv_3_1", "ECAattention_3", "SPAattention_3"

#: The released genotypes used by the released networks (notes §2.5).
GENOTYPES: dict[str, Genotype] = {
    "fusion_M": Genotype(chain_fusion=(_R31, _DIL32), normal=(_D31, _DIL32)),  # stage 1, all tasks
    "fusion_ir_proposed": Genotype(normal=(_SPA3, _DIL32)),  # IVIF stage 2
    "fusion_vis_proposed": Genotype(normal=(_ECA3, _SPA3)),  # IVIF stage 2
    "fusion_mri": Genotype(normal=(_R51, _R51)),  # MRI-CT
    "fusion_ct": Genotype(normal=(_R51, _SPA3)),  # MRI-CT
    "fusion_mri_pet": Genotype(normal=(_SEP31, _R51)),  # MRI-PET
    "fusion_pet": Genotype(normal=(_R31, _R51)),  # MRI-PET
    "fusion_mri_spect": Genotype(normal=(_R51, _D31)),  # MRI-SPECT
    "fusion_spect": Genotype(normal=(_R31, _SPA3)),  # MRI-SPECT
    "fusion_light": Genotype(normal=(_R31, _ECA3)),  # the "light" model
}

#: A genotype as a config may give it: a released name, a Genotype, a dict of its
#: fields, or a list of two op names (the ``normal`` ops).
GenotypeSpec = Union[str, Genotype, Mapping[str, Any], Sequence[str]]


def genotype_names() -> list[str]:
    """The released genotypes' names, sorted.

    >>> genotype_names()[:3]
    ['fusion_M', 'fusion_ct', 'fusion_ir_proposed']
    """
    return sorted(GENOTYPES)


def genotype(name: str) -> Genotype:
    """The released genotype ``name``; an unknown name is refused with the valid ones.

    >>> genotype("fusion_light").normal
    ('Residualblocks_3_1', 'ECAattention_3')
    >>> genotype("fusion_X")
    Traceback (most recent call last):
        ...
    ValueError: unknown genotype 'fusion_X'; valid names: fusion_M, fusion_ct, ...
    """
    try:
        return GENOTYPES[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown genotype {name!r}; valid names: {', '.join(genotype_names())}") from None


def resolve_genotype(spec: GenotypeSpec) -> Genotype:
    """A genotype from a name, a :class:`Genotype`, a dict of its fields or two op names.

    >>> resolve_genotype("fusion_ct") == genotype("fusion_ct")
    True
    >>> resolve_genotype(dict(normal=["SPAattention_3", "DilConv_3_2"])) == genotype("fusion_ir_proposed")
    True
    >>> resolve_genotype(["ECAattention_3", "SPAattention_3"]) == genotype("fusion_vis_proposed")
    True
    """
    if isinstance(spec, Genotype):
        return spec
    if isinstance(spec, str):
        return genotype(spec)
    if isinstance(spec, Mapping):
        unknown = set(spec) - {"normal", "chain_fusion"}
        if unknown:
            raise ValueError(f"unknown genotype fields {sorted(unknown)}; valid: chain_fusion, normal")
        return Genotype(**{k: tuple(v) for k, v in spec.items() if v is not None})
    if isinstance(spec, Sequence):
        return Genotype(normal=tuple(spec))  # type: ignore[arg-type]
    raise TypeError(f"a genotype is a name, a Genotype, a dict or two op names; got {type(spec).__name__}")
