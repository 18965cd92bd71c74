"""The MMEngine layer: epoch plan, model steps, optimiser wrappers, hooks, helpers.

Everything here runs in-process on tiny nets and 16-24 px images (seconds on a CPU).
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner
from torch import nn
from torch.utils.data import DataLoader, Dataset

import learnable_fusion_loss.engine as engine
from learnable_fusion_loss.compat import patch_mmengine_checkpoint_loading
from learnable_fusion_loss.engine import (
    EpochPlan,
    MetaFusionModel,
    MultiModuleOptimWrapperConstructor,
    TaskMetric,
    atomic_write_bytes,
    batch_task_samples,
    capture_rng_state,
    fusion_panel,
    resolve_data_root,
    restore_rng_state,
)
from learnable_fusion_loss.generators import ConstantWeights, ConvWeightGenerator
from learnable_fusion_loss.losses import LearnableFusionLoss
from learnable_fusion_loss.registry import DATASETS, MODELS
from learnable_fusion_loss.tasks import ModuleTask

from _tiny import TinyFusion, TinyTaskNet

patch_mmengine_checkpoint_loading()


# ----------------------------------------------------------------- fixtures
@DATASETS.register_module(name="EngineTestPairs", force=True)
class EngineTestPairs(Dataset):
    """Random IR/VIS pairs with a random 16 px crop (so per-sample seeding matters)."""

    def __init__(self, n: int = 12, size: int = 16) -> None:
        g = torch.Generator().manual_seed(123)
        self.ir = torch.rand(n, 1, size + 6, size + 6, generator=g)
        self.vi = torch.rand(n, 1, size + 6, size + 6, generator=g)
        self.size = size

    def __len__(self) -> int:
        return len(self.ir)

    def __getitem__(self, i: int) -> dict:
        y, x = torch.randint(0, 7, (2,)).tolist()
        s = self.size
        ir, vi = self.ir[i, :, y : y + s, x : x + s], self.vi[i, :, y : y + s, x : x + s]
        return {"source_a": ir, "source_b": vi, "gt_sem_seg": (ir[0] > vi[0]).long(), "img_id": f"pair{i:02d}",
                "crop": (y, x)}


@MODELS.register_module(name="EngineTestFusion", force=True)
class EngineTestFusion(TinyFusion):
    pass


@MODELS.register_module(name="EngineTestTask", force=True)
class EngineTestTask(ModuleTask):
    """2-class per-pixel classifier with predict/evaluate (pixel accuracy)."""

    def __init__(self) -> None:
        super().__init__(TinyTaskNet(), nn.functional.cross_entropy, None)

    def predict(self, fused: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.net(fused).argmax(1)

    def evaluate(self, batches) -> dict:
        correct = total = 0
        for fused, target in batches:
            correct += int((self.predict(fused) == target).sum())
            total += target.numel()
        return {"pixel_acc": correct / total}


def base_cfg(work_dir: Path, **train_cfg) -> dict:
    return dict(
        default_scope="lfl",
        model=dict(
            type="MetaFusionModel",
            fusion_net=dict(type="EngineTestFusion"),
            loss=dict(type="LearnableFusionLoss",
                      generator=dict(type="ConvWeightGenerator", hidden=4, depth=1)),
            task=dict(type="EngineTestTask"),
            source_names=("ir", "vis"),
        ),
        work_dir=str(work_dir),
        train_dataloader=dict(
            dataset=dict(type="EngineTestPairs"), batch_size=2, num_workers=0,
            sampler=dict(type="DefaultSampler", shuffle=True),
            collate_fn=dict(type="default_collate")),
        train_cfg=dict(type="MetaFusionTrainLoop", max_epochs=2, meta_steps=2, fusion_steps=3,
                       **train_cfg),
        optim_wrapper=dict(
            constructor="MultiModuleOptimWrapperConstructor",
            fusion=dict(type="OptimWrapper", optimizer=dict(type="Adam", lr=1e-2)),
            generator=dict(type="OptimWrapper", optimizer=dict(type="Adam", lr=1e-2, eps=1e-10)),
            task=dict(type="OptimWrapper", optimizer=dict(type="Adam", lr=1e-2))),
        param_scheduler=[dict(type="StepLR", step_size=1, gamma=0.5, by_epoch=True)],
        default_hooks=dict(
            checkpoint=dict(type="AtomicCheckpointHook", interval=3, by_epoch=False),
            logger=dict(type="LoggerHook", interval=1)),
        custom_hooks=[dict(type="TrainingStateHook"),
                      dict(type="FusionVisualizationHook", interval=4)],
        log_processor=dict(by_epoch=True),
        randomness=dict(seed=0),
    )


def make_plan(n: int = 20, batch_size: int = 2, meta_steps: int = 3, fusion_steps=None,
              schedule: str = "phased", drop_last: bool = False) -> EpochPlan:
    loader = DataLoader(EngineTestPairs(n=n), batch_size=batch_size, drop_last=drop_last)
    return EpochPlan(loader, meta_steps, fusion_steps, schedule, seed=7)


def make_model(generator: nn.Module | None = None) -> MetaFusionModel:
    torch.manual_seed(0)
    return MetaFusionModel(
        fusion_net=EngineTestFusion(),
        loss=LearnableFusionLoss(generator or ConvWeightGenerator(hidden=4, depth=1)),
        task=EngineTestTask(),
        source_names=("ir", "vis"),
    )


def optim_for(model: MetaFusionModel, lr: float = 1e-2):
    cfg = {name: dict(type="OptimWrapper", optimizer=dict(type="Adam", lr=lr))
           for name in ("fusion", "generator", "task")}
    return MultiModuleOptimWrapperConstructor(cfg)(model)


def batch(seed: int, size: int = 16) -> dict:
    g = torch.Generator().manual_seed(seed)
    ir, vi = torch.rand(2, 1, size, size, generator=g), torch.rand(2, 1, size, size, generator=g)
    return {"source_a": ir, "source_b": vi, "gt_sem_seg": (ir[:, 0] > vi[:, 0]).long()}


def params_of(module: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def changed(before: list[torch.Tensor], module: nn.Module) -> bool:
    return any(not torch.equal(a, b) for a, b in zip(before, module.parameters(), strict=True))


# --------------------------------------------------------------- epoch plan
def test_epoch_plan_meta_subsets_are_disjoint_and_fusion_covers_the_set():
    plan = make_plan(n=20, meta_steps=3)
    its = plan.plan(0)
    assert len(plan) == len(its) == 3 + 10
    assert [p.phase for p in its] == ["meta"] * 3 + ["fusion"] * 10
    meta_train = [i for p in its[:3] for i, _ in p.batches[0]]
    meta_test = [i for p in its[:3] for i, _ in p.batches[1]]
    assert len(meta_train) == len(meta_test) == 6
    assert not set(meta_train) & set(meta_test)
    fusion = sorted(i for p in its[3:] for i, _ in p.batches[0])
    assert fusion == list(range(20))
    again = plan.plan(0)
    assert [p.batches for p in again] == [p.batches for p in its]
    assert [p.batches for p in plan.plan(1)] != [p.batches for p in its]


def _meta_split(plan: EpochPlan, epoch: int) -> tuple[list[int], list[int]]:
    """The sample indices of ``epoch``'s meta-train and meta-test subsets."""
    its = plan.plan(epoch)[: plan.meta_steps]
    return ([i for p in its for i, _ in p.batches[0]], [i for p in its for i, _ in p.batches[1]])


