"""Every config in projects/tdfusion/configs builds its runner components (no training).

For each config: the model (F, G, T), the optimiser wrappers and parameter
schedulers, the Algorithm-1 loop with its epoch plan, the test loop (dataset and
evaluators), and one training and one test sample through the pipelines. Configs
on ``msrs_det`` read the real data in ``../shared/data``; MSRS, FMB, M3FD and LLVIP
are not available here, so their configs run on a tiny fixture with each dataset's
folder layout (``data_root`` pointed at it, as a user would with ``--cfg-options``).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # projects.tdfusion.tdfusion (as tools/*.py do)

from learnable_fusion_loss.compat import apply_offline_defaults  # noqa: E402

apply_offline_defaults()

from mmengine.config import Config  # noqa: E402
from mmengine.optim import OptimWrapperDict  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

from learnable_fusion_loss.engine import EpochPlan, MetaFusionModel, MetaFusionTrainLoop  # noqa: E402
from learnable_fusion_loss.engine.config import resolve_data_root  # noqa: E402

CONFIG_DIR = REPO_ROOT / "projects" / "tdfusion" / "configs"
CONFIGS = sorted(p.name for p in CONFIG_DIR.glob("*.py"))
FULL_DATA_CONFIGS = {
    "tdfusion_segformer_msrs.py", "tdfusion_segformer_msrs_official.py",
    "tdfusion_segformer_fmb.py", "tdfusion_yolov8_m3fd.py", "tdfusion_yolov8_llvip.py",
}


def _needs(cfg: Config) -> None:
    task = cfg.model.task
    types = {m.type for m in task.tasks.values()} if task.type == "MultiTask" else {task.type}
    if "SegFormerTask" in types and importlib.util.find_spec("mmseg") is None:
        pytest.skip("mmsegmentation is not installed (extra 'seg')")
    if "YOLOv8Task" in types and importlib.util.find_spec("ultralytics") is None:
        pytest.skip("ultralytics is not installed (extra 'det')")


def _png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _voc(path: Path, name: str, w: int, h: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f"<annotation><size><width>{w}</width><height>{h}</height></size>"
        f"<object><name>{name}</name><bndbox><xmin>20</xmin><ymin>30</ymin>"
        f"<xmax>120</xmax><ymax>150</ymax></bndbox></object></annotation>"
    )


@pytest.fixture(scope="module")
def fixture_root(tmp_path_factory) -> Path:
    """Four pairs per split in the MSRS, FMB, M3FD and LLVIP layouts (300x400 images)."""
    root = tmp_path_factory.mktemp("layouts")
    rng = np.random.default_rng(0)
    h, w = 300, 400

    def grey() -> np.ndarray:
        return rng.integers(0, 256, (h, w), dtype=np.uint8)

    def colour() -> np.ndarray:
        return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)

    for split in ("train", "test"):
        for k in range(4):
            name = f"{split}{k:02d}"
            for ds, ir, vi, lab, classes in (("MSRS", "ir", "vi", "Segmentation_labels", 9),
                                             ("FMB", "Infrared", "Visible", "Label", 15)):
                _png(root / ds / split / ir / f"{name}.png", grey())
                _png(root / ds / split / vi / f"{name}.png", colour())
                _png(root / ds / split / lab / f"{name}.png",
                     rng.integers(0, classes, (h, w), dtype=np.uint8))
            _png(root / "M3FD" / "Ir" / f"{name}.png", grey())
            _png(root / "M3FD" / "Vis" / f"{name}.png", colour())
            _voc(root / "M3FD" / "Annotation" / f"{name}.xml", "Car", w, h)
            _png(root / "LLVIP" / "infrared" / split / f"{name}.png", grey())
            _png(root / "LLVIP" / "visible" / split / f"{name}.png", colour())
            _voc(root / "LLVIP" / "Annotations" / f"{name}.xml", "person", w, h)
        (root / "M3FD" / f"{split}.txt").write_text("".join(f"{split}{k:02d}\n" for k in range(4)))
    return root


@pytest.mark.parametrize("name", CONFIGS)
def test_config_builds(name, tmp_path, fixture_root, data_root):
    cfg = Config.fromfile(str(CONFIG_DIR / name))
    _needs(cfg)
    root = fixture_root if name in FULL_DATA_CONFIGS else data_root
    resolve_data_root(cfg, REPO_ROOT, explicit=str(root))
    cfg.work_dir = str(tmp_path)
    runner = Runner.from_cfg(cfg)

    model = runner.model
    assert isinstance(model, MetaFusionModel)
    loop = runner.build_train_loop(cfg.train_cfg)
    assert isinstance(loop, MetaFusionTrainLoop) and isinstance(loop.dataloader, EpochPlan)
    plan = loop.dataloader
    assert len(plan) == plan.meta_steps + plan.fusion_steps > 0
    assert loop.max_iters == plan.warmup_iters + cfg.train_cfg.max_epochs * len(plan)
    optim = runner.build_optim_wrapper(cfg.optim_wrapper)
    assert isinstance(optim, OptimWrapperDict)
    expected = {k for k, v in cfg.optim_wrapper.items() if k != "constructor" and v is not None}
    trainable = {k for k, m in model.optim_modules().items()
                 if m is not None and any(p.requires_grad for p in m.parameters())}
    assert set(optim.keys()) == expected & trainable
    if cfg.get("param_scheduler"):
        runner._train_loop = loop
        runner.optim_wrapper = optim
        schedulers = runner.build_param_scheduler(cfg.param_scheduler)
        assert set(schedulers) == set(optim.keys())

    sample = plan.dataset[0]
    batch = plan.collate_fn([sample, plan.dataset[1]])
    fusion_batch = model.to_fusion_batch(batch)
    assert fusion_batch.a.shape[1] == 1 and fusion_batch.task_a is not None
    assert fusion_batch.target is not None
    test_loop = runner.build_test_loop(cfg.test_cfg)
    metric_types = {type(m).__name__ for m in test_loop.evaluator.metrics}
    assert metric_types == {"FusionMetric", "TaskMetric"}
    assert len(test_loop.dataloader.dataset) > 0

    # The settings the paper and the public code prescribe.
    if name in ("tdfusion_segformer_msrs.py", "tdfusion_segformer_fmb.py",
                "tdfusion_yolov8_m3fd.py", "tdfusion_yolov8_llvip.py"):
        assert cfg.train_cfg.max_epochs == 50 and cfg.train_cfg.meta_steps == 200
        assert cfg.train_dataloader.batch_size == 2 and cfg.model.loss.alpha == 1.0
        for key in ("fusion", "generator", "task"):
            assert cfg.optim_wrapper[key].optimizer.type == "Adam"
            assert cfg.optim_wrapper[key].optimizer.lr == 1e-4
    if not name.endswith("_cpu.py"):  # the warm-ups are off in every paper and mini config
        assert plan.warmup_iters == 0
    else:  # ablation V has no F, so nothing to warm up but T
        assert plan.task_warmup_steps > 0
        assert (plan.fusion_warmup_steps > 0) == model.fusion_trainable
    if name == "tdfusion_segformer_msrs_official.py":
        assert cfg.train_cfg.max_epochs == 40
        assert cfg.param_scheduler[0].type == "StepLR" and cfg.param_scheduler[0].step_size == 10
