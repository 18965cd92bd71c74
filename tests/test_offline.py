"""Offline guarantees of the task backends and the compat shims.

The main check runs in a fresh interpreter (ultralytics decides at *import* time
whether it is online and where its config lives): sockets are blocked and every
write is audited while both adapters are built, their losses back-propagated,
evaluation run and ultralytics' font lookup exercised.
"""

from __future__ import annotations

import json
import os
import pickle
import socket
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from learnable_fusion_loss import compat

REPO_ROOT = Path(__file__).resolve().parents[1]

_CHILD = textwrap.dedent(
    r"""
    import json, os, socket, sys, tempfile
    attempts, writes, arial = [], [], []
    allowed = tuple(os.path.realpath(p) for p in sys.argv[2:]) + ("/dev/",)

    def _blocked(*args, **kwargs):
        attempts.append(repr(args[:2]))
        raise OSError("network access blocked by test_offline")

    socket.socket.connect = lambda self, *a, **k: _blocked(*a)
    socket.socket.connect_ex = lambda self, *a, **k: _blocked(*a)
    socket.create_connection = _blocked
    socket.getaddrinfo = _blocked
    socket.gethostbyname = _blocked

    WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND

    def _audit(event, args):
        if event.startswith("socket.") and event not in ("socket.__new__", "socket.bind"):
            attempts.append(event)
        elif event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
            path = os.fsdecode(args[0])
            mode, flags = args[1], args[2] or 0
            if "arial" in os.path.basename(path).lower():
                arial.append(path)
            if (mode and any(c in mode for c in "wax+")) or (not mode and flags & WRITE_FLAGS):
                real = os.path.realpath(path)
                if not real.startswith(allowed):
                    writes.append(real)
        elif event in ("os.mkdir", "os.rename", "os.remove", "shutil.copyfile", "shutil.move"):
            real = os.path.realpath(os.fsdecode(args[0]))
            if not real.startswith(allowed):
                writes.append(f"{event}:{real}")

    sys.addaudithook(_audit)

    import numpy as np
    import torch
    torch.set_num_threads(1)
    from learnable_fusion_loss.tasks.segformer import SegFormerTask
    from learnable_fusion_loss.tasks.yolov8 import YOLOv8Task, collate_yolo_targets

    g = torch.Generator().manual_seed(0)
    fused = torch.rand(2, 1, 64, 96, generator=g, requires_grad=True)
    mask = torch.randint(0, 4, (2, 64, 96), generator=g)
    rows = [torch.tensor([[0, 0.5, 0.5, 0.2, 0.3]]), torch.tensor([[2, 0.3, 0.4, 0.2, 0.2]])]

    seg = SegFormerTask(num_classes=4, seed=0)
    seg.loss(fused, mask).backward()
    seg_metrics = seg.evaluate([(fused.detach(), mask)])

    det = YOLOv8Task(num_classes=3, seed=0)
    det.loss(fused, collate_yolo_targets(rows)).backward()
    det.train_step(fused, rows)
    det_metrics = det.evaluate([(fused.detach(), rows)])

    import ultralytics.utils as uutils
    from ultralytics.utils.checks import check_font
    from ultralytics.utils.plotting import Annotator
    font = str(check_font("Arial.ttf"))
    annotator = Annotator(np.zeros((64, 64, 3), np.uint8), pil=True)
    annotator.box_label([4, 4, 40, 40], "person")

    main_attempts = list(attempts)
    from ultralytics.utils.downloads import is_url  # control: the blocker sees downloads
    is_url("https://github.com/ultralytics/assets/releases/download/v0.0.0/Arial.ttf", check=True)
    main_writes = sorted(set(writes))
    _audit("open", ("/nonexistent-lfl-dir/file", "w", 0))  # control: the auditor flags it

    print("RESULT" + json.dumps(dict(
        attempts=main_attempts, control_attempts=len(attempts) - len(main_attempts),
        writes=main_writes, control_write="/nonexistent-lfl-dir/file" in writes,
        arial=arial, font=font,
        config_dir=str(uutils.USER_CONFIG_DIR), online=uutils.ONLINE,
        sync=uutils.SETTINGS["sync"], yolo_offline=os.environ.get("YOLO_OFFLINE"),
        seg_keys=sorted(seg_metrics), det_keys=sorted(det_metrics),
        grad=float(fused.grad.abs().sum()),
    )))
    """
)


