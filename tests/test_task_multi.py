"""MultiTask: several task adapters drive one task loss (fixed or learned weights).

* the combined hypergradient is the weighted sum of the single-task ones (float64,
  exact, on small ModuleTask members; float32 on SegFormer + YOLOv8 with real
  msrs_det samples through the multi-task pipeline), and each member's task loss
  reaches G;
* snapshot/restore (and a skipped step) leave every member, the log-variances and
  the optimiser states bit-identical;
* the learned (Kendall et al.) form's value and gradients, its log-variances are
  T's (never G's);
* bad configurations are refused, naming the parameter.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from learnable_fusion_loss.engine.samples import data_key_names, read_batch
from learnable_fusion_loss.generators import ConvWeightGenerator
from learnable_fusion_loss.losses import LearnableFusionLoss
from learnable_fusion_loss.meta import FusionBatch, MetaLossLearner
from learnable_fusion_loss.registry import MODELS
from learnable_fusion_loss.tasks import CallableTask, ModuleTask, MultiTask, TaskAdapter
from learnable_fusion_loss.tasks.base import buffers_kept_unless

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _tiny import TinyFusion, TinyTaskNet  # noqa: E402

DT = torch.float64


def _members(dtype=DT, seed: int = 0) -> dict[str, ModuleTask]:
    """A regression member (2 channels, MSE) and a classification member (3 classes, CE)."""
    torch.manual_seed(seed)
    reg, cls = TinyTaskNet(2).to(dtype), TinyTaskNet(3).to(dtype)
    return {
        "reg": ModuleTask(reg, nn.functional.mse_loss, torch.optim.Adam(reg.parameters(), lr=1e-2)),
        "cls": ModuleTask(cls, nn.functional.cross_entropy, torch.optim.Adam(cls.parameters(), lr=1e-2)),
    }


def _batch(seed: int, size: int = 8, dtype=DT) -> FusionBatch:
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(2, 1, size, size, generator=g, dtype=dtype)
    b = torch.rand(2, 1, size, size, generator=g, dtype=dtype)
    target = {"reg": torch.randn(2, 2, size, size, generator=g, dtype=dtype),
              "cls": torch.randint(0, 3, (2, size, size), generator=g)}
    return FusionBatch(a=a, b=b, target=target)


class _Parts:
    """One F and G shared by several learners (a hypergradient changes neither)."""

    def __init__(self, dtype=DT, seed: int = 0) -> None:
        torch.manual_seed(seed)
        self.fusion = TinyFusion().to(dtype)
        self.loss = LearnableFusionLoss(ConvWeightGenerator(hidden=4, depth=1).to(dtype))

    def learner(self, task, hypergradient: str = "unrolled") -> MetaLossLearner:
        return MetaLossLearner(
            self.fusion, self.loss, task, fusion_optimizer=torch.optim.SGD(self.fusion.parameters(), lr=0.5),
            inner_backend=None if hypergradient == "forward" else "torch.func", hypergradient=hypergradient)


def _flat(grads) -> torch.Tensor:
    return torch.cat([g.reshape(-1) for g in grads])


class _Single:
    """One member alone, on its own entry of a multi-task batch's target."""

    def __init__(self, name: str, task: TaskAdapter) -> None:
        self.name, self.task = name, task

    def loss(self, fused, target):
        return self.task.loss(fused, target[self.name])

    def train_step(self, fused, target):
        return self.task.train_step(fused, target[self.name])

    def snapshot(self):
        return self.task.snapshot()

    def restore(self, snapshot):
        self.task.restore(snapshot)


def _state(task: MultiTask) -> dict[str, torch.Tensor]:
    """Every tensor of T: nets, buffers, log-variances and all optimiser states."""
    out = {f"net.{k}": v.detach().clone() for k, v in task.net.state_dict().items()}
    optimizers = {n: t.optimizer for n, t in task.tasks.items() if getattr(t, "optimizer", None)}
    if task._weight_optimizer is not None:
        optimizers["log_vars"] = task._weight_optimizer
    for name, opt in optimizers.items():
        for pid, state in opt.state_dict()["state"].items():
            for key, value in state.items():
                out[f"opt.{name}.{pid}.{key}"] = torch.as_tensor(value).clone()
    return out