def test_epoch_plan_meta_split_is_disjoint_deterministic_and_never_overlaps():
    # (these checks were on datasets.sampling.meta_split_indices, removed: the plan is the split)
    plan = make_plan(n=120, batch_size=4, meta_steps=10, fusion_steps=0)
    train, test = _meta_split(plan, 3)
    assert len(train) == len(test) == 40 and not set(train) & set(test)
    assert (train, test) == _meta_split(make_plan(n=120, batch_size=4, meta_steps=10, fusion_steps=0), 3)
    assert _meta_split(plan, 4) != (train, test)
    for epoch in (0, 1):
        train, test = _meta_split(plan, epoch)
        assert len(train) == len(test) == 40 and not set(train) & set(test)
    # more than two disjoint subsets can hold (2 * 6 > 10): M is clipped, the sides stay disjoint
    small = make_plan(n=10, batch_size=1, meta_steps=6, fusion_steps=0)
    assert small.meta_steps == 5
    for epoch in (0, 1):
        train, test = _meta_split(small, epoch)
        assert len(train) == len(test) == 5 and not set(train) & set(test)


def test_epoch_plan_clips_meta_steps_and_cycles_fusion_steps():
    plan = make_plan(n=10, meta_steps=50, fusion_steps=12)
    assert plan.meta_steps == 2  # 10 samples / batch 2 = 5 batches -> 2 disjoint pairs
    fusion = [p for p in plan.plan(0) if p.phase == "fusion"]
    assert len(fusion) == 12
    seen = [i for p in fusion for i, _ in p.batches[0]]
    assert sorted(seen[:10]) == list(range(10))  # first pass is a permutation


