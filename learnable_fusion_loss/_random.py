"""The library's one home for global RNG state: seeding a block, saving and restoring it.

The global generators are Python's :mod:`random`, NumPy's legacy ``np.random`` and
torch's CPU generator (plus CUDA's in :func:`capture_rng_state`). Everything that
seeds or checkpoints them goes through here, so every caller seeds them the same way:

* :func:`seeded_rng` – seed some of them for one block and put the caller's
  states back afterwards (per-sample seeds of the epoch plan: all three; a task
  net's seeded random init: torch only);
* :func:`capture_rng_state` / :func:`restore_rng_state` – all of them as
  ``torch.load(weights_only=True)``-safe values, for checkpoints and resume.

>>> import torch
>>> before = torch.get_rng_state()
>>> with seeded_rng(3):
...     a = torch.rand(2)
>>> with seeded_rng(3, libraries=("torch",)):
...     b = torch.rand(2)
>>> torch.equal(a, b), torch.equal(torch.get_rng_state(), before)
(True, True)
>>> state = capture_rng_state()
>>> x = torch.rand(1)
>>> restore_rng_state(state)
>>> torch.equal(torch.rand(1), x)
True
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

__all__ = ["RNG_LIBRARIES", "seeded_rng", "capture_rng_state", "restore_rng_state"]

#: The global generators :func:`seeded_rng` can seed, by name.
RNG_LIBRARIES: tuple[str, ...] = ("python", "numpy", "torch")

# name -> (get state, set state, seed with an int)
_GENERATORS: dict[str, tuple[Callable[[], Any], Callable[[Any], Any], Callable[[int], Any]]] = {
    "python": (random.getstate, random.setstate, random.seed),
    "numpy": (np.random.get_state, np.random.set_state, lambda seed: np.random.seed(seed % 2**32)),
    "torch": (torch.get_rng_state, torch.set_rng_state, torch.manual_seed),
}


@contextmanager
def seeded_rng(seed: int | None, libraries: Sequence[str] = RNG_LIBRARIES) -> Iterator[None]:
    """Seed the named global generators with ``seed`` inside the block; restore them after.

    ``seed=None`` leaves every generator alone (the block draws from the caller's
    stream). NumPy gets ``seed % 2**32``. Only the CPU states are saved and
    restored: ``torch.manual_seed`` also seeds CUDA's generators, which stay seeded.
    """
    unknown = [name for name in libraries if name not in _GENERATORS]
    if unknown:
        raise ValueError(f"unknown RNG libraries {unknown}; choose from {RNG_LIBRARIES}")
    if seed is None:
        yield
        return
    saved = [(_GENERATORS[name][1], _GENERATORS[name][0]()) for name in libraries]
    for name in libraries:
        _GENERATORS[name][2](seed)
    try:
        yield
    finally:
        for set_state, state in saved:
            set_state(state)


def capture_rng_state() -> dict[str, Any]:
    """Python, NumPy and torch RNG states as tensors and plain Python values.

    Only types that ``torch.load(weights_only=True)`` accepts are used, so the
    checkpoint stays loadable without unpickling arbitrary objects.
    """
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next},
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state` (CUDA states only where CUDA is up)."""
    py = state["python"]
    random.setstate((py["version"], tuple(py["internal"]), py["gauss_next"]))
    npy = state["numpy"]
    keys = np.asarray(npy["keys"].cpu().numpy(), dtype=np.uint32)
    np.random.set_state((npy["kind"], keys, npy["pos"], npy["has_gauss"], npy["cached_gaussian"]))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = [s.cpu() for s in state["cuda"]]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)
