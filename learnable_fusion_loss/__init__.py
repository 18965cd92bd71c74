"""learnable_fusion_loss: task-driven image fusion with meta-learned losses.

The core is small::

    from learnable_fusion_loss import LearnableFusionLoss, MetaLossLearner, FusionBatch
    loss = LearnableFusionLoss(generator=ConvWeightGenerator())  # any G: (a, b) -> [B, 2, H, W]
    learner = MetaLossLearner(fusion_net, loss, task, fusion_optimizer)
    learner.meta_step(meta_train_batch, meta_test_batch)       # updates G only
    learner.fusion_step(train_batch)                           # updates F and T

Any other model works the same way with a :class:`MetaBatch` (``inputs``,
``loss_inputs``, ``target``) and a :class:`LearnableLoss` of any criterion.
"""

from .losses import LearnableFusionLoss, LearnableLoss, LossOutput
from .meta import FusionBatch, InnerStep, MetaBatch, MetaLossLearner

__version__ = "0.1.0"

__all__ = [
    "LearnableLoss",
    "LearnableFusionLoss",
    "LossOutput",
    "FusionBatch",
    "MetaBatch",
    "InnerStep",
    "MetaLossLearner",
    "__version__",
]