def test_epoch_plan_interleaved_has_no_fusion_phase():
    plan = make_plan(n=20, meta_steps=4, fusion_steps=0, schedule="interleaved")
    assert [p.phase for p in plan.plan(0)] == ["interleaved"] * 4
    for ignored in (None, 24):  # a fusion phase it would not run is refused, not dropped
        with pytest.raises(ValueError, match=f"fusion_steps={ignored} would be ignored"):
            make_plan(n=20, meta_steps=4, fusion_steps=ignored, schedule="interleaved")
    with pytest.raises(ValueError, match="schedule"):
        make_plan(schedule="alternating")


def test_iterate_from_the_middle_gives_the_same_samples():
    plan = make_plan(n=12, meta_steps=2, fusion_steps=4)
    full = list(plan.iterate(epoch=1))
    tail = list(plan.iterate(epoch=1, start=3))
    assert [idx for idx, _, _ in tail] == [3, 4, 5]
    for (i, pa, da), (j, pb, db) in zip(full[3:], tail, strict=True):
        assert (i, pa) == (j, pb)
        assert torch.equal(da.inputs["source_a"], db.inputs["source_a"])  # same random crop
        assert torch.equal(torch.stack(da.inputs["crop"]), torch.stack(db.inputs["crop"]))
    crops = torch.cat([torch.stack(d.inputs["crop"], 1) for _, _, d in full[2:]])
    assert len({tuple(c) for c in crops.tolist()}) > 1  # the crops really are random


def test_the_loop_hands_the_model_iteration_data():
    from learnable_fusion_loss.engine import IterationData

    plan = make_plan(n=12, meta_steps=2, fusion_steps=4)
    items = [d for _, _, d in plan.iterate(epoch=0)]
    assert all(isinstance(d, IterationData) for d in items)
    assert [d.phase for d in items] == ["meta"] * 2 + ["fusion"] * 4
    assert items[0].meta_train is not None and items[0].inputs is None and items[0].batch is items[0].meta_train
    with pytest.raises(ValueError, match="phase 'fusion' needs inputs"):
        IterationData("fusion", meta_train={}, meta_test={})
    with pytest.raises(ValueError, match=r"unknown iteration data keys \['input'\]"):
        IterationData.of({"phase": "fusion", "input": {}})


# -------------------------------------------------------------------- model
def test_meta_step_updates_g_only_and_fusion_step_updates_f_and_t():
    model = make_model()
    optim = optim_for(model)
    f0, g0, t0 = params_of(model.fusion_net), params_of(model.generator), params_of(model.task_net)
    stats = model.train_step({"phase": "meta", "meta_train": batch(1), "meta_test": batch(2)}, optim)
    assert changed(g0, model.generator)
    assert not changed(f0, model.fusion_net) and not changed(t0, model.task_net)
    for key in ("loss_task_meta", "loss_fusion_meta", "hypergrad_norm", "w_ir", "w_vis"):
        assert key in stats and np.isfinite(stats[key])
    assert stats["w_ir"] + stats["w_vis"] == pytest.approx(1.0, abs=1e-5)
    g1 = params_of(model.generator)
    stats = model.train_step({"phase": "fusion", "inputs": batch(3)}, optim)
    assert changed(f0, model.fusion_net) and changed(t0, model.task_net)
    assert not changed(g1, model.generator)
    assert stats["loss_fusion"] == pytest.approx(stats["loss_int"] + stats["loss_grad"], rel=1e-5)
    assert "loss_task" in stats
    # The learner runs on the wrappers' optimisers (so checkpoints hold their state).
    assert model.task.optimizer is optim["task"].optimizer
    assert model._learner.fusion_optimizer is optim["fusion"].optimizer