def _assert_identical(before: dict, after: dict) -> None:
    assert before.keys() == after.keys()
    for key in before:
        assert torch.equal(before[key], after[key]), key


# ---------------------------------------------------------------- hypergradients
@pytest.mark.parametrize("hypergradient", ["unrolled", "forward"])
def test_combined_hypergradient_is_the_weighted_sum_of_the_single_task_ones(hypergradient):
    parts, members = _Parts(), _members()
    weights = {"reg": 0.3, "cls": 1.7}
    tr, te = _batch(1), _batch(2)
    single = {n: _flat(parts.learner(_Single(n, t), hypergradient).hypergradient(tr, te).grads)
              for n, t in members.items()}
    multi = MultiTask(members, weights=weights)
    before = _state(multi)
    combined = _flat(parts.learner(multi, hypergradient).hypergradient(tr, te).grads)
    _assert_identical(before, _state(multi))  # T restored whole after T'
    expected = sum(w * single[n] for n, w in weights.items())
    assert single["reg"].abs().max() > 0 and single["cls"].abs().max() > 0
    torch.testing.assert_close(combined, expected, rtol=1e-10, atol=1e-14)
    # each member's loss reaches G: neither direction is the other's
    cos = torch.dot(single["reg"], single["cls"]) / (single["reg"].norm() * single["cls"].norm())
    assert abs(float(cos)) < 0.99


def test_a_member_of_weight_zero_contributes_nothing():
    parts, members = _Parts(), _members()
    tr, te = _batch(3), _batch(4)
    only = {}
    for name in members:
        weights = {n: float(n == name) for n in members}
        only[name] = _flat(parts.learner(MultiTask(members, weights=weights)).hypergradient(tr, te).grads)
        alone = _flat(parts.learner(_Single(name, members[name])).hypergradient(tr, te).grads)
        torch.testing.assert_close(only[name], alone, rtol=1e-12, atol=0)
        assert only[name].abs().max() > 0
    assert not torch.allclose(only["reg"], only["cls"])


def test_learned_weights_scale_each_member_by_its_look_ahead_weight():
    """With learned weights, G's gradient is sum_k exp(-s'_k) dL_k/dphi (s' after T's step)."""
    parts, members = _Parts(), _members()
    tr, te = _batch(5), _batch(6)
    single = {n: _flat(parts.learner(_Single(n, t)).hypergradient(tr, te).grads) for n, t in members.items()}
    multi = MultiTask(members, weights={"reg": 2.0, "cls": 0.5}, learn_weights=True, weight_lr=0.1)
    with torch.no_grad(), buffers_kept_unless(parts.fusion):  # the T' step the learner takes
        fused = parts.fusion(tr.a, tr.b)
    snapshot = multi.snapshot()
    multi.train_step(fused, tr.target)
    s_prime = multi.net.log_vars.detach().clone()
    multi.restore(snapshot)
    combined = _flat(parts.learner(multi).hypergradient(tr, te).grads)
    expected = sum(math.exp(-float(s_prime[k])) * single[n] for k, n in enumerate(multi.names))
    torch.testing.assert_close(combined, expected, rtol=1e-10, atol=1e-14)
    assert not torch.equal(s_prime, torch.tensor([-math.log(2.0), -math.log(0.5)]))  # s did step
    learner = parts.learner(multi)
    assert all(p is not multi.net.log_vars for p in learner.generator_params)  # s is T's, not G's


