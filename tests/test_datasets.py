"""Paired datasets, transforms, collate: real data in ../shared/data and fixtures.

The meta-train / meta-test split is the epoch plan's (tests/test_engine.py).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from learnable_fusion_loss.datasets import (
    BoxesToWeakMask,
    FMBSegDataset,
    ImageReadError,
    LabelError,
    LLVIPDataset,
    M3FDDataset,
    PairedCenterCrop,
    PairedImageDataset,
    PairedRandomCrop,
    PairedResize,
    PairedSegDataset,
    PairingError,
    RandomModalitySwap,
    TaskView,
    YoloPairedDetDataset,
    boxes_cxcywh_to_xyxy,
    boxes_to_mask,
    collate_paired,
    crop_boxes,
    resize_boxes,
    rgb_to_ycrcb,
)
from learnable_fusion_loss.registry import DATASETS
from learnable_fusion_loss.tasks.yolov8 import collate_ultralytics  # collate_paired + ultralytics' keys
from projects.tdfusion.tdfusion import TASK_VIEW_SIZES, tdfusion_train_pipeline

RNG = np.random.default_rng(0)
DATASET_CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "_base_" / "datasets"


def _config_metainfo(name: str) -> dict:
    """``metainfo`` of a dataset config (the one place a dataset's class list lives)."""
    from mmengine.config import Config

    return dict(Config.fromfile(str(DATASET_CONFIGS / f"{name}.py")).metainfo)


# ----------------------------------------------------------------------------- fixtures


def _u8(*shape: int) -> np.ndarray:
    return RNG.integers(0, 256, size=shape, dtype=np.uint8)


def _write_pair(
    root: Path, ir_dir: str, vi_dir: str, stem: str, hw: tuple[int, int] = (24, 32)
) -> None:
    (root / ir_dir).mkdir(parents=True, exist_ok=True)
    (root / vi_dir).mkdir(parents=True, exist_ok=True)
    Image.fromarray(_u8(*hw)).save(root / ir_dir / f"{stem}.png")
    Image.fromarray(_u8(*hw, 3)).save(root / vi_dir / f"{stem}.png")


def _yolo_set(tmp_path: Path, labels: dict[str, str], hw: tuple[int, int] = (24, 32)) -> Path:
    root = tmp_path / "yolo"
    (root / "train" / "labels").mkdir(parents=True)
    (root / "classes.txt").write_text("person\nbicycle\ncar\n")
    for stem, text in labels.items():
        _write_pair(root / "train", "ir", "vi", stem, hw)
        (root / "train" / "labels" / f"{stem}.txt").write_text(text)
    return root


def _voc_xml(objects: list[tuple[str, int, int, int, int]], size: tuple[int, int] | None) -> str:
    size_xml = (
        f"<size><width>{size[1]}</width><height>{size[0]}</height><depth>3</depth></size>"
        if size
        else ""
    )
    objs = "".join(
        f"<object><name>{n}</name><difficult>0</difficult><bndbox><xmin>{a}</xmin><ymin>{b}</ymin>"
        f"<xmax>{c}</xmax><ymax>{d}</ymax></bndbox></object>"
        for n, a, b, c, d in objects
    )
    return f"<annotation><filename>x</filename>{size_xml}{objs}</annotation>"


# ----------------------------------------------------------------------------- real data


@pytest.mark.parametrize(
    ("name", "kwargs", "count", "colour"),
    [
        ("tno", {}, 25, False),
        ("roadscene", {}, 50, True),
        ("mri_ct", {"modality_a": "mri", "modality_b": "ct"}, 21, False),
        ("mri_pet", {"modality_a": "mri", "modality_b": "pet"}, 42, True),
        ("mri_spect", {"modality_a": "mri", "modality_b": "spect"}, 73, True),
    ],
)
def test_unlabelled_sets_counts_shapes_ranges(
    data_root: Path, name: str, kwargs: dict, count: int, colour: bool
) -> None:
    ds = PairedImageDataset(data_root / name, **kwargs)
    assert len(ds) == count
    for index in (0, len(ds) - 1):
        s = ds[index]
        h, w = s["ori_shape"]
        assert s["source_a"].shape == (1, h, w) and s["source_b"].shape == (1, h, w)
        assert s["source_a"].dtype == torch.float32
        for key in ("source_a", "source_b"):
            assert 0.0 <= float(s[key].min()) and float(s[key].max()) <= 1.0
            assert float(s[key].std()) > 0.01  # real content, not a blank
        assert ("source_b_crcb" in s) == colour
        if colour:
            assert s["source_b_crcb"].shape == (2, h, w)
        assert Path(s["img_path"]).stem == s["img_id"] == Path(s["ir_path"]).stem


def test_tno_mixed_sizes_and_vi_is_luma(data_root: Path) -> None:
    ds = PairedImageDataset(data_root / "tno")
    sizes = {e.size for e in ds.entries}
    assert len(sizes) > 5  # 11 different sizes in the README
    rs = PairedImageDataset(data_root / "roadscene")
    s = rs[0]
    rgb = (
        torch.from_numpy(np.array(Image.open(s["vi_path"]).convert("RGB"))).permute(2, 0, 1).float()
        / 255
    )
    torch.testing.assert_close(s["source_b"], rgb_to_ycrcb(rgb[None])[0, :1], atol=1e-6, rtol=0)
    torch.testing.assert_close(s["source_b_crcb"], rgb_to_ycrcb(rgb[None])[0, 1:], atol=1e-6, rtol=0)


def test_msrs_det_counts_and_box_totals(data_root: Path) -> None:
    root = data_root / "msrs_det"
    train = YoloPairedDetDataset(root, "train")
    test = YoloPairedDetDataset(root, "test")
    assert (len(train), len(test)) == (120, 60)
    assert train.class_names == ("person", "bicycle", "car")
    # per-class box totals from the data README (labels/ = fusion annotations)
    counts = torch.bincount(torch.cat([e.extra["boxes"][1] for e in train.entries]), minlength=3)
    assert counts.tolist() == [283, 37, 159]
    empty = sum(e.extra["boxes"][0].shape[0] == 0 for e in train.entries)
    assert empty == 13
    n_ir = sum(
        e.extra["boxes"][0].shape[0]
        for e in YoloPairedDetDataset(root, "train", label_dir="labels_ir").entries
    )
    n_vi = sum(
        e.extra["boxes"][0].shape[0]
        for e in YoloPairedDetDataset(root, "test", label_dir="labels_vi").entries
    )
    assert (n_ir, n_vi) == (561, 158)


def test_msrs_det_pixel_boxes_match_reference_lines(data_root: Path) -> None:
    """train_boxes.txt holds the same boxes as rounded absolute corners: agree within 1 px."""
    root = data_root / "msrs_det"
    ds = YoloPairedDetDataset(root, "train")
    reference: dict[str, list[list[int]]] = {}
    for line in (root / "train_boxes.txt").read_text().splitlines():
        parts = line.split()
        reference[Path(parts[0]).stem] = [list(map(int, p.split(","))) for p in parts[1:]]
    assert set(reference) == set(ds.ids)
    for i in (0, 7, 50):
        s = ds[i]
        ref = torch.tensor(reference[s["img_id"]], dtype=torch.float32).reshape(-1, 5)
        assert s["bboxes"].shape[0] == ref.shape[0]
        assert torch.equal(s["labels"], ref[:, 4].long())
        assert (s["bboxes"] - ref[:, :4]).abs().max() <= 1.0
        assert s["source_b_crcb"].shape == (2, 480, 640) and s["source_a"].shape == (1, 480, 640)


def test_tdfusion_views_on_msrs_det(data_root: Path) -> None:
    ds = YoloPairedDetDataset(
        data_root / "msrs_det", "train", pipeline=tdfusion_train_pipeline("MSRS")
    )
    plain = YoloPairedDetDataset(data_root / "msrs_det", "train")
    torch.manual_seed(0)
    s, ref = ds[2], plain[2]
    assert s["source_a"].shape == s["source_b"].shape == (1, 256, 256)
    assert s["source_b_crcb"].shape == (2, 256, 256)
    assert s["source_a_task"].shape == s["source_b_task"].shape == (1, 240, 320)
    x0, y0, x1, y1 = s["crop_box"]
    assert torch.equal(s["source_a"], ref["source_a"][:, y0:y1, x0:x1])  # crop comes from the full image
    assert torch.equal(s["source_b_crcb"], ref["source_b_crcb"][:, y0:y1, x0:x1])
    # boxes are in the task frame: x scaled by 320/640, y by 240/480, not cropped
    assert s["target_shape"] == (240, 320)
    torch.testing.assert_close(s["bboxes"], ref["bboxes"] * 0.5)
    assert torch.equal(s["labels"], ref["labels"])


def test_dataloader_collate_ultralytics_format(data_root: Path) -> None:
    ds = YoloPairedDetDataset(data_root / "msrs_det", "test", pipeline=[TaskView((192, 256))])
    loader = DataLoader(ds, batch_size=4, shuffle=False, collate_fn=collate_ultralytics)
    batch = next(iter(loader))
    assert batch["source_a_task"].shape == (4, 1, 192, 256)
    n = sum(int(b.shape[0]) for b in batch["gt_bboxes"])
    assert (
        batch["bboxes"].shape == (n, 4)
        and batch["cls"].shape == (n, 1)
        and batch["batch_idx"].shape == (n,)
    )
    assert batch["bboxes"].dtype == batch["cls"].dtype == batch["batch_idx"].dtype == torch.float32
    assert float(batch["bboxes"].min()) >= 0.0 and float(batch["bboxes"].max()) <= 1.0
    for i in range(4):
        rows = batch["batch_idx"] == i
        assert int(rows.sum()) == batch["gt_bboxes"][i].shape[0]
        back = boxes_cxcywh_to_xyxy(batch["bboxes"][rows], (192, 256))
        torch.testing.assert_close(back, batch["gt_bboxes"][i], atol=1e-3, rtol=0)
        assert torch.equal(batch["cls"][rows, 0].long(), batch["gt_labels"][i])
    assert batch["img_id"] == ds.ids[:4]


def test_collate_feeds_ultralytics_v8_detection_loss(data_root: Path) -> None:
    pytest.importorskip("ultralytics", reason="ultralytics is the reference for the target format")
    from types import SimpleNamespace

    from ultralytics.nn.tasks import DetectionModel
    from ultralytics.utils.loss import v8DetectionLoss

    ds = YoloPairedDetDataset(data_root / "msrs_det", "test", pipeline=[TaskView((96, 128))])
    batch = collate_ultralytics([ds[0], ds[1]])
    torch.manual_seed(0)
    model = DetectionModel("yolov8n.yaml", ch=1, nc=3, verbose=False)
    model.args = SimpleNamespace(box=7.5, cls=0.5, dfl=1.5)
    criterion = v8DetectionLoss(model)
    preds = model(batch["source_b_task"])
    loss, items = criterion(preds, batch)
    assert torch.isfinite(loss).all() and float(items[0]) > 0  # box loss sees the targets
    empty = dict(
        batch, bboxes=batch["bboxes"][:0], cls=batch["cls"][:0], batch_idx=batch["batch_idx"][:0]
    )
    _, items_empty = criterion(preds, empty)
    assert float(items_empty[0]) == 0.0  # no targets, no box loss: the boxes above were used


def test_weak_masks_from_real_boxes(data_root: Path) -> None:
    ds = YoloPairedDetDataset(
        data_root / "msrs_det",
        "train",
        pipeline=[BoxesToWeakMask(), TaskView(TASK_VIEW_SIZES["MSRS"]), PairedRandomCrop(256)],
    )
    s = ds[0]
    assert "bboxes" not in s and s["weak_labels"] is True
    assert s["gt_sem_seg"].shape == (240, 320) and s["gt_sem_seg"].dtype == torch.int64
    values = set(s["gt_sem_seg"].unique().tolist())
    assert 0 in values and values <= {0, 1, 2, 3} and len(values) > 1
    batch = collate_paired([ds[0], ds[1]])
    assert batch["gt_sem_seg"].shape == (2, 240, 320)


# ----------------------------------------------------------------------------- transforms


def test_boxes_survive_resize_and_crop_round_trips() -> None:
    boxes = torch.tensor(
        [[10.0, 20.0, 110.5, 90.0], [300.2, 5.0, 639.0, 479.0], [0.0, 0.0, 3.0, 4.0]]
    )
    for dst in ((240, 320), (192, 256), (300, 400), (256, 320), (100, 333)):
        there = resize_boxes(boxes, (480, 640), dst)
        back = resize_boxes(there, dst, (480, 640))
        assert (back - boxes).abs().max() <= 1.0
    # a non-uniform resize scales x by W and y by H (TDFusion's loader divides x by H)
    moved = resize_boxes(boxes, (480, 640), (480, 320))
    assert torch.equal(moved[:, 1::2], boxes[:, 1::2]) and torch.allclose(
        moved[:, 0::2], boxes[:, 0::2] / 2
    )
    cropped, keep = crop_boxes(boxes, (5, 10, 261, 266))
    assert keep.tolist() == [True, False, False]
    restored = cropped + torch.tensor([5.0, 10.0, 5.0, 10.0])
    assert (restored - boxes[keep]).abs().max() <= 1.0
    partial, keep2 = crop_boxes(boxes, (100, 0, 400, 300))
    assert keep2.tolist() == [True, True, False]
    assert partial[0].tolist() == pytest.approx([0.0, 20.0, 10.5, 90.0])
    assert partial[1].tolist() == pytest.approx([200.2, 5.0, 300.0, 300.0])


def _box_sample() -> dict:
    """A 48x64 pair with one box in the image frame (no task view yet)."""
    return {
        "source_a": torch.rand(1, 48, 64),
        "source_b": torch.rand(1, 48, 64),
        "bboxes": torch.tensor([[8.0, 8.0, 24.0, 40.0]]),
        "labels": torch.tensor([1]),
        "target_shape": (48, 64),
        "img_id": "x",
    }


def test_crop_then_taskview_targets_follow_frame() -> None:
    sample = _box_sample()
    cropped = PairedCenterCrop((32, 32))(sample)  # no task view: targets are cropped too
    assert cropped["crop_box"] == (16, 8, 48, 40)
    assert cropped["bboxes"].tolist() == [[0.0, 0.0, 8.0, 32.0]] and cropped["target_shape"] == (
        32,
        32,
    )
    viewed = TaskView((24, 16))(cropped)
    assert viewed["bboxes"].tolist() == [[0.0, 0.0, 4.0, 24.0]] and viewed["source_a_task"].shape == (
        1,
        24,
        16,
    )
    resized = PairedResize((96, 128))(sample)
    assert resized["source_a"].shape == (1, 96, 128) and resized["bboxes"].tolist() == [
        [16.0, 16.0, 48.0, 80.0]
    ]
    # the mask and the boxes move together through TaskView
    mask_sample = BoxesToWeakMask(keep_boxes=True)(sample)
    tv = TaskView((24, 32))(mask_sample)
    redrawn = boxes_to_mask(tv["bboxes"], tv["labels"], (24, 32))
    assert (redrawn == tv["gt_sem_seg"]).float().mean() > 0.97


def test_taskview_marks_the_target_frame_and_crops_read_it() -> None:
    sample = _box_sample()
    assert "target_frame" not in sample
    viewed = TaskView((24, 32))(sample)
    assert viewed["target_frame"] == "task"
    cropped = PairedCenterCrop((32, 32))(viewed)  # targets stay in the task frame
    assert cropped["target_shape"] == (24, 32) and cropped["bboxes"].tolist() == [[4.0, 4.0, 12.0, 20.0]]
    resized = PairedResize((96, 128))(viewed)
    assert resized["target_shape"] == (24, 32) and resized["source_a"].shape == (1, 96, 128)
    # the field, not the presence of task images, decides: a hand-made task view with
    # targets in the image frame has its targets cropped with the images
    by_hand = dict(sample, source_a_task=torch.rand(1, 24, 32), source_b_task=torch.rand(1, 24, 32))
    assert PairedCenterCrop((32, 32))(by_hand)["target_shape"] == (32, 32)


def test_crop_too_small_and_padding() -> None:
    sample = {"source_a": torch.rand(1, 20, 30), "source_b": torch.rand(1, 20, 30), "img_id": "tiny"}
    with pytest.raises(ValueError, match="tiny.*smaller than the crop"):
        PairedRandomCrop(32)(sample)
    out = PairedRandomCrop(32, pad_if_needed=True)(sample)
    assert out["source_a"].shape == (1, 32, 32)
    with pytest.raises(ValueError, match="unknown task-view preset"):
        TaskView("KAIST")


def test_boxes_to_mask_small_boxes_stay_visible() -> None:
    boxes = torch.tensor([[2.0, 2.0, 8.0, 8.0], [0.0, 0.0, 10.0, 10.0], [4.0, 4.0, 5.0, 5.0]])
    labels = torch.tensor([2, 0, 1])
    mask = boxes_to_mask(boxes, labels, (12, 12))
    assert mask[4, 4] == 2  # smallest box on top, id + 1
    assert mask[3, 3] == 3 and mask[1, 1] == 1 and mask[11, 11] == 0 and mask[10, 0] == 0
    assert int((mask == 3).sum()) == 6 * 6 - 1
    assert boxes_to_mask(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), (3, 3)).sum() == 0


