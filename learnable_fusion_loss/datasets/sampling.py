"""Deterministic meta-train / meta-test index splits (TDFusion's learning-of-G phase).

TDFusion alternates batches from one shuffled loader: even batches update the
fusion net virtually (meta-train), odd ones score it with the task (meta-test),
so within an epoch the two never share an image. :func:`meta_split_indices`
makes that explicit: two disjoint random subsets of size ``m`` per epoch,
reproducible from ``(seed, epoch)``.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler

__all__ = ["meta_split_indices", "MetaSplitSampler"]


def meta_split_indices(
    num_items: int, m: int, epoch: int = 0, seed: int = 0
) -> tuple[list[int], list[int]]:
    """Two disjoint random index subsets ``(meta_train, meta_test)`` of size ``m`` each.

    The same ``(num_items, m, epoch, seed)`` always gives the same split; a new
    epoch gives a new one.

    Raises:
        ValueError: ``2 * m > num_items`` or non-positive sizes.
    """
    if num_items <= 0 or m <= 0:
        raise ValueError(f"num_items and m must be positive, got num_items={num_items}, m={m}")
    if 2 * m > num_items:
        raise ValueError(
            f"cannot draw two disjoint subsets of m={m} from {num_items} items "
            "(need 2*m <= num_items)"
        )
    gen = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))
    perm = torch.randperm(num_items, generator=gen).tolist()
    return perm[:m], perm[m : 2 * m]


class MetaSplitSampler(Sampler[int]):
    """Sampler over one side (``'train'`` or ``'test'``) of :func:`meta_split_indices`.

    Two samplers with the same ``num_items``, ``m``, ``seed`` and epoch, one per
    side, give disjoint index sets; call :meth:`set_epoch` on both each epoch.
    """

    def __init__(self, num_items: int, m: int, part: str = "train", seed: int = 0) -> None:
        if part not in ("train", "test"):
            raise ValueError(f"part must be 'train' or 'test', got {part!r}")
        meta_split_indices(num_items, m)  # validate sizes now
        self.num_items, self.m, self.part, self.seed = num_items, m, part, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        train, test = meta_split_indices(self.num_items, self.m, self.epoch, self.seed)
        return iter(train if self.part == "train" else test)

    def __len__(self) -> int:
        return self.m
