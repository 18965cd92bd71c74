"""The epoch plan of Algorithm 1: which samples every iteration of every epoch sees.

Each epoch ``e`` is a fixed, reproducible list of iterations, a pure function of
``(seed, e, rank)`` (:meth:`EpochPlan.plan`):

1. **meta phase**, ``M`` iterations: the shuffled training set gives two disjoint
   subsets of ``M`` batches each, the meta-train and the meta-test subset; meta
   step ``k`` pairs meta-train batch ``k`` with meta-test batch ``k``;
2. **fusion phase**, ``N`` iterations over a fresh shuffle of the training set.

``schedule='interleaved'`` (ablation IV) plans ``M`` meta iterations and no fusion
phase. The optional warm-ups (:meth:`EpochPlan.warmup_plan`) are planned the same
way, under an epoch index no epoch has.

Every sample is loaded under its own seed, derived from ``(seed, epoch, iteration,
slot)`` (:class:`SeededSamples`), so random crops do not depend on worker processes
or on where a run started: a run resumed inside an epoch sees exactly the batches
an uninterrupted run would have seen. :meth:`EpochPlan.iterate` loads the planned
batches and hands each iteration over as an :class:`~.iteration.IterationData`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from mmengine.dist import get_dist_info
from mmengine.logging import print_log
from torch.utils.data import DataLoader, Dataset

from .._random import seeded_rng
from .iteration import IterationData

__all__ = ["EpochPlan", "IterationPlan", "SeededSamples", "SCHEDULES", "WARMUP_EPOCH"]

SCHEDULES: tuple[str, ...] = ("phased", "interleaved")

#: Seed word of the warm-up shuffles (no epoch has this index).
WARMUP_EPOCH = 2**31 - 1

SampleKey = tuple[int, int]  # (dataset index, sample seed)


class SeededSamples(Dataset):
    """A dataset view indexed by ``(index, seed)``: each sample loads under its own seed.

    Random augmentations of the wrapped dataset (e.g. the fusion crop) then depend
    only on the seed chosen by the epoch plan, not on which worker loads the sample
    or how many samples that worker loaded before.
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: SampleKey) -> Any:
        index, seed = key
        with seeded_rng(seed):  # python, numpy and torch (CPU)
            return self.dataset[index]


class IterationPlan:
    """One planned iteration: its phase and its batches (two for meta steps)."""

    __slots__ = ("phase", "batches")

    def __init__(self, phase: str, batches: list[list[SampleKey]]) -> None:
        self.phase = phase
        self.batches = batches

    def __repr__(self) -> str:
        return f"IterationPlan({self.phase!r}, {[[i for i, _ in b] for b in self.batches]})"


