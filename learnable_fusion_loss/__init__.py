"""learnable_fusion_loss: task-driven image fusion with meta-learned losses.

The core is small::

    from learnable_fusion_loss import LearnableFusionLoss, MetaLossLearner, FusionBatch
    loss = LearnableFusionLoss(generator=ConvWeightGenerator())  # any G: (a, b) -> [B, 2, H, W]
    learner = MetaLossLearner(fusion_net, loss, task, fusion_optimizer)
    learner.meta_step(meta_train_batch, meta_test_batch)       # updates G only
    learner.fusion_step(train_batch)                           # updates F and T
"""

from .losses import LearnableFusionLoss, LearnableLoss, LossOutput
from .meta import FusionBatch, InnerStep, MetaLossLearner

__version__ = "0.1.0"

__all__ = [
    "LearnableLoss",
    "LearnableFusionLoss",
    "LossOutput",
    "FusionBatch",
    "InnerStep",
    "MetaLossLearner",
    "__version__",
]
