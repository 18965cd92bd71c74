"""TIMFusion (TPAMI 2024) networks, registered in ``learnable_fusion_loss.registry.MODELS``.

Loaded by configs through ``custom_imports=dict(imports=['projects.timfusion.timfusion'])``.
What is released and what is our design is in ``projects/timfusion/README.md``.

* :mod:`.operations` - the searched ops (``Residualblocks_k_d``, ``Denseblocks_k_d``,
  ``DilConv_k_d``, ``SepConv_k_s``, ``ECAattention_k``, ``SPAattention_k``).
* :mod:`.cells` - ``Cell_Chain2`` and the multi-scale ``Cell_Fusion`` (blur-pool
  down-sampling, residual up-sampling, SKFF).
* :mod:`.genotypes` - the released genotypes by name (:func:`genotype`).
* :mod:`.networks` - stage 1, the light model, the IVIF and medical stage 2.
* :mod:`.models` - the two-stage IVIF and medical models, ``forward(a, b) -> fused``.
* :mod:`.padding` - reflect padding to multiples of 4 and the crop back.
* :mod:`.pipeline` - the released inference pipelines (grey; colour through Y).
"""

from .cells import SKFF, BlurPool, CellChain2, CellFusion, DownSample, UpSample
from .genotypes import GENOTYPES, Genotype, genotype, genotype_names, resolve_genotype
from .models import MEDICAL_TASKS, TIMFusionIVIF, TIMFusionMedical
from .networks import TIMFusionLight, TIMFusionRefineIVIF, TIMFusionRefineMedical, TIMFusionStage1
from .operations import (
    DenseBlock,
    DilConv,
    ECAAttention,
    ResidualBlock,
    SepConv,
    SpatialAttention,
    make_op,
)
from .padding import Padding, pad_to_multiple
from .pipeline import fuse_colour, fuse_grey, merge_luma, split_luma

__all__ = [
    "BlurPool", "CellChain2", "CellFusion", "DownSample", "UpSample", "SKFF",
    "GENOTYPES", "Genotype", "genotype", "genotype_names", "resolve_genotype",
    "MEDICAL_TASKS", "TIMFusionIVIF", "TIMFusionMedical",
    "TIMFusionLight", "TIMFusionRefineIVIF", "TIMFusionRefineMedical", "TIMFusionStage1",
    "DenseBlock", "DilConv", "ECAAttention", "ResidualBlock", "SepConv", "SpatialAttention", "make_op",
    "Padding", "pad_to_multiple",
    "fuse_colour", "fuse_grey", "merge_luma", "split_luma",
]