class EpochPlan:
    """The iterations of every epoch of Algorithm 1 (the loop's ``dataloader``).

    Args:
        template: a DataLoader built from the config; its dataset, batch size,
            collate function, worker count, pin-memory and drop-last settings are used.
        meta_steps: M; clipped to the number of disjoint batch pairs available.
        fusion_steps: N; ``None`` = one pass over the (local) training set.
        schedule: ``"phased"`` (paper) or ``"interleaved"`` (ablation IV).
        seed: base seed of the shuffles and of the per-sample seeds.
        fusion_warmup_steps: iterations of F alone (½–½ loss) before epoch 0.
        task_warmup_steps: iterations of T alone before epoch 0 (after F's warm-up).
        task_warmup_source: what T sees in its warm-up (see
            :data:`~learnable_fusion_loss.meta.TASK_WARMUP_SOURCES`).
    """

    def __init__(
        self,
        template: DataLoader,
        meta_steps: int,
        fusion_steps: int | None,
        schedule: str,
        seed: int,
        fusion_warmup_steps: int = 0,
        task_warmup_steps: int = 0,
        task_warmup_source: str = "both",
    ) -> None:
        from ..meta import TASK_WARMUP_SOURCES

        if schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
        if meta_steps < 0 or (fusion_steps is not None and fusion_steps < 0):
            raise ValueError(f"meta_steps and fusion_steps must be >= 0, got {meta_steps}, {fusion_steps}")
        for name, value in (("fusion_warmup_steps", fusion_warmup_steps),
                            ("task_warmup_steps", task_warmup_steps)):
            if int(value) != value or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
        if task_warmup_source not in TASK_WARMUP_SOURCES:
            raise ValueError(
                f"task_warmup_source must be one of {TASK_WARMUP_SOURCES}, got {task_warmup_source!r}"
            )
        self.fusion_warmup_steps = int(fusion_warmup_steps)
        self.task_warmup_steps = int(task_warmup_steps)
        self.task_warmup_source = task_warmup_source
        self.warmup_iters = self.fusion_warmup_steps + self.task_warmup_steps
        self.template = template
        self.dataset = template.dataset
        self.batch_size = int(template.batch_size or 1)
        self.collate_fn = template.collate_fn
        self.num_workers = template.num_workers
        self.pin_memory = template.pin_memory
        self.drop_last = bool(template.drop_last)
        self.schedule = schedule
        self.seed = int(seed)
        self.rank, self.world_size = get_dist_info()
        self.local_size = len(self.dataset) // self.world_size  # type: ignore[arg-type]
        if self.local_size < 1:
            raise ValueError(
                f"the training set has {len(self.dataset)} samples, fewer than the "  # type: ignore[arg-type]
                f"{self.world_size} processes"
            )
        available_pairs = (self.local_size // self.batch_size) // 2
        self.requested_meta_steps = int(meta_steps)
        self.meta_steps = min(int(meta_steps), available_pairs)
        if self.meta_steps < meta_steps:
            print_log(
                f"meta_steps={meta_steps} needs {2 * meta_steps} disjoint batches of "
                f"{self.batch_size}; the training set (per process: {self.local_size} samples) "
                f"has {2 * available_pairs}: using M={self.meta_steps}",
                logger="current",
                level=logging.WARNING,
            )
        if schedule == "interleaved" and self.meta_steps == 0:
            raise ValueError("schedule='interleaved' needs meta_steps >= 1 and two full batches")
        if schedule == "interleaved" and fusion_steps != 0:
            # An interleaved epoch has no fusion phase: a fusion_steps it would ignore
            # (inherited from a base config, or None = one pass) is refused, not dropped.
            raise ValueError(
                f"train_cfg.fusion_steps={fusion_steps!r} would be ignored by schedule='interleaved' "
                "(no separate fusion phase: F takes its look-ahead step inside each meta iteration); "
                "set fusion_steps=0")
        rounding = math.floor if self.drop_last else math.ceil
        self.batches_per_pass = int(rounding(self.local_size / self.batch_size))
        if self.batches_per_pass < 1:
            raise ValueError(
                f"no full batch of {self.batch_size} in {self.local_size} samples with drop_last=True"
            )
        self.fusion_steps = self.batches_per_pass if fusion_steps is None else int(fusion_steps)
        self.iters_per_epoch = self.meta_steps + self.fusion_steps
        if self.iters_per_epoch == 0:
            raise ValueError("an epoch has no iterations (meta_steps and fusion_steps are both 0)")

    def __len__(self) -> int:
        return self.iters_per_epoch

    def state(self) -> dict[str, Any]:
        """What a checkpoint must agree with to resume inside an epoch."""
        return {
            "iters_per_epoch": self.iters_per_epoch,
            "meta_steps": self.meta_steps,
            "fusion_steps": self.fusion_steps,
            "schedule": self.schedule,
            "batch_size": self.batch_size,
            "dataset_len": len(self.dataset),  # type: ignore[arg-type]
            "world_size": self.world_size,
            "seed": self.seed,
            "fusion_warmup_steps": self.fusion_warmup_steps,
            "task_warmup_steps": self.task_warmup_steps,
            "task_warmup_source": self.task_warmup_source,
        }

    # ------------------------------------------------------------- planning
    def _generator(self, epoch: int, stream: int) -> torch.Generator:
        words = np.random.SeedSequence([self.seed % 2**32, epoch, stream]).generate_state(2)
        return torch.Generator().manual_seed(int(words[0]) << 32 | int(words[1]))

    def _local_permutation(self, epoch: int, stream: int) -> list[int]:
        """A shuffle of the whole set (same on every rank), this rank's share of it."""
        order = torch.randperm(len(self.dataset), generator=self._generator(epoch, stream))  # type: ignore[arg-type]
        mine = order[self.rank :: self.world_size][: self.local_size]
        return mine.tolist()

    def _keys(self, epoch: int, iteration: int, slot: int, indices: Sequence[int]) -> list[SampleKey]:
        seeds = np.random.SeedSequence([self.seed % 2**32, epoch, iteration, slot, self.rank])
        values = seeds.generate_state(max(1, len(indices)), dtype=np.uint64)
        return [(int(i), int(v % 2**63)) for i, v in zip(indices, values, strict=False)]

    def plan(self, epoch: int) -> list[IterationPlan]:
        """Every iteration of ``epoch`` in order."""
        b = self.batch_size
        plans: list[IterationPlan] = []
        if self.meta_steps:
            order = self._local_permutation(epoch, stream=0)
            meta_train, meta_test = order[: self.meta_steps * b], order[self.meta_steps * b : 2 * self.meta_steps * b]
            phase = "interleaved" if self.schedule == "interleaved" else "meta"
            for k in range(self.meta_steps):
                it = len(plans)
                plans.append(IterationPlan(phase, [
                    self._keys(epoch, it, 0, meta_train[k * b : (k + 1) * b]),
                    self._keys(epoch, it, 1, meta_test[k * b : (k + 1) * b]),
                ]))
        return plans + self._pass_plans(epoch, 1, len(plans), self.fusion_steps, "fusion")

    def _pass_plans(
        self, epoch: int, first_stream: int, first_iteration: int, count: int, phase: str
    ) -> list[IterationPlan]:
        """``count`` one-batch iterations over fresh shuffles of the training set."""
        b = self.batch_size
        plans: list[IterationPlan] = []
        stream, order = first_stream, []
        for k in range(count):
            if not order:
                order = self._local_permutation(epoch, stream=stream)
                stream += 1
                if self.drop_last:
                    order = order[: (len(order) // b) * b]
            keys = self._keys(epoch, first_iteration + k, 0, order[:b])
            plans.append(IterationPlan(phase, [keys]))
            order = order[b:]
        return plans

    def warmup_plan(self) -> list[IterationPlan]:
        """The warm-up iterations: F's (``fusion_warmup``), then T's (``task_warmup``)."""
        fusion = self._pass_plans(WARMUP_EPOCH, 1, 0, self.fusion_warmup_steps, "fusion_warmup")
        task = self._pass_plans(WARMUP_EPOCH, 1_000, len(fusion), self.task_warmup_steps, "task_warmup")
        return fusion + task

    def iterate_warmup(self, start: int = 0) -> Iterator[tuple[int, str, IterationData]]:
        """``(iteration index, phase, data)`` for warm-up iterations ``start..``."""
        return self._iterate(self.warmup_plan(), WARMUP_EPOCH, start)

    def iterate(self, epoch: int, start: int = 0) -> Iterator[tuple[int, str, IterationData]]:
        """``(iteration index, phase, data)`` for iterations ``start..`` of ``epoch``."""
        return self._iterate(self.plan(epoch), epoch, start)

    def _iterate(
        self, all_plans: list[IterationPlan], epoch: int, start: int
    ) -> Iterator[tuple[int, str, IterationData]]:
        plans = all_plans[start:]
        if not plans:
            return
        batches = [batch for plan in plans for batch in plan.batches]
        loader = DataLoader(
            SeededSamples(self.dataset),
            batch_sampler=batches,
            collate_fn=self.collate_fn,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            # Worker base seeds come from this generator, not from the global RNG,
            # so starting a loader mid-epoch does not shift the global stream.
            generator=self._generator(epoch, stream=10_000 + start),
        )
        stream = iter(loader)
        for offset, plan in enumerate(plans):
            loaded = [next(stream) for _ in plan.batches]
            if plan.phase == "task_warmup":
                data = IterationData(plan.phase, inputs=loaded[0], source=self.task_warmup_source)
            elif plan.phase in ("fusion", "fusion_warmup"):
                data = IterationData(plan.phase, inputs=loaded[0])
            else:
                data = IterationData(plan.phase, meta_train=loaded[0], meta_test=loaded[1])
            yield start + offset, plan.phase, data
