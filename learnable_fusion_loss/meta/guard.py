"""Non-finite steps: skipped, counted per phase, never applied; a run of them stops training.

One NaN in a loss or a gradient, applied, poisons every weight it reaches, and
the crash then comes later and elsewhere (a task's input check, an iteration
whose cause is long gone). :class:`NonFiniteGuard` is the one place where every
phase (meta, fusion, task, the warm-ups) records whether its step was finite.
A non-finite step is not applied; it is reported with its phase, what was
non-finite and the iteration, and counted. ``max_consecutive`` skips in a row in
one phase mean training has diverged: the guard raises :class:`NonFiniteError`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

from .._checks import all_finite  # re-exported: the guard's callers test tensors with it

__all__ = ["NonFiniteError", "NonFiniteGuard", "all_finite"]


class NonFiniteError(RuntimeError):
    """Training stopped: too many consecutive non-finite steps in one phase."""


class NonFiniteGuard:
    """Counts non-finite (skipped) steps per phase and stops a diverged run.

    Args:
        max_consecutive: skips in a row, in one phase, after which :meth:`record`
            raises :class:`NonFiniteError` (one bad batch is skipped; a diverged
            model is stopped with a message, not trained on forever).
        report: called with each skip's message (default: a ``RuntimeWarning``);
            the engine routes it to the run's log.

    ``iteration`` (set by the caller, e.g. the training loop) is named in messages.

    >>> guard = NonFiniteGuard(max_consecutive=2, report=print)
    >>> guard.iteration = 7
    >>> guard.record("fusion", False, "fusion loss")
    iteration 7: fusion step skipped, non-finite fusion loss (not applied); 1 in a row, 1 skipped in all
    {'skipped_fusion': 1.0, 'skipped_total': 1.0}
    >>> guard.record("fusion", True)
    {'skipped_fusion': 0.0, 'skipped_total': 1.0}
    """

    def __init__(self, max_consecutive: int = 20, report: Callable[[str], None] | None = None) -> None:
        if not (isinstance(max_consecutive, int) and max_consecutive >= 1):
            raise ValueError(f"max_consecutive must be an integer >= 1, got {max_consecutive!r}")
        self.max_consecutive = max_consecutive
        self.report = report or (lambda message: warnings.warn(message, RuntimeWarning, stacklevel=3))
        self.iteration: int | None = None
        self.totals: dict[str, int] = {}
        self.consecutive: dict[str, int] = {}

    @property
    def total(self) -> int:
        """Skipped steps over all phases."""
        return sum(self.totals.values())

    def record(self, phase: str, finite: bool, what: str = "values") -> dict[str, float]:
        """Record one step of ``phase``; returns ``{skipped_<phase>, skipped_total}``.

        Raises:
            NonFiniteError: the ``max_consecutive``-th non-finite step in a row.
        """
        if finite:
            self.consecutive[phase] = 0
            return {f"skipped_{phase}": 0.0, "skipped_total": float(self.total)}
        self.totals[phase] = self.totals.get(phase, 0) + 1
        run = self.consecutive[phase] = self.consecutive.get(phase, 0) + 1
        where = f"iteration {self.iteration}: " if self.iteration is not None else ""
        if run >= self.max_consecutive:
            raise NonFiniteError(
                f"{where}{run} consecutive {phase} steps had non-finite {what}; training stopped "
                f"({self.total} steps skipped in all). The run has diverged: lower the learning "
                "rates (or clip gradients: optim_wrapper.<key>.clip_grad), or check the data")
        self.report(f"{where}{phase} step skipped, non-finite {what} (not applied); "
                    f"{run} in a row, {self.total} skipped in all")
        return {f"skipped_{phase}": 1.0, "skipped_total": float(self.total)}
