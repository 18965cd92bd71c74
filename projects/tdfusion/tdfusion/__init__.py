"""TDFusion-specific pieces, registered in ``learnable_fusion_loss.registry.MODELS``.

Loaded by the configs through ``custom_imports=dict(imports=['projects.tdfusion.tdfusion'])``
(``tools/train.py`` and ``tools/test.py`` put the repository root on ``sys.path``).

* :class:`ReFusionNet` - TDFusion's fusion network F (:mod:`.refusion`, with its
  cross-attention fusion module :class:`AttentionFusionModule`).
* :class:`TDFusionLPN` - TDFusion's loss-parameter network G (:mod:`.lpn`).
* :mod:`.convert` - the public release's checkpoints into these networks
  (:func:`load_fusion_checkpoint`, :func:`convert_official_state_dict`, ...).
* :class:`WeightedSumFusion` - ablation V of the paper's Table 3: the fused image is
  ``w_a * I_a + w_b * I_b`` with the weights of a (trainable) weight network.
* :class:`SourceBaselineFusion` - the trivial baselines of the results table:
  IR alone, VIS alone, their average, their maximum (no parameters).
* :mod:`.presets` - the paper's task-view sizes per dataset and its train pipeline.

Importing the package also registers the ReFusion weight reader of
:mod:`learnable_fusion_loss.apis.weights` and the project's zoo folder
(:data:`ZOO_ROOT`, see :func:`learnable_fusion_loss.apis.zoo.register_zoo_root`), so
``load_fusion_network("tdfusion_msrsdet_cpu")`` finds the trained model by name.
"""

from pathlib import Path

from learnable_fusion_loss.apis.zoo import register_zoo_root

from .convert import (
    convert_official_state_dict,
    infer_official_config,
    load_fusion_checkpoint,
    load_official_state_dict,
    official_layout,
)
from .fusion import BASELINE_RULES, SourceBaselineFusion, WeightedSumFusion
from .lpn import TDFusionLPN
from .presets import TASK_VIEW_SIZES, tdfusion_train_pipeline
from .refusion import AttentionFusionModule, ReFusionNet

#: The project's model zoo (``projects/tdfusion/zoo``).
ZOO_ROOT = register_zoo_root(Path(__file__).resolve().parents[1] / "zoo")

__all__ = [
    "ReFusionNet",
    "AttentionFusionModule",
    "TDFusionLPN",
    "convert_official_state_dict",
    "infer_official_config",
    "load_fusion_checkpoint",
    "load_official_state_dict",
    "official_layout",
    "WeightedSumFusion",
    "SourceBaselineFusion",
    "BASELINE_RULES",
    "ZOO_ROOT",
    "TASK_VIEW_SIZES",
    "tdfusion_train_pipeline",
]
