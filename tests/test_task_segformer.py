"""SegFormerTask (mmseg 1.2 SegFormer) on real MSRS images with weak box-raster labels."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("mmseg", reason="mmsegmentation (extra 'seg') is not installed")
pytest.importorskip("mmcv.ops", reason="mmcv with compiled ops is not installed")

from learnable_fusion_loss.registry import MODELS  # noqa: E402
from learnable_fusion_loss.tasks.base import TaskAdapter  # noqa: E402
from learnable_fusion_loss.tasks.segformer import SegFormerTask  # noqa: E402

SIZE = (128, 160)  # H, W
WEAK_CLASSES = ("background", "person", "bicycle", "car")  # msrs_det class id + 1


def _grey(path: Path) -> torch.Tensor:
    from PIL import Image

    return torch.from_numpy(np.asarray(Image.open(path).convert("L"), dtype=np.float32) / 255.0)


def load_msrs(data_root: Path, split: str, ids: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stand-in fused image (mean of IR and grey VIS, real pixels) and a weak class mask.

    The mask rasterises the YOLO boxes at ``SIZE``: background 0, class id + 1,
    larger boxes first so small objects stay visible.
    """
    base = data_root / "msrs_det" / split
    images, masks = [], []
    for name in ids:
        fused = 0.5 * (_grey(base / "ir" / f"{name}.png") + _grey(base / "vi" / f"{name}.png"))
        images.append(F.interpolate(fused[None, None], size=SIZE, mode="bilinear",
                                    antialias=True, align_corners=False)[0])
        mask = torch.zeros(SIZE, dtype=torch.long)
        rows = np.loadtxt(base / "labels" / f"{name}.txt", ndmin=2).reshape(-1, 5)
        h, w = SIZE
        for cls, cx, cy, bw, bh in sorted(rows.tolist(), key=lambda r: -r[3] * r[4]):
            x1, x2 = round((cx - bw / 2) * w), round((cx + bw / 2) * w)
            y1, y2 = round((cy - bh / 2) * h), round((cy + bh / 2) * h)
            mask[max(y1, 0) : max(y2, y1 + 1), max(x1, 0) : max(x2, x1 + 1)] = int(cls) + 1
        masks.append(mask)
    return torch.stack(images).clamp(0, 1), torch.stack(masks)


def _ids(data_root: Path, split: str, count: int) -> list[str]:
    """First ``count`` ids (sorted) whose label file is not empty."""
    labels = sorted((data_root / "msrs_det" / split / "labels").glob("*.txt"))
    return [p.stem for p in labels if p.read_text().strip()][:count]


def make_task(**kwargs) -> SegFormerTask:
    defaults = dict(num_classes=len(WEAK_CLASSES), class_names=WEAK_CLASSES, seed=0)
    return SegFormerTask(**{**defaults, **kwargs})


@pytest.fixture(scope="module")
def train_batch(data_root):
    return load_msrs(data_root, "train", _ids(data_root, "train", 2))


def test_is_registered_task_adapter():
    task = MODELS.build(dict(type="SegFormerTask", num_classes=9, in_channels=3, seed=0))
    assert isinstance(task, TaskAdapter)
    assert task.net.backbone.embed_dims == 32
    assert task.net.decode_head.channels == 256
    assert task.net.decode_head.num_classes == 9
    assert task.net.backbone.layers[0][0].projection.in_channels == 3
    assert isinstance(task.optimizer, torch.optim.Adam)
    assert task.optimizer.param_groups[0]["lr"] == pytest.approx(1e-4)
    assert [len(stage[1]) for stage in task.net.backbone.layers] == [2, 2, 2, 2]


def test_class_names_are_given_or_generic():
    assert SegFormerTask(num_classes=3, seed=0).class_names == ("class_0", "class_1", "class_2")
    assert make_task().class_names == WEAK_CLASSES


def test_builds_under_another_default_scope():
    from mmengine.registry import DefaultScope

    with DefaultScope.overwrite_default_scope("lfl"):
        task = MODELS.build(dict(type="SegFormerTask", num_classes=4, seed=0))
    assert type(task.net).__name__ == "EncoderDecoder"


def test_bad_inputs_name_the_argument(train_batch):
    task = make_task()
    x, y = train_batch
    with pytest.raises(ValueError, match="fused"):
        task.loss(x.expand(-1, 3, -1, -1), y)
    with pytest.raises(TypeError, match="target"):
        task.loss(x, y.float())
    with pytest.raises(ValueError, match="target labels"):
        task.loss(x, torch.full_like(y, 7))
    with pytest.raises(ValueError, match="in_channels"):
        SegFormerTask(in_channels=2)


