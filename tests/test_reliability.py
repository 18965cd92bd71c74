"""The reliability catalogue: bad inputs and faults from the reliability issue, one test per item.

Each test feeds the real tools (in a subprocess, as a user runs them) the input or
fault of one item and checks the promised behaviour: the right exit status, an
error line that names the file and what is wrong, and no half-written output.
Sizes are tiny (one epoch of 1 meta + 2 fusion steps on 32 px crops; a few pairs).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from learnable_fusion_loss.apis import load_fusion_network
from learnable_fusion_loss.compat import load_weights_only

from _scripts import load_script

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG = "projects/tdfusion/configs/tdfusion_yolov8_msrsdet_mini.py"
TRAIN_OPTIONS = [
    "train_cfg.max_epochs=1", "train_cfg.meta_steps=1", "train_cfg.fusion_steps=2",
    "train_dataloader.dataset.pipeline.0.size=[64,64]", "train_dataloader.dataset.pipeline.1.size=32",
]
# One batch of the test split at 64x96 and the cheap fusion metrics.
TEST_OPTIONS = [
    "test_dataloader.num_batch_per_epoch=1",
    "test_dataloader.dataset.pipeline.0.size=[64,96]",
    "test_dataloader.dataset.pipeline.1.size=[64,96]",
    "test_evaluator.0.metrics=['EN','SD','SSIM']",
]
TNO_PAIRS = ("07.png", "19.png")  # 256x256 and 360x270 (an odd size; RGB-stored grey)


def _tool(*args: object) -> subprocess.CompletedProcess:
    """Run ``python <args>`` from the repository root, offline, on one thread."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONHASHSEED="0",
               YOLO_OFFLINE="1", YOLO_AUTOINSTALL="0")
    return subprocess.run([sys.executable, *map(str, args)], cwd=REPO_ROOT, env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=600)


def _log(done: subprocess.CompletedProcess) -> str:
    return f"exit {done.returncode}\n--- stdout\n{done.stdout[-4000:]}\n--- stderr\n{done.stderr[-4000:]}"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, data_root: Path) -> Path:
    """A runner checkpoint of ``tools/train.py`` (F, G, T, optimisers, message_hub)."""
    if importlib.util.find_spec("ultralytics") is None:
        pytest.skip("ultralytics is not installed (task backend of the detection mini config)")
    work = tmp_path_factory.mktemp("trained")
    done = _tool("tools/train.py", CONFIG, "--work-dir", work, "--cfg-options", *TRAIN_OPTIONS)
    assert done.returncode == 0, _log(done)
    checkpoint = Path((work / "last_checkpoint").read_text().strip())
    assert checkpoint.is_file()
    return checkpoint


# ------------------------------------------------------------------ item 1
@pytest.mark.slow
def test_train_checkpoint_loads_in_test_and_fuse(trained: Path, tmp_path: Path, data_root: Path):
    """A checkpoint of tools/train.py is tested by tools/test.py and fused by tools/fuse.py.

    fuse.py used to exit 2 with torch's weights-only error (MMEngine's HistoryBuffer
    in message_hub) and its advice to load with ``weights_only=False``.
    """
    out = tmp_path / "results.json"
    done = _tool("tools/test.py", CONFIG, trained, "--work-dir", tmp_path / "test_work",
                 "--out", out, "--no-images", "--cfg-options", *TEST_OPTIONS)
    assert done.returncode == 0, _log(done)
    metrics = json.loads(out.read_text())["metrics"]
    assert metrics["fusion/count"] == 2.0 and 0 < metrics["fusion/EN"] <= 8, metrics

    ir, vi, fused = tmp_path / "ir", tmp_path / "vi", tmp_path / "fused"
    for folder, source in ((ir, "ir"), (vi, "vi")):
        folder.mkdir()
        for name in TNO_PAIRS:
            shutil.copy(data_root / "tno" / "test" / source / name, folder / name)
    done = _tool("tools/fuse.py", "--ir", ir, "--vi", vi, "--out", fused, "--checkpoint", trained)
    assert done.returncode == 0, _log(done)
    assert "weights_only" not in done.stdout + done.stderr
    for name in TNO_PAIRS:
        with Image.open(fused / name) as image, Image.open(ir / name) as source:
            assert image.size == source.size, name