def test_modality_swap_transform_and_collate() -> None:
    s = {
        "source_a": torch.zeros(1, 4, 4),
        "source_b": torch.ones(1, 4, 4),
        "source_a_task": torch.zeros(1, 2, 2),
        "source_b_task": torch.ones(1, 2, 2),
        "bboxes": torch.tensor([[0.0, 0.0, 2.0, 2.0]]),
        "labels": torch.tensor([2]),
        "target_shape": (2, 2),
        "img_id": "a",
    }
    swapped = RandomModalitySwap(prob=1.0)(s)
    assert (
        swapped["swapped"]
        and float(swapped["source_a"].mean()) == 1.0
        and float(swapped["source_b_task"].mean()) == 0.0
    )
    assert torch.equal(swapped["bboxes"], s["bboxes"])  # targets unchanged
    assert not RandomModalitySwap(prob=0.0)(s)["swapped"]

    t = dict(s, img_id="b", bboxes=torch.zeros(0, 4), labels=torch.zeros(0, dtype=torch.long))
    batch = collate_ultralytics([s, t], swap_modalities=True)
    assert batch["source_a"].shape == (4, 1, 4, 4)
    assert batch["source_a"][:2].max() == 0 and batch["source_a"][2:].min() == 1  # second half is (VIS, IR)
    assert batch["source_b_task"][2:].max() == 0
    assert batch["batch_idx"].tolist() == [0.0, 2.0] and batch["cls"].flatten().tolist() == [
        2.0,
        2.0,
    ]
    assert batch["swapped"].tolist() == [False, False, True, True]
    assert batch["img_id"] == ["a", "b", "a", "b"]


