"""The samples' neutral keys (source_a, source_b, ...) and their modality names (source_names).

The old modality-named keys (ir, vi, ir_task, vi_task, vi_crcb) are refused with
their new names wherever a user hands keys in: a sample to a transform or to
collate, a model's data_keys.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from learnable_fusion_loss.datasets import (
    RENAMED_KEYS,
    PairedCenterCrop,
    PairedImageDataset,
    PairedResize,
    RandomModalitySwap,
    TaskView,
    YoloPairedDetDataset,
    collate_paired,
)
from learnable_fusion_loss.engine import MetaFusionModel
from learnable_fusion_loss.engine.samples import DEFAULT_DATA_KEYS, check_data_keys, per_sample_fields, read_batch
from learnable_fusion_loss.generators import ConvWeightGenerator
from learnable_fusion_loss.losses import LearnableFusionLoss
from learnable_fusion_loss.metrics import FusionMetric
from test_engine import EngineTestFusion, EngineTestTask, batch, optim_for

REPO = Path(__file__).resolve().parents[1]


def _pair(names: tuple[str, str] | None = ("ir", "vi"), **extra) -> dict:
    sample = {"source_a": torch.zeros(1, 4, 4), "source_b": torch.ones(1, 4, 4), "img_id": "p", **extra}
    if names is not None:
        sample["source_names"] = names
    return sample


def test_the_old_names_map_to_the_new_ones_in_one_place() -> None:
    assert RENAMED_KEYS == {"ir": "source_a", "vi": "source_b", "ir_task": "source_a_task",
                            "vi_task": "source_b_task", "vi_crcb": "source_b_crcb"}
    assert DEFAULT_DATA_KEYS == {"a": "source_a", "b": "source_b", "target": "gt_sem_seg",
                                 "task_a": "source_a_task", "task_b": "source_b_task"}


def test_datasets_name_their_modalities(data_root: Path) -> None:
    tno = PairedImageDataset(data_root / "tno")
    sample = tno[0]
    assert tno.source_names == sample["source_names"] == ("ir", "vi")
    assert not {"ir", "vi", "vi_crcb"} & set(sample) and {"source_a", "source_b"} <= set(sample)
    pet = PairedImageDataset(data_root / "mri_pet", modality_a="mri", modality_b="pet")
    assert pet[0]["source_names"] == ("mri", "pet") and "source_b_crcb" in pet[0]
    det = YoloPairedDetDataset(data_root / "msrs_det", "test", pipeline=[TaskView((24, 32))])
    assert det[0]["source_names"] == ("ir", "vi")
    assert det[0]["source_a_task"].shape == det[0]["source_b_task"].shape == (1, 24, 32)


def test_swap_reverses_source_names_and_collate_keeps_one_tuple() -> None:
    swapped = RandomModalitySwap(prob=1.0)(_pair())
    assert swapped["source_names"] == ("vi", "ir") and swapped["swapped"]
    assert torch.equal(swapped["source_a"], torch.ones(1, 4, 4))
    # a batch names the sources in their unswapped order; ``swapped`` marks the rows
    batch_ = collate_paired([RandomModalitySwap(prob=0.0)(_pair()), swapped])
    assert batch_["source_names"] == ("ir", "vi") and batch_["swapped"].tolist() == [False, True]
    doubled = collate_paired([_pair(), _pair()], swap_modalities=True)
    assert doubled["source_names"] == ("ir", "vi") and doubled["swapped"].tolist() == [False, False, True, True]


def test_collate_refuses_samples_of_other_modalities() -> None:
    with pytest.raises(ValueError, match=r"different modalities.*\('mri', 'pet'\)"):
        collate_paired([_pair(), _pair(("mri", "pet"), img_id="q")])


@pytest.mark.parametrize("step", [TaskView((2, 2)), PairedCenterCrop(2), PairedResize((2, 2)),
                                  RandomModalitySwap(prob=1.0)])
def test_transforms_refuse_the_old_keys(step) -> None:
    old = {"ir": torch.zeros(1, 4, 4), "vi": torch.ones(1, 4, 4), "img_id": "p"}
    with pytest.raises(KeyError, match="sample key 'ir' was renamed 'source_a'.*'vi' -> 'source_b'"):
        step(old)


def test_collate_refuses_the_old_keys() -> None:
    with pytest.raises(KeyError, match="sample key 'vi_crcb' was renamed 'source_b_crcb'"):
        collate_paired([_pair(vi_crcb=torch.zeros(2, 4, 4))])


def test_data_keys_refuse_the_old_keys() -> None:
    with pytest.raises(ValueError, match="data_keys task_a='ir_task'.*renamed 'source_a_task'"):
        check_data_keys(dict(task_a="ir_task"))
    with pytest.raises(ValueError, match="data_keys b='vi'.*renamed 'source_b'"):
        MetaFusionModel(EngineTestFusion(), LearnableFusionLoss(ConvWeightGenerator(hidden=4, depth=1)),
                        EngineTestTask(), data_keys=dict(b="vi"))
    old_batch = {"ir": torch.rand(2, 1, 4, 4), "vi": torch.rand(2, 1, 4, 4)}
    with pytest.raises(KeyError, match="batch key 'ir' was renamed 'source_a'"):
        read_batch(old_batch, DEFAULT_DATA_KEYS, EngineTestTask())


def test_source_names_is_no_per_sample_field() -> None:
    data = {"source_names": ("ir", "vi"), "img_id": ["x", "y"]}  # a batch of two: same length
    assert per_sample_fields(data, 2, exclude=set()) == [{"img_id": "x"}, {"img_id": "y"}]


def test_the_model_names_its_sources_neutrally_by_default() -> None:
    torch.manual_seed(0)
    model = MetaFusionModel(EngineTestFusion(), LearnableFusionLoss(ConvWeightGenerator(hidden=4, depth=1)),
                            EngineTestTask())
    assert model.source_names == ("a", "b")
    stats = model.train_step({"phase": "meta", "meta_train": batch(1), "meta_test": batch(2)}, optim_for(model))
    assert {"w_a", "w_b"} <= set(stats) and "w_ir" not in stats


def test_tdfusion_keeps_its_modality_names() -> None:
    from mmengine.config import Config

    base = REPO / "projects" / "tdfusion" / "configs" / "_base_" / "models"
    for name in ("tdfusion_segformer.py", "tdfusion_yolov8.py"):
        model = Config.fromfile(str(base / name)).model
        assert tuple(model.source_names) == ("ir", "vis"), name
        assert (model.data_keys.a, model.data_keys.b) == ("source_a", "source_b"), name
        assert (model.data_keys.task_a, model.data_keys.task_b) == ("source_a_task", "source_b_task"), name


def test_fusion_metric_reads_a_paired_sample_first() -> None:
    torch.manual_seed(0)
    fused, a, b, other = (torch.rand(1, 8, 8) for _ in range(4))

    def psnr(sample: dict) -> float:
        metric = FusionMetric(metrics=["PSNR"])
        metric.process({}, [sample])
        return metric.compute_metrics(metric.results)["PSNR"]

    assert psnr({"fused": fused, "source_a": a, "source_b": b, "a": other, "b": other}) == psnr(
        {"fused": fused, "a": a, "b": b})
    assert psnr({"fused": fused, "a": a, "b": b}) != psnr({"fused": fused, "a": other, "b": other})