# ---------------------------------------------------------------- state
@pytest.mark.parametrize("shared", [False, True])
def test_snapshot_restore_is_bit_identical_for_every_member(shared):
    multi = MultiTask(_members(), learn_weights=True, weight_lr=0.05)
    if shared:  # optim_wrapper.task: one optimiser over MultiTask.net
        multi.optimizer = torch.optim.Adam(multi.net.parameters(), lr=1e-2)
    batch = _batch(7)
    fused = torch.rand(2, 1, 8, 8, dtype=DT)
    multi.train_step(fused, batch.target)  # optimiser states exist before the snapshot
    before = _state(multi)
    snapshot = multi.snapshot()
    for _ in range(3):
        stats = multi.train_step(fused, batch.target)
    assert "skipped" not in stats
    changed = _state(multi)
    assert all(not torch.equal(before[k], changed[k]) for k in before if "weight" in k or "log_vars" in k)
    multi.restore(snapshot)
    _assert_identical(before, _state(multi))
    multi.restore(snapshot)  # the snapshot stays reusable
    _assert_identical(before, _state(multi))


def test_a_step_that_one_member_skips_is_not_applied_at_all():
    multi = MultiTask(_members(), learn_weights=True)
    fused = torch.rand(2, 1, 8, 8, dtype=DT)
    target = _batch(8).target
    multi.train_step(fused, target)
    before = _state(multi)
    bad = {**target, "reg": torch.full_like(target["reg"], float("nan"))}
    stats = multi.train_step(fused, bad)
    assert stats["skipped"] == 1.0 and stats["reg/skipped"] == 1.0
    _assert_identical(before, _state(multi))
    stats = multi.train_step(fused, target)
    assert "skipped" not in stats and set(stats) >= {"loss_task", "reg/loss_task", "cls/loss_task",
                                                     "reg/weight", "cls/log_var"}


def test_the_skip_rolls_back_members_that_already_stepped():
    members = _members()
    multi = MultiTask({"cls": members["cls"], "reg": members["reg"]})  # cls steps first
    fused = torch.rand(2, 1, 8, 8, dtype=DT)
    target = _batch(9).target
    before = _state(multi)
    stats = multi.train_step(fused, {"cls": target["cls"], "reg": target["reg"] * float("nan")})
    assert stats["skipped"] == 1.0 and "cls/skipped" not in stats
    _assert_identical(before, _state(multi))


# ---------------------------------------------------------------- learned form
def test_learned_form_value_and_gradients():
    members = _members()
    multi = MultiTask(members, learn_weights=True)
    s = torch.tensor([0.5, -0.3])
    with torch.no_grad():
        multi.net.log_vars.copy_(s)
    fused = torch.rand(2, 1, 8, 8, dtype=DT, requires_grad=True)
    target = _batch(10).target
    value = multi.loss(fused, target)
    parts = {n: members[n].loss(fused, target[n]) for n in multi.names}
    values = {n: float(v.detach()) for n, v in parts.items()}
    expected = sum(torch.exp(-s[k]).double() * parts[n] + s[k].double() for k, n in enumerate(multi.names))
    torch.testing.assert_close(value, expected)
    grad_fused, grad_s = torch.autograd.grad(value, [fused, multi.net.log_vars])
    weighted = sum(math.exp(-float(s[k])) * torch.autograd.grad(parts[n], fused, retain_graph=True)[0]
                   for k, n in enumerate(multi.names))
    torch.testing.assert_close(grad_fused, weighted)
    expect_s = torch.tensor([1 - math.exp(-float(s[k])) * values[n] for k, n in enumerate(multi.names)])
    torch.testing.assert_close(grad_s, expect_s)
    assert {k: round(float(v.detach()), 6) for k, v in multi.weights().items()} == {
        "reg": round(math.exp(-0.5), 6), "cls": round(math.exp(0.3), 6)}


def test_learned_log_variances_move_to_the_log_of_each_loss():
    """For fixed losses the optimum of exp(-s) L + s is s = log L (weight 1 / L)."""
    scale = {"small": 0.2, "large": 12.0}
    multi = MultiTask({n: CallableTask(lambda f, t, c=c: c * (1 + f.mean() * 0)) for n, c in scale.items()},
                      learn_weights=True, weight_lr=0.05)
    fused = torch.rand(1, 1, 4, 4)
    for _ in range(400):
        stats = multi.train_step(fused, {"small": None, "large": None})
    for k, name in enumerate(multi.names):
        assert abs(float(multi.net.log_vars[k].detach()) - math.log(scale[name])) < 0.05
        assert stats[f"{name}/weight"] == pytest.approx(1 / scale[name], rel=0.06)