def test_collate_is_available_to_mmengine_configs() -> None:
    from mmengine.registry import FUNCTIONS

    assert FUNCTIONS.get("collate_paired") is collate_paired


def test_collate_mixed_colour_and_sizes() -> None:
    grey = {"source_a": torch.rand(1, 4, 4), "source_b": torch.rand(1, 4, 4), "img_id": "g"}
    colour = dict(grey, source_b_crcb=torch.rand(2, 4, 4), img_id="c")
    batch = collate_paired([grey, colour])
    assert batch["source_b_crcb"].shape == (2, 2, 4, 4) and torch.all(batch["source_b_crcb"][0] == 0.5)
    other = {"source_a": torch.rand(1, 5, 4), "source_b": torch.rand(1, 5, 4), "img_id": "big"}
    with pytest.raises(ValueError, match="'big'.*batch_size=1"):
        collate_paired([grey, other])


# ----------------------------------------------------------------------------- segmentation layouts


def test_msrs_seg_layout_fixture(tmp_path: Path) -> None:
    root = tmp_path / "MSRS"
    masks = {}
    for stem in ("00001D", "00002N", "00003D"):
        _write_pair(root / "train", "ir", "vi", stem, (24, 32))
        (root / "train" / "Segmentation_labels").mkdir(exist_ok=True)
        mask = RNG.integers(0, 9, size=(24, 32), dtype=np.uint8)
        Image.fromarray(mask).save(root / "train" / "Segmentation_labels" / f"{stem}.png")
        masks[stem] = mask
    ds = DATASETS.build(dict(type="lfl.PairedSegDataset", root=str(root), split="train",
                             metainfo=_config_metainfo("msrs_seg")))
    assert len(ds) == 3 and ds.num_classes == 9 and ds.class_names[1] == "car"
    s = ds[1]
    assert torch.equal(s["gt_sem_seg"], torch.from_numpy(masks["00002N"]).long())
    viewed = TaskView((12, 16))(s)
    assert viewed["gt_sem_seg"].shape == (12, 16)
    # nearest-exact: output pixel i samples input pixel floor((i + 0.5) * 2) = 2i + 1
    assert torch.equal(viewed["gt_sem_seg"], s["gt_sem_seg"][1::2, 1::2])
    batch = collate_paired([ds[0], ds[2]])
    assert batch["gt_sem_seg"].shape == (2, 24, 32) and batch["gt_sem_seg"].dtype == torch.int64