def test_ignore_index_pixels_do_not_count(train_batch):
    task = make_task(drop_path_rate=0.0, dropout_ratio=0.0)
    task.net.eval()
    x, y = train_batch
    logits = F.interpolate(task.logits(x), size=y.shape[-2:], mode="bilinear", align_corners=False)
    ignored = y.clone()
    ignored[:, :, : SIZE[1] // 2] = 255
    keep = ignored != 255
    expected = F.cross_entropy(logits.permute(0, 2, 3, 1)[keep], y[keep])
    assert torch.allclose(task.loss(x, ignored), expected, atol=1e-6)


def test_loss_gradient_and_double_backward(train_batch):
    task = make_task()
    x, y = train_batch
    fused = x.clone().requires_grad_(True)
    (grad_fused,) = torch.autograd.grad(task.loss(fused, y), fused)
    assert torch.isfinite(grad_fused).all() and grad_fused.abs().sum() > 0

    torch.manual_seed(0)
    gain = torch.ones(1, requires_grad=True)  # upstream of the small conv
    conv = torch.nn.Conv2d(1, 1, 3, padding=1)
    image = torch.sigmoid(conv(x * gain))
    loss = task.loss(image, y)
    grads = torch.autograd.grad(loss, list(conv.parameters()), create_graph=True)
    grad_norm = torch.sqrt(sum((g**2).sum() for g in grads))
    (second,) = torch.autograd.grad(grad_norm, gain)
    assert torch.isfinite(second).all() and second.abs().item() > 0


def test_ten_steps_lower_the_loss(train_batch):
    task = make_task(drop_path_rate=0.0, dropout_ratio=0.0)
    x, y = train_batch
    with torch.no_grad():
        before = task.loss(x, y).item()
    history = [task.train_step(x, y)["loss_task"] for _ in range(10)]
    with torch.no_grad():
        after = task.loss(x, y).item()
    assert all(math.isfinite(v) for v in history)
    assert after < 0.9 * before, (before, history, after)


def _state(task: SegFormerTask) -> tuple[dict, dict]:
    return ({k: v.clone() for k, v in task.net.state_dict().items()},
            copy.deepcopy(task.optimizer.state_dict()))  # state_dict() holds live tensors


def _assert_identical(task: SegFormerTask, saved: tuple[dict, dict]) -> None:
    tensors, opt = saved
    for key, value in task.net.state_dict().items():
        assert torch.equal(value, tensors[key]), key
    now = task.optimizer.state_dict()
    assert now["param_groups"] == opt["param_groups"]
    assert now["state"].keys() == opt["state"].keys()
    for idx, state in opt["state"].items():
        for name, value in state.items():
            assert torch.equal(torch.as_tensor(now["state"][idx][name]), torch.as_tensor(value)), (
                idx, name)


def test_snapshot_step_restore_is_bit_identical(train_batch):
    task = make_task()
    x, y = train_batch
    task.train_step(x, y)  # non-empty Adam state (step 1)
    saved = _state(task)
    snap = task.snapshot()
    torch.manual_seed(1)
    first = task.train_step(x, y)["loss_task"]
    assert not torch.equal(task.net.backbone.layers[0][0].projection.weight,
                           saved[0]["backbone.layers.0.0.projection.weight"])
    assert int(task.optimizer.state_dict()["state"][0]["step"]) == 2
    task.restore(snap)
    _assert_identical(task, saved)
    assert all(p.grad is None for p in task.net.parameters())
    torch.manual_seed(1)  # the restored T repeats the same step exactly
    assert task.train_step(x, y)["loss_task"] == first
    task.restore(snap)  # a snapshot is reusable
    _assert_identical(task, saved)


def test_evaluate_on_real_test_images(data_root):
    task = make_task()
    x, y = load_msrs(data_root, "test", _ids(data_root, "test", 4))
    metrics = task.evaluate([(x[:2], y[:2]), (x[2:], y[2:])])
    for key in ("mIoU", "mAcc", "aAcc", "IoU.background", "IoU.car"):
        assert key in metrics
    assert metrics["num_images"] == 4
    assert 0.0 <= metrics["mIoU"] <= 100.0 and 0.0 <= metrics["aAcc"] <= 100.0
    assert task.net.training  # evaluation restores the mode


def test_evaluate_scores_perfect_predictions_as_100(data_root, monkeypatch):
    task = make_task()
    x, y = load_msrs(data_root, "test", _ids(data_root, "test", 2))
    monkeypatch.setattr(task, "predict", lambda fused, size=None: y.clone())
    metrics = task.evaluate([(x, y)])
    assert metrics["mIoU"] == pytest.approx(100.0)
    assert metrics["aAcc"] == pytest.approx(100.0)
    present = {WEAK_CLASSES[int(c)] for c in y.unique()}
    for name in WEAK_CLASSES:
        value = metrics[f"IoU.{name}"]
        assert (value == pytest.approx(100.0)) if name in present else math.isnan(value)