# ---------------------------------------------------------------- codec and config
def test_targets_flow_per_member_from_a_nested_data_keys_target():
    multi = MultiTask(_members(torch.float32))
    keys = {"a": "source_a", "b": "source_b", "task_a": "source_a_task", "task_b": "source_b_task",
            "target": {"reg": "dense", "cls": {"mask": "gt_sem_seg"}}}
    data = {"source_a": torch.rand(2, 1, 4, 4), "source_b": torch.rand(2, 1, 4, 4),
            "dense": torch.rand(2, 2, 4, 4), "gt_sem_seg": torch.randint(0, 3, (2, 4, 4))}
    batch, targets = read_batch(data, keys, multi)
    assert [sorted(t) for t in targets] == [["cls", "reg"]] * 2 and set(targets[0]["cls"]) == {"mask"}
    assert torch.equal(batch.target["reg"], data["dense"])
    assert torch.equal(batch.target["cls"]["mask"], data["gt_sem_seg"])
    assert {"dense", "gt_sem_seg"} <= data_key_names(keys)
    split = multi.split_targets(batch.target, 2, (4, 4))
    assert torch.equal(split[1]["reg"], targets[1]["reg"]) and torch.equal(split[1]["cls"]["mask"],
                                                                           targets[1]["cls"]["mask"])


@MODELS.register_module(name="MultiTestTask", force=True)
class MultiTestTask(ModuleTask):
    def __init__(self, channels: int = 2, lr: float | None = None) -> None:
        net = TinyTaskNet(channels)
        super().__init__(net, nn.functional.mse_loss,
                         torch.optim.Adam(net.parameters(), lr=lr) if lr else None)


def test_builds_from_config_and_is_registered():
    multi = MODELS.build(dict(type="MultiTask", tasks=dict(x=dict(type="MultiTestTask"),
                                                            y=dict(type="MultiTestTask", channels=3))))
    assert isinstance(multi, TaskAdapter) and multi.names == ("x", "y")
    assert set(dict(multi.net.named_children())["members"]) == {"x", "y"}
    multi.optimizer = torch.optim.Adam(multi.net.parameters())
    assert multi.tasks["x"].optimizer is multi.optimizer is multi.tasks["y"].optimizer


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    (dict(tasks=dict(x=dict(type="NoSuchTask"))), KeyError, r"tasks\['x'\]\.type='NoSuchTask'"),
    (dict(tasks=dict(x=dict(channels=2))), ValueError, r"tasks\['x'\] has no 'type'"),
    (dict(tasks={}), ValueError, "tasks must be a non-empty dict"),
    (dict(tasks=dict(x=dict(type="MultiTestTask")), weights=dict(y=1.0)), ValueError,
     r"weights must have one entry per member of tasks \['x'\], got \['y'\]"),
    (dict(tasks=dict(x=dict(type="MultiTestTask"), y=dict(type="MultiTestTask")), weights=dict(x=1.0, y=-0.5)),
     ValueError, r"weights\['y'\] must be finite and >= 0, got -0.5"),
    (dict(tasks=dict(x=dict(type="MultiTestTask")), weights=dict(x=0.0)), ValueError, "at least one must be > 0"),
    (dict(tasks=dict(x=dict(type="MultiTestTask")), weights=dict(x=0.0), learn_weights=True), ValueError,
     r"weights\['x'\] must be finite and > 0 \(initial learned weights\)"),
    (dict(tasks=dict(x=dict(type="MultiTestTask")), weight_lr=0.0), ValueError, "weight_lr must be"),
    (dict(tasks={"a/b": dict(type="MultiTestTask")}), ValueError, "contain no '/'"),
])
def test_bad_configs_are_refused_by_name(kwargs, error, match):
    with pytest.raises(error, match=match):
        MultiTask(**kwargs)


