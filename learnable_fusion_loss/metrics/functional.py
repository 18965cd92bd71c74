"""The metrics' former single module, kept so ``metrics.functional`` imports still work.

The code now lives by family (see :mod:`learnable_fusion_loss.metrics`); this
module only re-exports the package's public functions and constants.

>>> from learnable_fusion_loss.metrics.functional import fusion_metrics
>>> fusion_metrics is __import__("learnable_fusion_loss.metrics").metrics.fusion_metrics
True
"""

from __future__ import annotations

from . import __all__ as _PACKAGE_ALL
from . import *  # noqa: F403  (the names of _PACKAGE_ALL)

# everything the package exports but the MMEngine evaluator class, as before
__all__ = [name for name in _PACKAGE_ALL if name != "FusionMetric"]