def test_unsafe_checkpoint_is_refused_naming_the_file(tmp_path: Path):
    """A file that needs more than the allow-list is refused, never executed, never excused.

    The error names the file and the refused object and does not advise
    ``weights_only=False`` (which would run the payload below).
    """
    victim = tmp_path / "victim.txt"
    victim.write_text("still here")

    class Payload:
        def __reduce__(self):
            return (os.remove, (str(victim),))

    path = tmp_path / "unsafe.pth"
    torch.save({"state_dict": {"project_in_1.weight": torch.zeros(1)}, "extra": Payload()}, path)
    with pytest.raises(ValueError) as caught:
        load_fusion_network(path)
    message = str(caught.value)
    assert str(path) in message and "remove" in message, message
    assert "weights_only=False" not in message, message
    assert victim.read_text() == "still here"
    with pytest.raises(ValueError, match="cannot read .*not_a_checkpoint.pth"):
        (tmp_path / "not_a_checkpoint.pth").write_bytes(b"\x00garbage")
        load_fusion_network(tmp_path / "not_a_checkpoint.pth")


# ------------------------------------------------------------------ item 2
def _resnet_like(state: dict) -> tuple[dict, list[str]]:
    names = ["conv1.weight", "bn1.weight", "bn1.bias", "layer1.0.conv1.weight", "fc.weight"]
    shapes = [(64, 3, 7, 7), (64,), (64,), (64, 64, 3, 3), (1000, 512)]
    first_missing = next(iter(state["state_dict"]))
    return ({n: torch.randn(s) for n, s in zip(names, shapes, strict=True)},
            ["missing key", repr(first_missing), "unexpected key", "'conv1.weight'"])


def _fusion_only(state: dict) -> tuple[dict, list[str]]:
    prefix = "fusion_net."
    fusion = {k[len(prefix):]: v for k, v in state["state_dict"].items() if k.startswith(prefix)}
    return fusion, ["missing key", f"'{prefix}", "unexpected key", repr(next(iter(fusion))),
                    "tools/fuse.py"]


def _wrong_shape(state: dict) -> tuple[dict, list[str]]:
    key = next(k for k, v in state["state_dict"].items()
               if k.startswith("loss.generator.") and v.dim() >= 1)
    value = state["state_dict"][key]
    state["state_dict"][key] = torch.zeros(value.shape[0] + 1, *value.shape[1:])
    return state, ["1 wrong-shape key", repr(key)]


@pytest.mark.slow
@pytest.mark.parametrize("make", [_resnet_like, _fusion_only, _wrong_shape],
                         ids=["resnet_like", "fusion_only", "wrong_shape"])
def test_test_tool_refuses_a_mismatching_checkpoint(make, trained: Path, tmp_path: Path):
    """tools/test.py loads strictly: a checkpoint that is not the config's model exits 2.

    MMEngine's ``load_from`` only warns, so each of these used to be tested as a
    randomly initialised model and reported with exit 0.
    """
    bad, expected = make(load_weights_only(trained))
    path = tmp_path / "bad.pth"
    torch.save(bad, path)
    out = tmp_path / "results.json"
    work = tmp_path / "work"
    done = _tool("tools/test.py", CONFIG, path, "--work-dir", work, "--out", out,
                 "--cfg-options", *TEST_OPTIONS)
    assert done.returncode == 2, _log(done)
    error = done.stderr.strip().splitlines()[-1]
    assert error.startswith("error: ") and str(path) in error, _log(done)
    for part in expected:
        assert part in error, (part, error)
    assert "Traceback" not in done.stderr, _log(done)
    assert not out.exists() and not list(work.rglob("test_results.json"))
    assert not (work / "test_outputs").exists()


