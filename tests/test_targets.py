"""Targets stay per sample from the dataset to the model; each task adapter batches its own.

``collate_paired`` keeps boxes per sample (also across the source swap), the model
hands them to the adapter's codec (``collate_targets``) and its test outputs carry
them back unchanged; YOLOv8's codec is ultralytics' batch format.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from learnable_fusion_loss.datasets import collate_paired
from learnable_fusion_loss.engine import MetaFusionModel
from learnable_fusion_loss.engine.samples import read_batch
from learnable_fusion_loss.generators import ConvWeightGenerator
from learnable_fusion_loss.losses import LearnableFusionLoss
from learnable_fusion_loss.tasks import ModuleTask, collate_for, split_for
from learnable_fusion_loss.tasks.yolov8 import split_ultralytics_targets, ultralytics_targets

from _tiny import TinyFusion, TinyTaskNet


def det_sample(img_id: str, boxes: list[list[float]], labels: list[int], fill: float) -> dict:
    return {
        "source_a": torch.full((1, 8, 8), fill), "source_b": torch.full((1, 8, 8), 1 - fill),
        "source_a_task": torch.full((1, 4, 6), fill), "source_b_task": torch.full((1, 4, 6), 1 - fill),
        "bboxes": torch.tensor(boxes).reshape(-1, 4), "labels": torch.tensor(labels, dtype=torch.long),
        "target_shape": (4, 6), "img_id": img_id,
    }


SAMPLES = [det_sample("a", [[0.0, 0.0, 3.0, 2.0]], [2], 0.0), det_sample("b", [], [], 1.0)]


class BoxTask(ModuleTask):
    """A stand-in detector whose codec is ultralytics' batch format (as YOLOv8Task's)."""

    def __init__(self) -> None:
        super().__init__(TinyTaskNet(), lambda out, target: out.mean(), None)

    def collate_targets(self, targets, image_size):
        return ultralytics_targets(targets, image_size)

    def split_targets(self, target, count, image_size):
        return split_ultralytics_targets(target, count, image_size)


def test_collate_keeps_boxes_per_sample_and_the_swap_repeats_them():
    batch = collate_paired(SAMPLES, swap_modalities=True)
    assert not {"batch_idx", "cls", "bboxes", "labels"} & set(batch)
    assert len(batch["gt_bboxes"]) == len(batch["gt_labels"]) == 4
    for i, sample in enumerate(SAMPLES * 2):
        assert torch.equal(batch["gt_bboxes"][i], sample["bboxes"])
        assert torch.equal(batch["gt_labels"][i], sample["labels"])
    assert batch["img_id"] == ["a", "b", "a", "b"] and batch["target_shape"] == [(4, 6)] * 4
    assert batch["source_a_task"][0].max() == 0 and batch["source_a_task"][2].min() == 1  # second half: (VIS, IR)


def test_collate_refuses_boxes_outside_the_task_frame():
    bad = dict(SAMPLES[0], target_shape=(8, 8), img_id="bad")
    with pytest.raises(ValueError, match=r"'bad' live in a \(8, 8\) frame, its task image is \(4, 6\)"):
        collate_paired([bad])


def test_the_model_passes_per_sample_targets_to_the_adapters_codec():
    torch.manual_seed(0)
    model = MetaFusionModel(
        TinyFusion(), LearnableFusionLoss(ConvWeightGenerator(hidden=4, depth=1)), BoxTask(),
        data_keys=dict(target=dict(bboxes="gt_bboxes", labels="gt_labels")))
    batch = collate_paired(SAMPLES, swap_modalities=True)
    fusion_batch, targets = read_batch(batch, model.data_keys, model.task)
    # ultralytics' format, by the adapter: the swapped copy of box 0 is image 2's
    assert fusion_batch.target["batch_idx"].tolist() == [0.0, 2.0]
    assert fusion_batch.target["cls"].tolist() == [[2.0], [2.0]]
    torch.testing.assert_close(fusion_batch.target["bboxes"][0], torch.tensor([1.5 / 6, 1 / 4, 3 / 6, 2 / 4]))
    outputs = model.test_step(batch)
    assert len(outputs) == len(targets) == 4
    for output, sample in zip(outputs, SAMPLES * 2, strict=True):
        assert set(output["target"]) == {"bboxes", "labels"}
        assert torch.equal(output["target"]["bboxes"], sample["bboxes"])
        assert torch.equal(output["target"]["labels"], sample["labels"])
    # An already collated FusionBatch is split by the adapter's codec.
    _, split = read_batch(fusion_batch, model.data_keys, model.task)
    for got, sample in zip(split, SAMPLES * 2, strict=True):
        torch.testing.assert_close(got["bboxes"], sample["bboxes"])
        assert torch.equal(got["labels"], sample["labels"])
    with pytest.raises(KeyError, match="data_keys.target=dict"):
        MetaFusionModel(TinyFusion(), LearnableFusionLoss(ConvWeightGenerator(hidden=4, depth=1)), BoxTask(),
                        data_keys=dict(target=["batch_idx", "cls", "bboxes"])).to_fusion_batch(batch)


def test_default_codec_stacks_and_a_batch_entry_must_be_per_sample():
    task = ModuleTask(nn.Identity(), lambda out, target: out.mean(), None)
    masks = [torch.zeros(4, 6, dtype=torch.long), torch.ones(4, 6, dtype=torch.long)]
    stacked = collate_for(task, masks, (4, 6))
    assert stacked.shape == (2, 4, 6) and torch.equal(split_for(task, stacked, 2, (4, 6))[1], masks[1])
    model = MetaFusionModel(TinyFusion(), LearnableFusionLoss(ConvWeightGenerator(hidden=4, depth=1)), task)
    data = {"source_a": torch.rand(2, 1, 4, 6), "source_b": torch.rand(2, 1, 4, 6), "gt_sem_seg": torch.zeros(3, 4, 6)}
    with pytest.raises(ValueError, match="'gt_sem_seg' .* does not hold one target per sample"):
        model.to_fusion_batch(data)


def test_ultralytics_codec_round_trip_and_yolo_rows():
    targets = [{"bboxes": torch.tensor([[1.0, 2.0, 5.0, 8.0], [0.0, 0.0, 3.0, 3.0]]), "labels": torch.tensor([1, 2])},
               {"bboxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)},
               {"bboxes": torch.tensor([[10.0, 0.0, 20.0, 10.0]]), "labels": torch.tensor([0])}]
    batch = ultralytics_targets(targets, (10, 20))
    assert batch["batch_idx"].tolist() == [0.0, 0.0, 2.0] and batch["cls"].shape == (3, 1)
    assert float(batch["bboxes"].min()) >= 0 and float(batch["bboxes"].max()) <= 1
    for back, target in zip(split_ultralytics_targets(batch, 3, (10, 20)), targets, strict=True):
        torch.testing.assert_close(back["bboxes"], target["bboxes"])
        assert torch.equal(back["labels"], target["labels"])
    rows = ultralytics_targets([torch.tensor([[1.0, 0.5, 0.5, 0.25, 0.75]])])
    assert rows["cls"].tolist() == [[1.0]] and rows["bboxes"].tolist() == [[0.5, 0.5, 0.25, 0.75]]
    with pytest.raises(TypeError, match="'bboxes' and 'labels'"):
        ultralytics_targets([{"boxes": torch.zeros(0, 4)}], (4, 4))
    with pytest.raises(ValueError, match=r"\[n, 4\]"):
        ultralytics_targets([{"bboxes": torch.zeros(2, 3), "labels": torch.zeros(2)}], (4, 4))
