"""What the training loop hands the model each iteration: a phase and its batches.

:class:`IterationData` replaces a dict of string keys shared by the loop, the model
and the visualisation hook: a misspelt key is now an error where it is made.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["PHASES", "IterationData"]

#: The phases of Algorithm 1 and its warm-ups, in the loop's vocabulary.
PHASES: tuple[str, ...] = ("meta", "fusion", "interleaved", "fusion_warmup", "task_warmup")
_PAIRED = ("meta", "interleaved")  # a meta-train and a meta-test batch


@dataclass(frozen=True)
class IterationData:
    """One iteration's input to :meth:`~learnable_fusion_loss.engine.MetaFusionModel.train_step`.

    ``meta`` and ``interleaved`` take ``meta_train`` and ``meta_test`` (updates G; in
    ``interleaved`` F keeps θ' and T steps too); ``fusion`` (F and T),
    ``fusion_warmup`` (F alone, ½–½ loss) and ``task_warmup`` (T alone, on
    ``source``) take ``inputs``. Each batch is a collated batch dict.

    >>> IterationData("fusion", inputs={"source_a": 0}).batch
    {'source_a': 0}
    >>> IterationData("meta", inputs={"source_a": 0})
    Traceback (most recent call last):
    ...
    ValueError: phase 'meta' needs meta_train and meta_test, not inputs
    """

    phase: str
    inputs: Any = None
    meta_train: Any = None
    meta_test: Any = None
    source: str = "both"

    def __post_init__(self) -> None:
        if self.phase not in PHASES:
            raise ValueError(f"phase must be one of {PHASES}, got {self.phase!r}")
        if self.phase in _PAIRED:
            if self.meta_train is None or self.meta_test is None or self.inputs is not None:
                raise ValueError(f"phase {self.phase!r} needs meta_train and meta_test, not inputs")
        elif self.inputs is None or self.meta_train is not None or self.meta_test is not None:
            raise ValueError(f"phase {self.phase!r} needs inputs, not meta_train / meta_test")

    @property
    def batch(self) -> Any:
        """The batch to look at (``inputs``, else ``meta_train``), e.g. for a picture."""
        return self.inputs if self.inputs is not None else self.meta_train

    @classmethod
    def of(cls, data: IterationData | Mapping[str, Any]) -> IterationData:
        """``data`` itself, or the dataclass of a dict with the same keys (the older form).

        >>> IterationData.of({"phase": "task_warmup", "inputs": {}, "source": "a"}).source
        'a'
        """
        if isinstance(data, IterationData):
            return data
        if not isinstance(data, Mapping):
            raise TypeError(f"iteration data must be an IterationData, got {type(data).__name__}")
        unknown = set(data) - {"phase", "inputs", "meta_train", "meta_test", "source"}
        if unknown:
            raise ValueError(f"unknown iteration data keys {sorted(unknown)}")
        if "phase" not in data:
            raise ValueError(f"phase must be one of {PHASES}, got none")
        return cls(**data)