def test_interleaved_step_updates_all_three():
    model = make_model()
    optim = optim_for(model)
    before = [params_of(m) for m in (model.fusion_net, model.generator, model.task_net)]
    stats = model.train_step(
        {"phase": "interleaved", "meta_train": batch(1), "meta_test": batch(2)}, optim)
    for old, module in zip(before, (model.fusion_net, model.generator, model.task_net), strict=True):
        assert changed(old, module)
    assert {"hypergrad_norm", "loss_fusion_meta", "loss_task"} <= set(stats)


def test_bad_inputs_are_named():
    model = make_model()
    optim = optim_for(model)
    with pytest.raises(ValueError, match="phase"):
        model.train_step({"phase": "warmup", "inputs": batch(1)}, optim)
    with pytest.raises(KeyError, match="data_keys"):
        model.train_step({"phase": "fusion", "inputs": {"a": torch.rand(2, 1, 8, 8)}}, optim)
    with pytest.raises(ValueError, match="learner options"):
        MetaFusionModel(EngineTestFusion(), LearnableFusionLoss(ConstantWeights()),
                        EngineTestTask(), learner={"inner_steps": 3})


def test_constructor_skips_parameter_free_generator():
    model = make_model(generator=ConstantWeights())
    optim = optim_for(model)
    assert set(optim.keys()) == {"fusion", "task"}
    g_stats = model.train_step({"phase": "meta", "meta_train": batch(1), "meta_test": batch(2)}, optim)
    assert g_stats["w_ir"] == pytest.approx(0.5)
    with pytest.raises(KeyError, match="no module"):
        MultiModuleOptimWrapperConstructor(
            {"critic": dict(type="OptimWrapper", optimizer=dict(type="Adam", lr=1e-3))})(model)


def test_predict_outputs_per_sample():
    model = make_model()
    data = {**batch(5), "img_id": ["x", "y"]}
    outputs = model.test_step(data)
    assert len(outputs) == 2
    first = outputs[0]
    assert first["fused"].shape == (1, 16, 16) and first["weight_maps"].shape == (2, 16, 16)
    assert first["img_id"] == "x" and first["target"].shape == (16, 16)
    assert torch.allclose(first["weight_maps"].sum(0), torch.ones(16, 16), atol=1e-5)


# ---------------------------------------------------------- runner + hooks
def test_runner_logs_every_quantity_and_draws_panels(tmp_path):
    runner = Runner.from_cfg(Config(base_cfg(tmp_path)))
    runner.train()
    assert runner.iter == 2 * (2 + 3) and runner.epoch == 2
    logs = [json.loads(line) for line in next(tmp_path.glob("*/vis_data/scalars.json")).read_text().splitlines()]
    keys = set().union(*logs)
    for key in ("loss_fusion", "loss_int", "loss_grad", "loss_task", "loss_task_meta",
                "hypergrad_norm", "w_ir", "w_vis", "fusion.lr", "generator.lr", "task.lr"):
        assert key in keys, key
    meta_rows = [r for r in logs if "hypergrad_norm" in r]
    fusion_rows = [r for r in logs if "loss_int" in r]
    assert len(meta_rows) == 4 and len(fusion_rows) == 6  # phases do not leak stale keys
    assert not any("hypergrad_norm" in r for r in fusion_rows)
    assert logs[-1]["generator.lr"] == pytest.approx(5e-3)  # StepLR(1, 0.5) after epoch 1
    panels = sorted((tmp_path / "vis").glob("iter_*.png"))
    assert [p.name for p in panels] == ["iter_000001.png", "iter_000004.png", "iter_000008.png"]
    assert list(tmp_path.glob("*/vis_data/vis_image/fusion_panel_*.png"))
    text = next(tmp_path.glob("*/*.log")).read_text()
    assert "Epoch(train) [2][5/5]" in text and "eta:" in text
    assert "meta phase" in text and "fusion phase" in text
    last = Path((tmp_path / "last_checkpoint").read_text().strip())
    assert last.name == "iter_10.pth" and last.is_file()
    ckpt = torch.load(last, map_location="cpu", weights_only=True)
    assert {"fusion", "generator", "task"} <= set(ckpt["optimizer"])
    assert set(ckpt["param_schedulers"]) == {"fusion", "generator", "task"}
    assert {"rng_state", "loop_state"} <= set(ckpt["meta"])
    assert any(k.startswith("task_net.") for k in ckpt["state_dict"])
    assert any(k.startswith("loss.generator.") for k in ckpt["state_dict"])


