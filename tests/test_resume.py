"""Interrupted runs resume to exactly the parameters of an uninterrupted run.

* In-process: a hook raises after iteration k (inside an epoch, inside the meta or
  the fusion phase); a new runner with ``resume=True`` finishes the run. The task
  net uses dropout, so the result is only equal if the RNG states are restored
  (a control run without ``TrainingStateHook`` must differ).
* Through the tools: ``tools/train.py`` on the mini detection config at tiny sizes
  is SIGKILLed after its second checkpoint, then ``tools/train.py --resume``
  finishes; the final checkpoint equals that of an uninterrupted run.
"""

from __future__ import annotations

import copy
import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.logging import HistoryBuffer
from mmengine.runner import Runner
from torch import nn

from learnable_fusion_loss.compat import patch_mmengine_checkpoint_loading
from learnable_fusion_loss.registry import MODELS
from learnable_fusion_loss.tasks import ModuleTask

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_engine import base_cfg  # noqa: E402  (registers the tiny fixtures)

patch_mmengine_checkpoint_loading()
HistoryBuffer()  # fills the statistic-method registry the safe unpickler checks against
REPO_ROOT = Path(__file__).resolve().parents[1]


@MODELS.register_module(name="ResumeTestTask", force=True)
class ResumeTestTask(ModuleTask):
    """A per-pixel classifier with dropout: its training consumes the torch RNG."""

    def __init__(self) -> None:
        net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Dropout(0.3), nn.Conv2d(4, 2, 1))
        super().__init__(net, nn.functional.cross_entropy, None)


class Interrupt(Exception):
    pass


class InterruptAfter(Hook):
    """Raise after iteration ``n`` (1-based), i.e. after its checkpoint was written."""

    priority = "LOWEST"

    def __init__(self, n: int) -> None:
        self.n = n

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.iter + 1 == self.n:
            raise Interrupt(f"interrupted after iteration {self.n}")


def _cfg(work_dir: Path, resume: bool = False, rng_hook: bool = True) -> dict:
    cfg = base_cfg(work_dir)
    cfg["model"]["task"] = dict(type="ResumeTestTask")
    cfg["default_hooks"]["checkpoint"] = dict(type="AtomicCheckpointHook", interval=1, by_epoch=False)
    cfg["custom_hooks"] = [dict(type="TrainingStateHook")] if rng_hook else []
    cfg["resume"] = resume
    return cfg


def _train(cfg: dict, interrupt_after: int | None = None) -> dict[str, torch.Tensor] | None:
    runner = Runner.from_cfg(Config(copy.deepcopy(cfg)))
    if interrupt_after is not None:
        runner.register_hook(InterruptAfter(interrupt_after))
    try:
        runner.train()
    except Interrupt:
        return None
    return {k: v.detach().clone() for k, v in runner.model.state_dict().items()}


def _max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a if a[k].numel())


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict[str, torch.Tensor]:
    return _train(_cfg(tmp_path_factory.mktemp("reference")))


@pytest.mark.parametrize("interrupt_after", [1, 4, 5, 7])  # meta, fusion, epoch end, epoch 2
def test_resume_in_process_is_exact(tmp_path, reference, interrupt_after):
    assert _train(_cfg(tmp_path / "run"), interrupt_after=interrupt_after) is None
    saved = Path((tmp_path / "run" / "last_checkpoint").read_text().strip())
    assert saved.name == f"iter_{interrupt_after}.pth"
    resumed = _train(_cfg(tmp_path / "run", resume=True))
    assert _max_difference(reference, resumed) == 0.0


def test_resume_without_rng_state_differs(tmp_path):
    """Control: the equality above depends on the restored RNG states (dropout in T)."""
    reference = _train(_cfg(tmp_path / "ref", rng_hook=False))
    _train(_cfg(tmp_path / "run", rng_hook=False), interrupt_after=4)
    resumed = _train(_cfg(tmp_path / "run", resume=True, rng_hook=False))
    assert _max_difference(reference, resumed) > 0.0


# ------------------------------------------------------------- through tools
MINI = "projects/tdfusion/configs/tdfusion_yolov8_msrsdet_mini.py"
TINY = [
    "train_cfg.max_epochs=2", "train_cfg.meta_steps=1", "train_cfg.fusion_steps=3",
    "train_dataloader.dataset.pipeline.0.size=[64,64]",
    "train_dataloader.dataset.pipeline.1.size=32",
    "default_hooks.checkpoint.interval=1", "default_hooks.checkpoint.max_keep_ckpts=-1",
    "default_hooks.logger.interval=1", "custom_hooks.1.interval=0",
    "randomness.seed=3",
]


def _tool_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONHASHSEED="0")
    return env


def _train_cmd(work_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, "tools/train.py", MINI, "--work-dir", str(work_dir), "--deterministic",
            *extra, "--cfg-options", *TINY]


def _final_state(work_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(work_dir / "iter_8.pth", map_location="cpu", weights_only=True)["state_dict"]


@pytest.mark.slow
def test_killed_tool_run_resumes_to_the_same_parameters(tmp_path, data_root):
    if importlib.util.find_spec("ultralytics") is None:
        pytest.skip("ultralytics is not installed (extra 'det')")
    env = _tool_env()
    ref_dir, run_dir = tmp_path / "ref", tmp_path / "run"
    subprocess.run(_train_cmd(ref_dir), cwd=REPO_ROOT, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=600)

    proc = subprocess.Popen(_train_cmd(run_dir), cwd=REPO_ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 300
        while not (run_dir / "iter_2.pth").exists():
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.time() < deadline, "no checkpoint after 300 s"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert not (run_dir / "iter_8.pth").exists(), "killed too late to test resuming"

    done = subprocess.run(_train_cmd(run_dir, "--resume"), cwd=REPO_ROOT, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-4000:]
    assert "resumed epoch" in done.stdout
    reference, resumed = _final_state(ref_dir), _final_state(run_dir)
    assert _max_difference(reference, resumed) == 0.0