def test_fmb_seg_layout_fixture_and_bad_masks(tmp_path: Path) -> None:
    root = tmp_path / "FMB"
    for stem in ("a", "b", "c"):
        _write_pair(root / "train", "Infrared", "Visible", stem, (10, 12))
    (root / "train" / "Label").mkdir()
    ok = np.full((10, 12), 14, np.uint8)
    ok[0, 0] = 255  # ignore index is allowed
    Image.fromarray(ok).save(root / "train" / "Label" / "a.png")
    Image.fromarray(np.full((10, 12), 15, np.uint8)).save(root / "train" / "Label" / "b.png")
    Image.fromarray(_u8(10, 12, 3)).save(
        root / "train" / "Label" / "c.png"
    )  # a colour visualisation
    ds = FMBSegDataset(root, "train")
    assert ds.num_classes == 15 and len(ds) == 3
    assert int(ds[0]["gt_sem_seg"].max()) == 255
    with pytest.raises(LabelError, match=r"b\.png.*class ids \[15\] out of range \[0, 14\]"):
        ds[1]
    with pytest.raises(LabelError, match=r"c\.png.*colour"):
        ds[2]


def test_seg_missing_mask_and_mask_size(tmp_path: Path) -> None:
    root = tmp_path / "MSRS"
    for stem in ("a", "b"):
        _write_pair(root / "test", "ir", "vi", stem, (8, 8))
    (root / "test" / "Segmentation_labels").mkdir()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(
        root / "test" / "Segmentation_labels" / "a.png"
    )
    with pytest.raises(PairingError, match=r"'b'.*has no mask"):
        PairedSegDataset(root, "test")
    with pytest.warns(UserWarning, match="has no mask"):
        ds = PairedSegDataset(root, "test", strict=False)
    assert ds.ids == ["a"]
    with pytest.raises(LabelError, match=r"a\.png.*mask is 4x4 but its images are 8x8"):
        ds[0]


