"""YOLOv8Task (ultralytics 8.3 DetectionModel + v8DetectionLoss) on real msrs_det images."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from learnable_fusion_loss import compat

compat.apply_offline_defaults()  # before ultralytics is imported below
pytest.importorskip("ultralytics", reason="ultralytics (extra 'det') is not installed")

from learnable_fusion_loss.registry import MODELS  # noqa: E402
from learnable_fusion_loss.tasks.base import TaskAdapter  # noqa: E402
from learnable_fusion_loss.tasks.yolov8 import YOLOv8Task, collate_yolo_targets  # noqa: E402

SIZE = (160, 213)  # H, W: 640x480 scaled by 1/3 (rounded); padded to 160x224 by the adapter


def _grey(path: Path) -> torch.Tensor:
    from PIL import Image

    return torch.from_numpy(np.asarray(Image.open(path).convert("L"), dtype=np.float32) / 255.0)


def load_msrs(
    data_root: Path, split: str, ids: list[str]
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Stand-in fused image (mean of IR and grey VIS, real pixels) and YOLO rows per image."""
    base = data_root / "msrs_det" / split
    images, rows = [], []
    for name in ids:
        fused = 0.5 * (_grey(base / "ir" / f"{name}.png") + _grey(base / "vi" / f"{name}.png"))
        images.append(F.interpolate(fused[None, None], size=SIZE, mode="bilinear",
                                    antialias=True, align_corners=False)[0])
        labels = np.loadtxt(base / "labels" / f"{name}.txt", ndmin=2).reshape(-1, 5)
        rows.append(torch.tensor(labels, dtype=torch.float32))
    return torch.stack(images).clamp(0, 1), rows


def _ids(data_root: Path, split: str, count: int) -> list[str]:
    labels = sorted((data_root / "msrs_det" / split / "labels").glob("*.txt"))
    return [p.stem for p in labels if p.read_text().strip()][:count]


@pytest.fixture(scope="module")
def train_batch(data_root):
    x, rows = load_msrs(data_root, "train", _ids(data_root, "train", 2))
    return x, collate_yolo_targets(rows)


def test_is_registered_task_adapter():
    task = MODELS.build(dict(type="YOLOv8Task", num_classes=3, in_channels=3, seed=0))
    assert isinstance(task, TaskAdapter)
    assert task.net.model[0].conv.in_channels == 3
    assert task.net.model[-1].nc == 3
    assert task.net.stride.tolist() == [8.0, 16.0, 32.0]
    assert (task.net.args.box, task.net.args.cls, task.net.args.dfl) == (7.5, 0.5, 1.5)
    assert task.net.args.plots is False
    assert task.optimizer.param_groups[0]["lr"] == pytest.approx(1e-4)
    # yolov8n: about 3.0 M parameters
    assert 2.9e6 < sum(p.numel() for p in task.net.parameters()) < 3.2e6


def test_class_names_are_given_or_generic():
    assert YOLOv8Task(num_classes=3, seed=0).class_names == ("class_0", "class_1", "class_2")
    task = YOLOv8Task(num_classes=2, class_names=("a", "b"), seed=0)
    assert task.class_names == ("a", "b") and task.net.names == {0: "a", 1: "b"}
    with pytest.raises(ValueError, match="class_names has 1 names"):
        YOLOv8Task(num_classes=2, class_names=("a",), seed=0)


def test_bad_inputs_name_the_argument(train_batch):
    task = YOLOv8Task(seed=0)
    x, target = train_batch
    with pytest.raises(ValueError, match="fused"):
        task.loss(x[0], target)
    with pytest.raises(ValueError, match="cls"):
        task.loss(x, {**target, "cls": target["cls"] + 3})
    with pytest.raises(ValueError, match="batch_idx"):
        task.loss(x, {**target, "batch_idx": target["batch_idx"] + 5})
    with pytest.raises(ValueError, match="weights"):
        YOLOv8Task(model_cfg="yolov8n.pt")
    with pytest.raises(ValueError, match="hyp"):
        YOLOv8Task(hyp={"not_a_key": 1})