def test_resume_refuses_a_changed_epoch_plan(tmp_path):
    cfg = base_cfg(tmp_path)
    Runner.from_cfg(Config(copy.deepcopy(cfg))).train()
    cfg2 = copy.deepcopy(cfg)
    cfg2["train_cfg"]["fusion_steps"] = 4
    cfg2["train_cfg"]["max_epochs"] = 3
    cfg2["resume"] = True
    with pytest.raises(RuntimeError, match="epoch plan changed"):
        Runner.from_cfg(Config(cfg2)).train()


def test_fusion_panel_layout():
    a, b = torch.rand(2, 1, 20, 30), torch.rand(2, 1, 20, 30)
    w = torch.softmax(torch.rand(2, 2, 20, 30), 1)
    panel = fusion_panel(a, b, (a + b) / 2, w, min_tile_width=0)
    assert panel.dtype == np.uint8 and panel.shape[2] == 3
    assert panel.shape[1] == 5 * 30 + 4 * 4
    assert panel.shape[0] == 18 + 2 * 20 + 4
    big = fusion_panel(a[:1], b[:1], a[:1], w[:1])  # small tiles are enlarged
    assert big.shape[1] == 5 * 150 + 4 * 4


# ------------------------------------------------------------------ helpers
def test_atomic_write_keeps_the_old_file_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pth"
    atomic_write_bytes(path, b"old")

    def broken(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", broken)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(path, b"new")
    monkeypatch.undo()
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pth"]  # no temp file left
    atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"new"


def test_rng_state_round_trip_through_a_weights_only_checkpoint(tmp_path):
    import random

    torch.manual_seed(1)
    np.random.seed(2)
    random.seed(3)
    state = capture_rng_state()
    expected = (torch.rand(3), np.random.rand(3), random.random())
    torch.save({"rng": state}, tmp_path / "s.pth")
    torch.manual_seed(99)
    np.random.seed(99)
    random.seed(99)
    restore_rng_state(torch.load(tmp_path / "s.pth", weights_only=True)["rng"])
    assert torch.equal(torch.rand(3), expected[0])
    assert np.array_equal(np.random.rand(3), expected[1])
    assert random.random() == expected[2]


def test_task_metric_batches_and_reindexes_box_targets():
    from learnable_fusion_loss.tasks.yolov8 import ultralytics_targets

    # per-sample targets (pixel boxes), batched by the detection adapter's codec
    results = [
        {"fused_task": torch.full((1, 4, 4), 255, dtype=torch.uint8),
         "target": {"labels": torch.tensor([1, 0]), "bboxes": torch.tensor([[0., 0., 2., 2.], [1., 1., 4., 3.]])}},
        {"fused_task": torch.zeros((1, 4, 4), dtype=torch.uint8),
         "target": {"labels": torch.tensor([2]), "bboxes": torch.tensor([[0., 1., 3., 4.]])}},
        {"fused_task": torch.zeros((1, 8, 8), dtype=torch.uint8),
         "target": {"labels": torch.zeros(0, dtype=torch.long), "bboxes": torch.zeros(0, 4)}},
    ]
    batches = list(batch_task_samples(results, batch_size=8, collate=ultralytics_targets))
    assert len(batches) == 2  # the 8x8 sample starts a new batch
    fused, target = batches[0]
    assert fused.shape == (2, 1, 4, 4) and float(fused[0].max()) == 1.0
    assert target["batch_idx"].tolist() == [0.0, 0.0, 1.0]
    assert target["cls"].shape == (3, 1)
    metric = TaskMetric()
    with pytest.raises(RuntimeError, match="TaskMetricHook"):
        metric.compute_metrics(results)


def test_task_metric_evaluates_through_the_adapter():
    task = EngineTestTask()
    metric = TaskMetric(keys=["pixel_acc"])
    metric.bind(task)
    fused = torch.rand(3, 1, 8, 8)
    targets = task.predict(torch.round(fused * 255) / 255)
    metric.process({}, [{"fused_task": f, "target": t} for f, t in zip(fused, targets, strict=True)])
    assert metric.compute_metrics(metric.results) == {"pixel_acc": 1.0}


def test_resolve_data_root_priority(tmp_path, monkeypatch):
    def cfg():
        return {"data_root": "../data_in_cfg",
                "train_dataloader": {"dataset": {"type": "X", "root": "msrs_det", "ids": "m/t.txt"}},
                "test_dataloader": {"dataset": {"type": "W", "dataset": {"root": "/abs/set"}}}}

    monkeypatch.delenv("LFL_DATA_ROOT", raising=False)
    c = cfg()
    root = resolve_data_root(c, tmp_path)
    assert root == (tmp_path / "../data_in_cfg").resolve()
    assert c["train_dataloader"]["dataset"]["root"] == str(root / "msrs_det")
    assert c["train_dataloader"]["dataset"]["ids"] == str(root / "m/t.txt")
    assert c["test_dataloader"]["dataset"]["dataset"]["root"] == "/abs/set"
    monkeypatch.setenv("LFL_DATA_ROOT", str(tmp_path / "env"))
    c = cfg()
    assert resolve_data_root(c, tmp_path) == tmp_path / "env"
    c = cfg()
    assert resolve_data_root(c, tmp_path, explicit="/explicit") == Path("/explicit")
    assert c["train_dataloader"]["dataset"]["root"] == "/explicit/msrs_det"


def test_resolve_data_root_needs_one(tmp_path, monkeypatch):
    monkeypatch.delenv("LFL_DATA_ROOT", raising=False)
    cfg = {"train_dataloader": {"dataset": {"type": "X", "root": "set"}}}
    with pytest.raises(ValueError, match=r"data_root.*LFL_DATA_ROOT"):
        resolve_data_root(cfg, tmp_path)
    assert cfg["train_dataloader"]["dataset"]["root"] == "set"  # nothing half-resolved


def test_resolve_data_root_is_not_needed_without_relative_roots(monkeypatch):
    monkeypatch.delenv("LFL_DATA_ROOT", raising=False)
    cfg = {"train_dataloader": {"dataset": {"type": "UsersOwn", "length": 8}}}
    assert resolve_data_root(cfg, "/repo") is None
    assert "data_root" not in cfg


def test_engine_registers_its_components():
    from mmengine.registry import FUNCTIONS, MODEL_WRAPPERS, OPTIM_WRAPPER_CONSTRUCTORS

    from learnable_fusion_loss.registry import HOOKS, LOOPS, METRICS

    assert LOOPS.get("MetaFusionTrainLoop") is engine.MetaFusionTrainLoop
    for name in ("AtomicCheckpointHook", "TrainingStateHook", "FusionVisualizationHook", "TaskMetricHook"):
        assert HOOKS.get(name) is not None
    assert METRICS.get("TaskMetric") is TaskMetric
    assert MODELS.get("MetaFusionModel") is MetaFusionModel
    assert OPTIM_WRAPPER_CONSTRUCTORS.get("MultiModuleOptimWrapperConstructor") is not None
    assert MODEL_WRAPPERS.get("GradientAveragingWrapper") is not None
    assert FUNCTIONS.get("collate_paired") is not None


# ------------------------------------------------------------- data parallel
def _data_parallel_worker(rank: int, world: int, port: int, out_dir: str) -> None:
    import torch.distributed as dist

    from learnable_fusion_loss.engine import GradientAveragingWrapper

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        model = make_model()
        if rank == 1:  # a different start: the wrapper must broadcast rank 0's weights
            with torch.no_grad():
                for p in model.parameters():
                    p.add_(1.0)
        wrapper = GradientAveragingWrapper(model)
        optim = optim_for(model)
        start = torch.cat([p.detach().flatten() for p in model.parameters()])
        wrapper.train_step({"phase": "meta", "meta_train": batch(10 * rank + 1),
                            "meta_test": batch(10 * rank + 2)}, optim)
        for step in range(2):
            wrapper.train_step({"phase": "fusion", "inputs": batch(10 * rank + 3 + step)}, optim)
        end = torch.cat([p.detach().flatten() for p in model.parameters()])
        torch.save({"start": start, "end": end}, Path(out_dir) / f"rank{rank}.pth")
    finally:
        dist.destroy_process_group()


def test_gradient_averaging_wrapper_keeps_ranks_in_sync(tmp_path):
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_data_parallel_worker, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pth") for r in (0, 1))
    assert torch.equal(r0["start"], r1["start"])  # broadcast from rank 0
    assert torch.equal(r0["end"], r1["end"])  # same averaged gradients, same steps
    assert not torch.equal(r0["start"], r0["end"])