# ------------------------------------------------------------------ item 3
def _copy_work_dir(trained: Path, target: Path) -> Path:
    """A private copy of the trained work dir (checkpoint and ``last_checkpoint``)."""
    target.mkdir()
    shutil.copy(trained, target / trained.name)
    (target / "last_checkpoint").write_text(str(target / trained.name))
    return target


def _train(work: Path, *flags: str) -> subprocess.CompletedProcess:
    return _tool("tools/train.py", CONFIG, "--work-dir", work, *flags, "--cfg-options", *TRAIN_OPTIONS)


@pytest.mark.slow
def test_a_busy_or_used_work_dir_is_refused(trained: Path, tmp_path: Path):
    """A second run on a locked work dir, or a rerun over checkpoints, stops with exit 2.

    Two runs on one dir used to both exit 0 with interleaved logs and one run's
    checkpoints silently replacing the other's; a rerun without ``--resume``
    replaced ``iter_N.pth`` without a word.
    """
    import fcntl

    work = _copy_work_dir(trained, tmp_path / "work")
    checkpoint = work / trained.name
    before = (sorted(p.name for p in work.iterdir()), checkpoint.read_bytes())
    lock = work / "train.lock"
    with lock.open("w") as held:  # this test process plays the running training
        fcntl.flock(held, fcntl.LOCK_EX)
        held.write(f"{os.getpid()}\n")
        held.flush()
        done = _train(work, "--resume")
    assert done.returncode == 2, _log(done)
    error = done.stderr.strip().splitlines()[-1]
    assert error.startswith("error: ") and str(lock) in error and f"PID {os.getpid()}" in error, error
    lock.unlink()

    done = _train(work)  # neither --resume nor --overwrite
    assert done.returncode == 2, _log(done)
    error = done.stderr.strip().splitlines()[-1]
    for part in ("already holds checkpoints", trained.name, "--resume", "--overwrite"):
        assert part in error, (part, error)
    assert "Traceback" not in done.stderr
    assert (sorted(p.name for p in work.iterdir()), checkpoint.read_bytes()) == before

    done = _train(work, "--overwrite")  # the explicit choice: a new run from scratch
    assert done.returncode == 0, _log(done)
    assert "--overwrite: starting from scratch" in done.stderr
    assert Path((work / "last_checkpoint").read_text().strip()) == checkpoint
    assert not lock.exists()  # released when the run ends