def test_loss_is_sum_of_gained_terms_and_padding_is_accounted(train_batch):
    task = YOLOv8Task(seed=0)
    task.net.eval()  # fixed BN statistics: compare two formulations exactly
    x, target = train_batch
    loss, terms = task.loss_terms(x, target)
    assert loss.item() == pytest.approx(terms.sum().item(), rel=1e-5)
    # Same image already padded to 224 by hand; boxes renormalised to the padded width.
    padded = F.pad(x, (0, 224 - SIZE[1], 0, 0), value=task.pad_value)
    boxes = target["bboxes"] * torch.tensor([SIZE[1] / 224, 1.0, SIZE[1] / 224, 1.0])
    loss_padded = task.loss(padded, {**target, "bboxes": boxes})
    assert loss_padded.item() == pytest.approx(loss.item(), rel=1e-5)
    # ...whereas ignoring the padding (boxes left as they were) changes the loss.
    assert task.loss(padded, target).item() != pytest.approx(loss.item(), rel=1e-3)


def test_loss_gradient_and_double_backward(train_batch):
    """Non-zero input gradient and a finite second-order gradient.

    YOLO's assigner works on detached predictions, so this is the gradient for a
    fixed assignment (a surrogate); it is not checked by finite differences.
    """
    task = YOLOv8Task(seed=0)
    x, target = train_batch
    fused = x.clone().requires_grad_(True)
    (grad_fused,) = torch.autograd.grad(task.loss(fused, target), fused)
    assert torch.isfinite(grad_fused).all() and grad_fused.abs().sum() > 0
    assert grad_fused.shape == x.shape  # padding is inside the graph

    torch.manual_seed(0)
    gain = torch.ones(1, requires_grad=True)
    conv = torch.nn.Conv2d(1, 1, 3, padding=1)
    loss = task.loss(torch.sigmoid(conv(x * gain)), target)
    grads = torch.autograd.grad(loss, list(conv.parameters()), create_graph=True)
    grad_norm = torch.sqrt(sum((g**2).sum() for g in grads))
    (second,) = torch.autograd.grad(grad_norm, gain)
    assert torch.isfinite(second).all() and second.abs().item() > 0


def test_ten_steps_lower_the_loss(train_batch):
    task = YOLOv8Task(seed=0)
    x, target = train_batch
    with torch.no_grad():
        before = task.loss(x, target).item()
    history = [task.train_step(x, target) for _ in range(10)]
    with torch.no_grad():
        after = task.loss(x, target).item()
    assert all(math.isfinite(h["loss_task"]) for h in history)
    assert {"loss_box", "loss_cls", "loss_dfl"} <= set(history[0])
    assert after < 0.9 * before, (before, [h["loss_task"] for h in history], after)


def test_snapshot_step_restore_is_bit_identical(train_batch):
    task = YOLOv8Task(seed=0)
    x, target = train_batch
    task.train_step(x, target)
    tensors = {k: v.clone() for k, v in task.net.state_dict().items()}
    opt = copy.deepcopy(task.optimizer.state_dict())  # state_dict() holds live tensors
    snap = task.snapshot()
    first = task.train_step(x, target)["loss_task"]
    assert int(task.optimizer.state_dict()["state"][0]["step"]) == 2
    assert any(not torch.equal(v, tensors[k]) for k, v in task.net.state_dict().items())
    task.restore(snap)
    for key, value in task.net.state_dict().items():
        assert torch.equal(value, tensors[key]), key
    now = task.optimizer.state_dict()
    assert now["param_groups"] == opt["param_groups"]
    for idx, state in opt["state"].items():
        for name, value in state.items():
            assert torch.equal(torch.as_tensor(now["state"][idx][name]), torch.as_tensor(value))
    assert task.train_step(x, target)["loss_task"] == first