# ----------------------------------------------------------------------------- VOC layouts


def test_m3fd_layout_fixture_with_split_list(tmp_path: Path) -> None:
    root = tmp_path / "M3FD"
    for stem in ("00000", "00001", "00002"):
        _write_pair(root, "Ir", "Vis", stem, (30, 40))
    (root / "Annotation").mkdir()
    (root / "Annotation" / "00000.xml").write_text(
        _voc_xml([("People", 1, 2, 11, 22), ("Truck", 5, 5, 40, 30)], (30, 40))
    )
    (root / "Annotation" / "00001.xml").write_text(_voc_xml([], (30, 40)))
    (root / "Annotation" / "00002.xml").write_text(_voc_xml([("Lamp", 1, 1, 3, 3)], (30, 40)))
    split = tmp_path / "M3FD_train.txt"
    split.write_text("00000.png 1,2,11,22,0\n00001.png\n")  # TDFusion annotation-line files work
    ds = DATASETS.build(dict(type="lfl.M3FDDataset", root=str(root), ids=str(split),
                             metainfo=_config_metainfo("m3fd_det")))
    assert isinstance(ds, M3FDDataset)
    assert ds.ids == ["00000", "00001"] and ds.num_classes == 6
    s = ds[0]
    assert s["bboxes"].tolist() == [[1.0, 2.0, 11.0, 22.0], [5.0, 5.0, 40.0, 30.0]]
    assert s["labels"].tolist() == [0, 5]
    assert ds[1]["bboxes"].shape == (0, 4)
    batch = collate_ultralytics([TaskView((15, 20))(ds[0]), TaskView((15, 20))(ds[1])])
    assert batch["batch_idx"].tolist() == [0.0, 0.0]
    torch.testing.assert_close(
        batch["bboxes"][0], torch.tensor([6 / 40, 12 / 30, 10 / 40, 20 / 30])
    )