@pytest.fixture(scope="module")
def resumed_after_kill(trained: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """``--resume`` on a work dir a killed run left: its stale lock and a partial checkpoint."""
    work = _copy_work_dir(trained, tmp_path_factory.mktemp("killed") / "work")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # its PID names no live process now
    (work / "train.lock").write_text(f"{dead.pid}\n")
    partial = work / ".iter_6.pth.k3j4h5g6.tmp"
    partial.write_bytes(b"\0" * 4096)  # what a write killed midway leaves
    done = _train(work, "--resume")
    return {"work": work, "dead_pid": dead.pid, "partial": partial, "done": done}


@pytest.mark.slow
def test_a_stale_lock_is_taken_over_with_a_note(resumed_after_kill: dict):
    done = resumed_after_kill["done"]
    assert done.returncode == 0, _log(done)
    assert "resumed epoch" in done.stdout + done.stderr
    assert "took over the stale lock" in done.stderr and str(resumed_after_kill["dead_pid"]) in done.stderr
    assert not (resumed_after_kill["work"] / "train.lock").exists()


# ------------------------------------------------------------------ item 8
@pytest.mark.slow
def test_resume_removes_a_partial_checkpoint_write(resumed_after_kill: dict):
    """A killed checkpoint write left ``.iter_N.pth.*.tmp`` (up to 38 MB) that stayed forever."""
    done = resumed_after_kill["done"]
    assert done.returncode == 0, _log(done)
    assert not resumed_after_kill["partial"].exists()
    assert "removed 1 partial checkpoint file(s)" in done.stderr, _log(done)
    assert not list(resumed_after_kill["work"].glob(".*.tmp"))


# ------------------------------------------------------------------ item 11 (checkpoints)
def _checkpoint_case(kind: str, tmp_path: Path) -> Path:
    path = tmp_path / f"{kind}.pth"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "list":
        torch.save([torch.zeros(2)], path)
    else:  # a bare state dict, not a runner checkpoint
        torch.save({"project_in_1.weight": torch.zeros(8, 1, 3, 3)}, path)
    return path


@pytest.mark.parametrize(("tool", "kind", "expected"), [
    ("train", "empty", "the file is empty"),
    ("train", "list", "holds a list"),
    ("train", "state_dict", "has no 'meta'"),
    ("test", "empty", "the file is empty"),
    ("test", "list", "holds a list"),
])
def test_bad_checkpoints_are_named_with_their_cause(tool: str, kind: str, expected: str, tmp_path: Path):
    """An empty, list or non-runner checkpoint: exit 2, one line with the file and the cause.

    These used to end in a bare ``EOFError``, an ``AttributeError`` or ``KeyError: 'meta'``
    (``--resume``), or "…as a weights-only torch checkpoint: " with nothing after it.
    """
    path = _checkpoint_case(kind, tmp_path)
    if tool == "train":
        done = _tool("tools/train.py", CONFIG, "--work-dir", tmp_path / "work", "--resume", path)
    else:
        done = _tool("tools/test.py", CONFIG, path, "--work-dir", tmp_path / "work",
                     "--cfg-options", *TEST_OPTIONS)
    assert done.returncode == 2, _log(done)
    error = done.stderr.strip().splitlines()[-1]
    assert error.startswith("error: ") and str(path) in error and expected in error, error
    assert "Traceback" not in done.stderr, _log(done)


def test_a_failed_checkpoint_write_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """ENOSPC while saving: the error names the checkpoint; the previous one stays, no temp file."""
    import errno

    from learnable_fusion_loss.engine import hooks

    target = tmp_path / "iter_9.pth"
    target.write_bytes(b"previous checkpoint")

    def full_disk(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(hooks.os, "fsync", full_disk)
    with pytest.raises(OSError) as caught:
        hooks.atomic_write_bytes(target, b"new checkpoint")
    assert caught.value.errno == errno.ENOSPC
    assert str(target) in str(caught.value) and "No space left" in str(caught.value)
    assert target.read_bytes() == b"previous checkpoint"
    assert [p.name for p in tmp_path.iterdir()] == ["iter_9.pth"]


@pytest.mark.slow
def test_a_full_disk_during_training_names_the_checkpoint(tmp_path: Path, data_root: Path,
                                                          monkeypatch: pytest.MonkeyPatch):
    """tools/train.py stops with the checkpoint's name (ENOSPC used to name no file)."""
    import errno
    import importlib.util

    if importlib.util.find_spec("ultralytics") is None:
        pytest.skip("ultralytics is not installed (task backend of the detection mini config)")
    train = load_script(REPO_ROOT / "tools" / "train.py", "_train_tool")
    from learnable_fusion_loss.engine import hooks

    def full_disk(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(hooks.os, "fsync", full_disk)  # every atomic write hits a full disk
    work = tmp_path / "work"
    with pytest.raises(train.OutputNotWritten) as caught:  # exit status 1 from the command line
        train.main([str(REPO_ROOT / CONFIG), "--work-dir", str(work), "--cfg-options",
                    *TRAIN_OPTIONS, "custom_hooks.1.interval=0"])  # no panels: the checkpoint first
    message = str(caught.value)
    assert f"cannot write {str(work / 'iter_3.pth')!r}: No space left on device" in message, message
    assert "training stopped in iteration 3" in message, message
    assert not list(work.glob("*.pth")) and not list(work.glob(".*.tmp"))
    assert not (work / "train.lock").exists()
