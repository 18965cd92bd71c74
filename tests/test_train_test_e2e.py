"""End to end through the real tools: tools/train.py, then tools/test.py, on the mini configs.

Tiny sizes via ``--cfg-options`` (one epoch of 1 meta + 2 fusion steps on 32 px crops
and a 64 px task view; 4 test pairs at 64x96), on the real ``msrs_det`` data. Checks
that the checkpoint, the log with every logged quantity, the weight-map panels,
the JSON/Markdown results and the fused images / weight maps exist and parse.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mmengine.logging import HistoryBuffer
from PIL import Image

from learnable_fusion_loss.compat import patch_mmengine_checkpoint_loading

patch_mmengine_checkpoint_loading()
HistoryBuffer()  # fills the statistic-method registry the safe unpickler checks against
REPO_ROOT = Path(__file__).resolve().parents[1]

CASES = {
    "detection": dict(
        config="projects/tdfusion/configs/tdfusion_yolov8_msrsdet_mini.py",
        needs="ultralytics",
        train=["train_dataloader.dataset.pipeline.0.size=[64,64]",
               "train_dataloader.dataset.pipeline.1.size=32"],
        test=["test_dataloader.dataset.pipeline.0.size=[64,96]",
              "test_dataloader.dataset.pipeline.1.size=[64,96]"],
        task_metrics=("task/mAP50", "task/mAP75"),
    ),
    "segmentation": dict(
        config="projects/tdfusion/configs/tdfusion_segformer_msrsweak_mini.py",
        needs="mmseg",
        train=["train_dataloader.dataset.pipeline.1.size=[64,64]",
               "train_dataloader.dataset.pipeline.2.size=32"],
        test=["test_dataloader.dataset.pipeline.0.size=[64,96]",
              "test_dataloader.dataset.pipeline.2.size=[64,96]"],
        task_metrics=("task/mIoU", "task/mAcc"),
    ),
    "multitask": dict(
        config="projects/tdfusion/configs/tdfusion_multitask_msrsdet_mini.py",
        needs=("mmseg", "ultralytics"),
        train=["train_dataloader.dataset.pipeline.1.size=[64,64]",
               "train_dataloader.dataset.pipeline.2.size=32"],
        test=["test_dataloader.dataset.pipeline.0.size=[64,96]",
              "test_dataloader.dataset.pipeline.2.size=[64,96]"],
        task_metrics=("task/seg/mIoU", "task/det/mAP50"),
        logged=("task_seg/loss_task", "task_det/loss_box"),
    ),
}
# The same with learned weights (homoscedastic uncertainty): the log-variances are logged.
CASES["multitask_learned"] = dict(
    CASES["multitask"], train=[*CASES["multitask"]["train"], "model.task.learn_weights=True"],
    test=[*CASES["multitask"]["test"], "model.task.learn_weights=True"],
    logged=("task_seg/loss_task", "task_seg/log_var", "task_det/weight"))
# MS-SSIM needs >= 161 px; everything else is defined at 64x96.
FUSION_METRICS = "['EN','SD','SF','AG','MI','SCD','VIF','Qabf','SSIM','CC']"


def _run(args: list[str]) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONHASHSEED="0")
    done = subprocess.run([sys.executable, *args], cwd=REPO_ROOT, env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600)
    assert done.returncode == 0, done.stdout[-6000:]
    return done


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CASES))
def test_train_then_test_through_the_tools(case, tmp_path, data_root):
    spec = CASES[case]
    for needs in [spec["needs"]] if isinstance(spec["needs"], str) else spec["needs"]:
        if importlib.util.find_spec(needs) is None:
            pytest.skip(f"{needs} is not installed (task backend of the {case} config)")
    work = tmp_path / "work"
    _run(["tools/train.py", spec["config"], "--work-dir", str(work), "--cfg-options",
          "train_cfg.max_epochs=1", "train_cfg.meta_steps=1", "train_cfg.fusion_steps=2",
          "default_hooks.logger.interval=1", "custom_hooks.1.interval=2", *spec["train"]])

    checkpoint = Path((work / "last_checkpoint").read_text().strip())
    assert checkpoint.name == "iter_3.pth" and checkpoint.is_file()
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    assert {"fusion", "generator", "task"} <= set(state["optimizer"])
    assert {"rng_state", "loop_state"} <= set(state["meta"])
    logs = [json.loads(line) for line in next(work.glob("*/vis_data/scalars.json")).read_text().splitlines()]
    logged = set().union(*logs)
    for key in ("loss_fusion", "loss_int", "loss_grad", "loss_task", "loss_task_meta",
                "hypergrad_norm", "w_ir", "w_vis", *spec.get("logged", ())):
        assert key in logged, key
    assert sorted(p.name for p in (work / "vis").glob("*.png")) == ["iter_000001.png", "iter_000002.png"]
    assert Image.open(work / "vis" / "iter_000002.png").mode == "RGB"

    out = tmp_path / "results" / "metrics.json"
    done = _run(["tools/test.py", spec["config"], str(checkpoint), "--work-dir", str(work),
                 "--out", str(out), "--cfg-options", "test_dataloader.num_batch_per_epoch=2",
                 f"test_evaluator.0.metrics={FUSION_METRICS}", *spec["test"]])
    record = json.loads(out.read_text())
    metrics = record["metrics"]
    for key in ("fusion/EN", "fusion/SSIM", "fusion/Qabf", "fusion/VIF", *spec["task_metrics"]):
        assert key in metrics, (key, sorted(metrics))
        assert isinstance(metrics[key], float)
    assert metrics["fusion/count"] == 4.0
    assert 0 < metrics["fusion/EN"] <= 8
    table = out.with_suffix(".md").read_text()
    assert "| fusion | EN |" in table and f"| task | {spec['task_metrics'][0][5:]} |" in table
    assert table in done.stdout
    fused = sorted((work / "test_outputs" / "fused").glob("*.png"))
    weights = sorted((work / "test_outputs" / "weights").glob("*.png"))
    assert len(fused) == 4 and len(weights) == 8
    assert Image.open(fused[0]).size == (96, 64)
    assert {p.name.rsplit("_w_", 1)[1] for p in weights} == {"ir.png", "vis.png"}