def test_llvip_layout_fixture_and_bad_xml(tmp_path: Path) -> None:
    root = tmp_path / "LLVIP"
    for split, stems in (("train", ("010001", "010002", "010003")), ("test", ("190001",))):
        for stem in stems:
            _write_pair(root, f"infrared/{split}", f"visible/{split}", stem, (32, 40))
    (root / "Annotations").mkdir()
    (root / "Annotations" / "010001.xml").write_text(_voc_xml([("person", 3, 4, 13, 30)], (32, 40)))
    (root / "Annotations" / "010002.xml").write_text(_voc_xml([("dog", 3, 4, 13, 30)], (32, 40)))
    (root / "Annotations" / "010003.xml").write_text(
        _voc_xml([("person", 3, 4, 13, 30)], (1024, 1280))
    )
    (root / "Annotations" / "190001.xml").write_text("<annotation><object>")
    llvip = _config_metainfo("llvip_det")
    ds = LLVIPDataset(root, "train", metainfo=llvip)
    assert len(ds) == 3 and ds[0]["labels"].tolist() == [0]
    with pytest.raises(LabelError, match=r"010002\.xml.*unknown class 'dog'"):
        ds[1]
    with pytest.raises(LabelError, match=r"010003\.xml.*1280x1024"):
        ds[2]
    with pytest.raises(LabelError, match=r"190001\.xml.*not valid XML"):
        LLVIPDataset(root, "test", validate_labels=True, metainfo=llvip)