def test_bad_targets_and_optimiser_conflicts_are_named():
    multi = MultiTask(dict(x=dict(type="MultiTestTask", lr=1e-3)))
    with pytest.raises(KeyError, match=r"no entry for members \['x'\] and entries \['z'\]"):
        multi.loss(torch.rand(1, 1, 4, 4), {"z": torch.zeros(1, 2, 4, 4)})
    with pytest.raises(TypeError, match="target must be a dict"):
        multi.loss(torch.rand(1, 1, 4, 4), torch.zeros(1, 2, 4, 4))
    with pytest.raises(ValueError, match=r"members \{'x': \['lr'\]\} set their optimiser"):
        multi.optimizer = torch.optim.Adam(multi.net.parameters())


# ---------------------------------------------------------------- real members
_REAL = importlib.util.find_spec("mmseg") is not None and importlib.util.find_spec("ultralytics") is not None


@pytest.fixture(scope="module")
def real_batches(data_root):
    """Two meta-train/meta-test batches of real msrs_det pairs through the multi-task pipeline."""
    from learnable_fusion_loss.datasets import collate_paired
    from learnable_fusion_loss.datasets.detection import YoloPairedDetDataset

    pipeline = [dict(type="BoxesToWeakMask", keep_boxes=True), dict(type="TaskView", size=(64, 64))]
    dataset = YoloPairedDetDataset(data_root / "msrs_det", "train", pipeline=pipeline)
    return [collate_paired([dataset[i], dataset[i + 1]]) for i in (0, 2)]


@pytest.mark.skipif(not _REAL, reason="needs mmsegmentation and ultralytics (extras 'seg', 'det')")
def test_segformer_and_yolo_members_both_reach_g(real_batches):
    from learnable_fusion_loss import compat

    compat.apply_offline_defaults()
    import learnable_fusion_loss.tasks.yolov8  # noqa: F401  (registers YOLOv8Task)
    from learnable_fusion_loss.tasks.segformer import segformer_config

    seg_model = segformer_config(4, 1, embed_dims=8, num_layers=(1, 1, 1, 1), num_heads=(1, 1, 1, 1),
                                 channels=16, drop_path_rate=0.0, dropout_ratio=0.0)
    multi = MultiTask(dict(seg=dict(type="SegFormerTask", num_classes=4, model=seg_model, seed=0),
                           det=dict(type="YOLOv8Task", num_classes=3, seed=0)),
                      weights=dict(seg=0.5, det=2.0))
    keys = {"a": "source_a", "b": "source_b", "task_a": "source_a_task", "task_b": "source_b_task",
            "target": {"seg": "gt_sem_seg", "det": {"bboxes": "gt_bboxes", "labels": "gt_labels"}}}
    tr, te = (read_batch(b, keys, multi)[0] for b in real_batches)
    assert tr.target["seg"].shape == (2, 64, 64) and {"batch_idx", "cls", "bboxes"} <= set(tr.target["det"])
    parts = _Parts(torch.float32)
    single = {n: _flat(parts.learner(_Single(n, t)).hypergradient(tr, te).grads) for n, t in multi.tasks.items()}
    before = _state(multi)
    combined = _flat(parts.learner(multi).hypergradient(tr, te).grads)
    _assert_identical(before, _state(multi))
    for name, g in single.items():
        assert g.abs().max() > 0, name
    expected = 0.5 * single["seg"] + 2.0 * single["det"]
    torch.testing.assert_close(combined, expected, rtol=1e-4, atol=1e-4 * float(expected.abs().max()))
    for name, part in (("seg", 0.5 * single["seg"]), ("det", 2.0 * single["det"])):
        # each member's share is far above the check's tolerance: dropping either fails it
        assert float((combined - (expected - part)).norm()) > 100 * float((combined - expected).norm()), name
    stats = multi.train_step(torch.rand(2, 1, 64, 64), tr.target)
    assert {"loss_task", "seg/loss_task", "det/loss_box"} <= set(stats) and "skipped" not in stats
    metrics = multi.evaluate([(torch.rand(2, 1, 64, 64), tr.target)])
    assert {"seg/mIoU", "det/mAP50"} <= set(metrics)
    pred = multi.predict(torch.rand(2, 1, 64, 64))
    assert pred["seg"].shape == (2, 64, 64) and len(pred["det"]) == 2
