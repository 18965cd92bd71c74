"""TDFusion-specific pieces, registered in ``learnable_fusion_loss.registry.MODELS``.

Loaded by the configs through ``custom_imports=dict(imports=['projects.tdfusion.tdfusion'])``
(``tools/train.py`` and ``tools/test.py`` put the repository root on ``sys.path``).

* :class:`WeightedSumFusion` - ablation V of the paper's Table 3: the fused image is
  ``w_a * I_a + w_b * I_b`` with the weights of a (trainable) weight network.
* :class:`SourceBaselineFusion` - the trivial baselines of the results table:
  IR alone, VIS alone, their average, their maximum (no parameters).
"""

from .fusion import BASELINE_RULES, SourceBaselineFusion, WeightedSumFusion

__all__ = ["WeightedSumFusion", "SourceBaselineFusion", "BASELINE_RULES"]