def test_class_names_come_from_metainfo_or_label_files(tmp_path: Path) -> None:
    root = _yolo_set(tmp_path, {"a": ""})
    ds = YoloPairedDetDataset(root, "train")  # classes.txt
    assert ds.metainfo == {"classes": ("person", "bicycle", "car")} and ds.num_classes == 3
    renamed = YoloPairedDetDataset(root, "train", metainfo=dict(classes=("p", "b", "c")))
    assert renamed.class_names == ("p", "b", "c")
    with pytest.raises(ValueError, match="disagree"):
        YoloPairedDetDataset(root, "train", class_names=("x", "y", "z"), metainfo=dict(classes=("p", "b", "c")))
    voc = tmp_path / "voc"
    _write_pair(voc, "ir", "vi", "a", (10, 12))
    (voc / "ann").mkdir()
    (voc / "ann" / "a.xml").write_text(_voc_xml([], (10, 12)))
    with pytest.raises(ValueError, match=r"needs its class list.*metainfo=dict\(classes="):
        DATASETS.build(dict(type="lfl.VOCPairedDetDataset", ir_dir=str(voc / "ir"),
                            vi_dir=str(voc / "vi"), ann_dir=str(voc / "ann")))
    unlabelled = PairedImageDataset(voc, split=None)
    assert unlabelled.metainfo == {} and unlabelled.class_names is None
    assert PairedImageDataset(voc, split=None, metainfo=dict(name="x")).metainfo == {"name": "x"}
    # the dataset configs carry one class list per set; the segmentation masks are 0..8
    assert _config_metainfo("msrs_seg")["classes"][:3] == ("background", "car", "person")
    assert len(_config_metainfo("fmb_seg")["classes"]) == 15


# ----------------------------------------------------------------------------- bad input


def test_missing_partner_names_file(tmp_path: Path) -> None:
    root = _yolo_set(tmp_path, {"a": "", "b": ""})
    (root / "train" / "vi" / "b.png").unlink()
    with pytest.raises(PairingError, match=r"b\.png.*no image with stem 'b'"):
        YoloPairedDetDataset(root, "train")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = YoloPairedDetDataset(root, "train", strict=False)
    assert ds.ids == ["a"] and any("b.png" in str(w.message) for w in caught)
    with pytest.raises(PairingError, match=r"'zzz' from .*ids\.txt"):
        (tmp_path / "ids.txt").write_text("a\nzzz\n")
        YoloPairedDetDataset(root, "train", ids=tmp_path / "ids.txt", strict=True)


def test_size_mismatch_names_both_files(tmp_path: Path) -> None:
    root = _yolo_set(tmp_path, {"a": ""})
    Image.fromarray(_u8(20, 32, 3)).save(root / "train" / "vi" / "a.png")
    with pytest.raises(
        PairingError, match=r"size mismatch in pair 'a'.*ir/a\.png' is 32x24.*vi/a\.png' is 32x20"
    ):
        YoloPairedDetDataset(root, "train")


def test_truncated_image_raises_on_load(tmp_path: Path) -> None:
    root = _yolo_set(tmp_path, {"a": ""}, hw=(64, 64))
    path = root / "train" / "vi" / "a.png"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    ds = YoloPairedDetDataset(root, "train")  # the header is intact
    with pytest.raises(ImageReadError, match=r"vi/a\.png"):
        ds[0]
    path.write_bytes(b"garbage")
    with pytest.raises(ImageReadError, match=r"vi/a\.png"):
        YoloPairedDetDataset(root, "train")