def test_no_network_and_no_writes_outside_tmp(tmp_path):
    pytest.importorskip("mmseg", reason="mmsegmentation (extra 'seg') is not installed")
    pytest.importorskip("ultralytics", reason="ultralytics (extra 'det') is not installed")
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("YOLO_", "LFL_", "XDG_", "MPLCONFIGDIR"))}
    env.update(HOME=str(home), PYTHONDONTWRITEBYTECODE="1",
               PYTHONPATH=os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")]))
    script = tmp_path / "child.py"
    script.write_text(_CHILD)
    proc = subprocess.run(
        [sys.executable, str(script), "child", str(tmp_path), tempfile.gettempdir()],
        cwd=work, env=env, capture_output=True, text=True, timeout=800,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT"))
    result = json.loads(line[len("RESULT"):])

    assert result["attempts"] == [], result["attempts"]
    assert result["control_attempts"] > 0  # the blocker does see ultralytics' downloads
    assert result["writes"] == [], result["writes"]
    assert result["control_write"]
    assert result["arial"] == []  # never looked for, never downloaded
    assert result["font"].endswith("DejaVuSans.ttf") and Path(result["font"]).is_file()
    assert Path(result["config_dir"]).is_relative_to(home / ".cache" / "learnable_fusion_loss")
    assert result["online"] is False and result["sync"] is False
    assert result["yolo_offline"] == "true"
    assert {"mIoU", "mAcc", "aAcc"} <= set(result["seg_keys"])
    assert {"mAP50", "mAP75", "mAP50-95"} <= set(result["det_keys"])
    assert result["grad"] > 0
    assert not list(work.iterdir())  # nothing written to the working directory


def test_in_process_font_lookup_never_touches_the_network(monkeypatch):
    pytest.importorskip("ultralytics", reason="ultralytics (extra 'det') is not installed")
    attempts: list[str] = []

    def blocked(*args, **kwargs):
        attempts.append(repr(args[:2]))
        raise OSError("network access blocked by test_offline")

    monkeypatch.setattr(socket.socket, "connect", lambda self, *a: blocked(*a))
    monkeypatch.setattr(socket, "create_connection", blocked)
    monkeypatch.setattr(socket, "getaddrinfo", blocked)
    compat.import_ultralytics()
    from ultralytics.utils import checks, plotting

    assert checks.check_font("Arial.ttf") == compat.local_font_path()
    assert plotting.check_font("Arial.Unicode.ttf") == compat.local_font_path()
    assert attempts == []


def test_offline_environment_defaults(monkeypatch, tmp_path):
    monkeypatch.setenv("LFL_CACHE", str(tmp_path / "cache"))
    for key in ("YOLO_CONFIG_DIR", "YOLO_AUTOINSTALL"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("YOLO_OFFLINE", "1")  # ultralytics only understands "true"
    compat.apply_offline_defaults()
    assert os.environ["YOLO_OFFLINE"] == "true"
    assert os.environ["YOLO_AUTOINSTALL"] == "false"
    assert Path(os.environ["YOLO_CONFIG_DIR"]) == tmp_path / "cache" / "ultralytics"
    assert Path(os.environ["YOLO_CONFIG_DIR"]).is_dir()  # ultralytics needs it to exist
    compat.apply_offline_defaults()  # idempotent
    assert os.environ["YOLO_OFFLINE"] == "true"
    monkeypatch.setenv("YOLO_OFFLINE", "0")  # an explicit opt-out is respected
    compat.apply_offline_defaults()
    assert os.environ["YOLO_OFFLINE"] == "0"


# ----------------------------------------------------------------- mmengine checkpoints
class _RunsCode:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


class _AsksForInit:
    def __reduce__(self):
        from mmengine.logging import HistoryBuffer

        return (getattr, (HistoryBuffer, "__init__"))


def _runner_style_checkpoint(path: Path) -> torch.nn.Module:
    from mmengine.config import ConfigDict
    from mmengine.logging import MessageHub

    hub = MessageHub.get_instance("test_offline_checkpoint")
    for i in range(3):
        hub.update_scalar("train/loss", np.float64(0.5 * i))
    hub.update_info("best_miou", np.float32(41.5), resumed=True)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))
    torch.save({
        "meta": {"epoch": 3, "iter": np.int64(120), "seed": np.int64(7),
                 "cfg": ConfigDict(model=dict(type="X")), "dataset_meta": {"classes": ("a", "b")}},
        "state_dict": net.state_dict(),
        "message_hub": hub.state_dict(),
        "optimizer": torch.optim.Adam(net.parameters()).state_dict(),
    }, path)
    return net


def test_mmengine_runner_checkpoint_loads_under_weights_only(tmp_path):
    from mmengine.runner import load_checkpoint
    from mmengine.runner.checkpoint import _load_checkpoint

    path = tmp_path / "epoch_3.pth"
    net = _runner_style_checkpoint(path)
    compat.patch_mmengine_checkpoint_loading()
    compat.patch_mmengine_checkpoint_loading()  # idempotent
    checkpoint = _load_checkpoint(str(path), map_location="cpu")
    assert checkpoint["meta"]["iter"] == 120 and checkpoint["meta"]["cfg"].model.type == "X"
    history = checkpoint["message_hub"]["log_scalars"]["train/loss"]
    assert history.mean() == pytest.approx(0.5) and history.current() == pytest.approx(1.0)
    assert checkpoint["message_hub"]["runtime_info"]["best_miou"] == pytest.approx(41.5)
    fresh = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))
    load_checkpoint(fresh, str(path), map_location="cpu")
    for key, value in net.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value)


@pytest.mark.parametrize("payload", [_RunsCode, _AsksForInit])
def test_weights_only_still_blocks_untrusted_pickles(tmp_path, payload):
    from mmengine.runner.checkpoint import _load_checkpoint

    compat.patch_mmengine_checkpoint_loading()
    path = tmp_path / "evil.pth"
    torch.save({"meta": {"x": payload()}}, path)
    with pytest.raises(pickle.UnpicklingError):
        _load_checkpoint(str(path), map_location="cpu")


def test_pkg_resources_warning_is_filtered():
    import warnings

    compat.apply_offline_defaults()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        compat._quiet_pkg_resources()
        import importlib

        if importlib.util.find_spec("pkg_resources") is None:
            pytest.skip("setuptools without pkg_resources: mmengine helpers are replaced instead")
        import pkg_resources

        importlib.reload(pkg_resources)
    assert not [w for w in caught if "pkg_resources is deprecated" in str(w.message)]


def test_pkg_resources_free_fallbacks_match_the_installed_packages():
    """The importlib.metadata helpers that replace mmengine's without pkg_resources."""
    import mmengine

    assert Path(compat._installed_path("mmengine")) == Path(mmengine.__file__).parent
    assert compat._is_installed("mmengine")
    assert not compat._is_installed("lfl-surely-not-installed-package")