def test_evaluate_on_real_test_images(data_root):
    task = YOLOv8Task(seed=0)
    x, rows = load_msrs(data_root, "test", _ids(data_root, "test", 4))
    batches = [(x[:2], rows[:2]), (x[2:], rows[2:])]
    metrics = task.evaluate(batches)
    for key in ("mAP50", "mAP75", "mAP50-95", "precision", "recall"):
        assert 0.0 <= metrics[key] <= 1.0, key
    assert metrics["num_images"] == 4
    assert metrics["num_targets"] == sum(len(r) for r in rows)
    assert task.net.training
    dets = task.predict(x[:1], conf_thres=0.0)
    assert dets[0].shape[1] == 6
    assert float(dets[0][:, [0, 2]].max()) <= SIZE[1] and float(dets[0][:, [1, 3]].max()) <= SIZE[0]


def test_evaluate_scores_ground_truth_as_perfect(data_root, monkeypatch):
    """Wiring check: predictions equal to the (pixel) ground truth give mAP ~ 1."""
    task = YOLOv8Task(seed=0)
    x, rows = load_msrs(data_root, "test", _ids(data_root, "test", 3))
    h, w = SIZE

    def oracle(fused, conf_thres=None, iou_thres=None):
        out = []
        for r in rows:
            cx, cy, bw, bh = (r[:, 1] * w, r[:, 2] * h, r[:, 3] * w, r[:, 4] * h)
            boxes = torch.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 1)
            out.append(torch.cat([boxes, torch.ones(len(r), 1), r[:, :1]], 1))
        return out

    monkeypatch.setattr(task, "predict", oracle)
    metrics = task.evaluate([(x, rows)])
    assert metrics["mAP50"] > 0.99 and metrics["mAP50-95"] > 0.99
    # A detection shifted by its own width matches nothing.
    shifted = [d.clone() for d in oracle(x)]
    for d in shifted:
        d[:, [0, 2]] += (d[:, 2] - d[:, 0]).unsqueeze(1) * 1.5
    monkeypatch.setattr(task, "predict", lambda fused, **_: shifted)
    assert task.evaluate([(x, rows)])["mAP50"] == 0.0


def test_match_is_one_to_one_per_threshold():
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    preds = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 8.0], [0.0, 0.0, 10.0, 10.0]])
    correct = YOLOv8Task.match(preds, torch.tensor([0.0, 0.0, 1.0]), boxes, torch.tensor([0.0]))
    assert correct[0].all()  # exact box: true positive at every threshold
    assert not correct[1].any()  # the GT is taken; a second match is a false positive
    assert not correct[2].any()  # wrong class


def test_task_metric_scores_per_sample_pixel_targets_through_the_codec(data_root, monkeypatch):
    """The test loop's path: per-sample pixel boxes, batched by the adapter's codec, evaluated."""
    from learnable_fusion_loss.engine import TaskMetric

    task = YOLOv8Task(seed=0)
    x, rows = load_msrs(data_root, "test", _ids(data_root, "test", 3))
    h, w = SIZE
    samples = []
    for r in rows:
        cx, cy, bw, bh = (r[:, 1] * w, r[:, 2] * h, r[:, 3] * w, r[:, 4] * h)
        boxes = torch.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 1)
        samples.append({"bboxes": boxes, "labels": r[:, 0].long()})
    monkeypatch.setattr(task, "predict", lambda fused, **_: [
        torch.cat([s["bboxes"], torch.ones(len(s["labels"]), 1), s["labels"][:, None].float()], 1)
        for s in samples[: fused.shape[0]]])
    metric = TaskMetric(keys=["mAP50", "mAP50-95", "num_targets"], batch_size=8)
    metric.bind(task)
    metric.process({}, [{"fused_task": f, "target": t} for f, t in zip(x, samples, strict=True)])
    metrics = metric.compute_metrics(metric.results)
    assert metrics["mAP50"] > 0.99 and metrics["mAP50-95"] > 0.99
    assert metrics["num_targets"] == sum(len(r) for r in rows)
    # ... and the codec's split gives the same pixel boxes back
    back = task.split_targets(task.collate_targets(samples, SIZE), len(samples), SIZE)
    for got, sample in zip(back, samples, strict=True):
        torch.testing.assert_close(got["bboxes"], sample["bboxes"], atol=1e-4, rtol=0)
        assert torch.equal(got["labels"], sample["labels"])