def test_16bit_ir_and_rgba_visible_in_dataset(tmp_path: Path) -> None:
    root = tmp_path / "set" / "test"
    (root / "ir").mkdir(parents=True)
    (root / "vi").mkdir()
    ir16 = RNG.integers(0, 65536, size=(6, 8), dtype=np.uint16)
    ir16[0, 0] = 65535
    Image.fromarray(ir16).save(root / "ir" / "p.png")
    rgba = _u8(6, 8, 4)
    rgba[..., 3] = 7
    Image.fromarray(rgba).save(root / "vi" / "p.png")
    s = PairedImageDataset(tmp_path / "set")[0]
    torch.testing.assert_close(
        s["source_a"][0], torch.from_numpy(ir16.astype(np.float32) / 65535), atol=1e-7, rtol=0
    )
    rgb = torch.from_numpy(rgba[..., :3]).permute(2, 0, 1).float()[None] / 255
    torch.testing.assert_close(s["source_b"], rgb_to_ycrcb(rgb)[0, :1], atol=1e-6, rtol=0)
    assert s["source_b_crcb"].shape == (2, 6, 8)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0 0.5 0.5 0.2 0.2\n3 0.5 0.5 0.1 0.1\n", r"line 2: class id 3 out of range \[0, 2\]"),
        ("0 0.5 0.5 0.2\n", r"line 1: expected 5 values"),
        ("car 0.5 0.5 0.2 0.2\n", r"line 1: non-numeric"),
        ("1.5 0.5 0.5 0.2 0.2\n", r"line 1: class id '1.5' is not an integer"),
        ("0 0.5 0.5 -0.2 0.2\n", r"line 1: box width/height must be > 0"),
        ("0 1.5 0.5 0.2 0.2\n", r"line 1: .*outside the normalised image"),
        ("0 nan 0.5 0.2 0.2\n", r"line 1: non-finite"),
        # inside the 1 % tolerance beyond an edge: clipping used to make x1 = x2 silently
        ("0 1.004 0.5 0.008 0.2\n", r"line 1: .*outside the image edge.*zero width"),
        ("0 0.5 -0.004 0.2 0.008\n", r"line 1: .*outside the image edge.*zero height"),
    ],
)
def test_bad_yolo_lines(tmp_path: Path, text: str, message: str) -> None:
    root = _yolo_set(tmp_path, {"good": "2 0.5 0.5 0.5 0.5\n", "bad": text})
    with pytest.raises(LabelError, match=rf"bad/?.*labels/bad\.txt.*{message}"):
        YoloPairedDetDataset(root, "train")


def test_empty_label_file_is_valid_and_missing_label_is_not(tmp_path: Path) -> None:
    root = _yolo_set(
        tmp_path, {"empty": "", "blank": "\n\n", "one": "1 0.25 0.5 0.5 0.5\n"}, hw=(24, 32)
    )
    ds = YoloPairedDetDataset(root, "train")
    by_id = {s["img_id"]: s for s in (ds[i] for i in range(len(ds)))}
    assert by_id["empty"]["bboxes"].shape == (0, 4) and by_id["blank"]["labels"].shape == (0,)
    assert by_id["one"]["bboxes"].tolist() == [[0.0, 6.0, 16.0, 18.0]]
    batch = collate_ultralytics([by_id["empty"], by_id["one"]])
    assert batch["batch_idx"].tolist() == [1.0] and batch["cls"].tolist() == [[1.0]]
    (root / "train" / "labels" / "one.txt").unlink()
    with pytest.raises(PairingError, match=r"no label file .*one\.txt"):
        YoloPairedDetDataset(root, "train")


def test_the_old_msrs_seg_type_name_builds_the_paired_seg_dataset_and_names_it(tmp_path: Path) -> None:
    import projects.tdfusion.tdfusion  # noqa: F401  (registers the old name)
    from learnable_fusion_loss.registry import DATASETS

    root = tmp_path / "MSRS"
    _write_pair(root / "test", "ir", "vi", "a", (8, 8))
    (root / "test" / "Segmentation_labels").mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "test" / "Segmentation_labels" / "a.png")
    classes = ("background", "car")
    with pytest.warns(DeprecationWarning, match="'MSRSSegDataset' is now 'PairedSegDataset'"):
        old = DATASETS.build(dict(type="MSRSSegDataset", root=str(root), split="test",
                                  metainfo=dict(classes=classes)))
    new = PairedSegDataset(root, "test", metainfo=dict(classes=classes))
    assert isinstance(old, PairedSegDataset) and old.ids == new.ids == ["a"]
    assert old.class_names == new.class_names == classes
    assert torch.equal(old[0]["gt_sem_seg"], new[0]["gt_sem_seg"])
