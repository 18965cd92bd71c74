"""Input checks shared by the core: errors that name the offending argument."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor


class NonFiniteValueError(ValueError):
    """An input tensor holds NaN or Inf (the meta learner skips such a step)."""


def check_image(name: str, x: object, channels: int | None = 1, finite: bool = True) -> Tensor:
    """Check that ``x`` is a ``[B, C, H, W]`` floating tensor (``C == channels`` if given)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor [B, C, H, W], got {type(x).__name__}")
    if x.ndim != 4:
        raise ValueError(f"{name} must have shape [B, C, H, W], got {tuple(x.shape)}")
    if channels is not None and x.shape[1] != channels:
        raise ValueError(
            f"{name} must have {channels} channel(s), got {x.shape[1]} (shape {tuple(x.shape)})"
        )
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating tensor in [0, 1], got dtype {x.dtype}")
    if finite and not bool(torch.isfinite(x.detach()).all()):
        raise NonFiniteValueError(f"{name} contains NaN or Inf values")
    return x


def check_same_shape(**tensors: Tensor) -> None:
    """All given tensors must share one shape; the message lists every argument."""
    shapes = {name: tuple(t.shape) for name, t in tensors.items()}
    if len(set(shapes.values())) > 1:
        listed = ", ".join(f"{n}={s}" for n, s in shapes.items())
        raise ValueError(f"shape mismatch between sources: {listed}")


def all_finite(tensors: Iterable[Tensor | None]) -> bool:
    """True when every given tensor (``None`` entries ignored) holds only finite values.

    >>> import torch
    >>> all_finite([torch.ones(2), None]), all_finite([torch.tensor([1.0, float("nan")])])
    (True, False)
    """
    flags = [torch.isfinite(t.detach()).all() for t in tensors if t is not None]
    return bool(torch.stack(flags).all()) if flags else True  # one sync, not one per tensor
