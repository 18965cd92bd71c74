"""Hooks for meta-fusion runs: atomic checkpoints, resumable RNG state, weight-map panels.

* :class:`AtomicCheckpointHook` – MMEngine's ``CheckpointHook`` whose files (the
  checkpoint and ``last_checkpoint``) are written to a temporary file in the same
  folder, flushed, fsync'ed and moved into place with ``os.replace``: a run killed
  while saving leaves the previous checkpoint intact, never a truncated one (its
  temporary file is cleared by :func:`remove_partial_writes` when the work dir is
  next used), and a failed write (a full disk) names the file.
* :class:`TrainingStateHook` – stores the Python, NumPy, torch (CPU and CUDA) RNG
  states (:func:`~learnable_fusion_loss._random.capture_rng_state`, re-exported
  here) and the loop position in every checkpoint, restores the RNG states on
  ``--resume`` and refuses to resume inside an epoch whose plan changed.
* :class:`FusionVisualizationHook` – every ``interval`` iterations a panel
  (source a, source b, fused, w_a map, w_b map) saved as PNG under the work dir and
  sent to the visualiser's backends (LocalVisBackend, TensorboardVisBackend …);
  at test time it writes every fused image and both weight maps.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from mmengine.dist import is_main_process
from mmengine.fileio.backends import LocalBackend, register_backend
from mmengine.hooks import CheckpointHook, Hook
from mmengine.model import is_model_wrapper
from torch import Tensor

from .._random import capture_rng_state, restore_rng_state
from ..registry import HOOKS
from .iteration import IterationData

__all__ = [
    "ATOMIC_BACKEND",
    "atomic_write_bytes",
    "remove_partial_writes",
    "AtomicLocalBackend",
    "AtomicCheckpointHook",
    "TrainingStateHook",
    "FusionVisualizationHook",
    "capture_rng_state",
    "restore_rng_state",
    "fusion_panel",
]

#: Name of the atomic local file backend (``backend_args=dict(backend=ATOMIC_BACKEND)``).
ATOMIC_BACKEND = "lfl_atomic_local"


def _file_mode() -> int:
    """The mode ``open()`` would give a new file (mkstemp's is 0600)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _partial_name(target: str) -> str:
    """Prefix of the temporary files :func:`atomic_write_bytes` writes ``target`` through."""
    return f".{target}."


_PARTIAL_SUFFIX = ".tmp"


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: temp file in the same folder, fsync, replace.

    An ``OSError`` (a full disk, a read-only folder ...) is raised again with
    ``path`` in its message, keeping its errno: MMEngine's checkpoint saving would
    otherwise surface ENOSPC without saying which file it was writing. The
    temporary file is removed; only a process killed mid-write leaves one
    (``.<name>.<random>.tmp``), which :func:`remove_partial_writes` clears.
    """
    path = Path(path)
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_partial_name(path.name),
                                   suffix=_PARTIAL_SUFFIX)
        os.fchmod(fd, _file_mode())
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(error, OSError) and error.errno is not None and str(path) not in str(error):
            raise OSError(error.errno, f"cannot write {str(path)!r}: "
                          f"{error.strerror or error}") from error
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def remove_partial_writes(folder: str | Path) -> list[Path]:
    """Delete the temporary checkpoint files a killed write left in ``folder``; return them.

    Only files of :func:`atomic_write_bytes` for checkpoints (``.<x>.pth.<random>.tmp``)
    and the ``last_checkpoint`` pointer are touched, directly in ``folder``. Call it
    only while no other process can be writing there (tools/train.py holds the work
    dir's lock), since a live write's temporary file has the same name pattern.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for entry in sorted(folder.iterdir()):
        name = entry.name
        if not (name.startswith(".") and name.endswith(_PARTIAL_SUFFIX) and entry.is_file()):
            continue
        target = name[1:-len(_PARTIAL_SUFFIX)].rpartition(".")[0]  # strip mkstemp's random part
        if target.endswith(".pth") or target == "last_checkpoint":
            entry.unlink()
            removed.append(entry)
    return removed


@register_backend(ATOMIC_BACKEND, force=True)
class AtomicLocalBackend(LocalBackend):
    """MMEngine's local file backend with atomic ``put`` / ``put_text``."""

    def put(self, obj: bytes, filepath: str | Path) -> None:
        atomic_write_bytes(filepath, obj)

    def put_text(self, obj: str, filepath: str | Path, encoding: str = "utf-8") -> None:
        atomic_write_bytes(filepath, obj.encode(encoding))


@HOOKS.register_module()
class AtomicCheckpointHook(CheckpointHook):
    """``CheckpointHook`` with atomic files (same arguments).

    The default ``backend_args`` select :class:`AtomicLocalBackend`; the
    ``last_checkpoint`` pointer is replaced atomically after the checkpoint is
    complete, and outdated checkpoints are removed only after the new one exists.
    """

    def __init__(self, *args: Any, backend_args: dict | None = None, **kwargs: Any) -> None:
        if kwargs.get("file_client_args") is not None:
            raise ValueError("AtomicCheckpointHook does not take file_client_args; use backend_args")
        super().__init__(*args, backend_args=backend_args or {"backend": ATOMIC_BACKEND}, **kwargs)

    def _save_checkpoint_with_step(self, runner: Any, step: int, meta: dict) -> None:
        outdated = None
        if self.max_keep_ckpts > 0 and (not self.keep_ckpt_ids or self.keep_ckpt_ids[-1] != step):
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                outdated = self.keep_ckpt_ids.popleft()
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info("keep_ckpt_ids", list(self.keep_ckpt_ids))
        filename = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir, filename)
        runner.message_hub.update_info("last_ckpt", self.last_ckpt)
        runner.save_checkpoint(
            self.out_dir,
            filename,
            self.file_client_args,
            save_optimizer=self.save_optimizer,
            save_param_scheduler=self.save_param_scheduler,
            meta=meta,
            by_epoch=self.by_epoch,
            backend_args=self.backend_args,
            **self.args,
        )
        if not is_main_process():
            return
        atomic_write_bytes(Path(runner.work_dir) / "last_checkpoint", str(self.last_ckpt).encode())
        if outdated is not None:
            old = self.file_backend.join_path(self.out_dir, self.filename_tmpl.format(outdated))
            if self.file_backend.isfile(old):
                self.file_backend.remove(old)


@HOOKS.register_module()
class TrainingStateHook(Hook):
    """Checkpoints the RNG states and the loop position; restores them on resume.

    ``checkpoint['meta']['rng_state']`` and ``checkpoint['meta']['loop_state']`` are
    added on save. On ``runner.resume`` the RNG states are restored and, for a
    :class:`~learnable_fusion_loss.engine.loops.MetaFusionTrainLoop`, the saved
    epoch plan is compared with the configured one.
    """

    priority = "VERY_HIGH"

    def before_save_checkpoint(self, runner: Any, checkpoint: dict) -> None:
        meta = checkpoint.setdefault("meta", {})
        meta["rng_state"] = capture_rng_state()
        loop = getattr(runner, "_train_loop", None)
        if hasattr(loop, "state") and callable(loop.state):
            meta["loop_state"] = loop.state()

    def after_load_checkpoint(self, runner: Any, checkpoint: dict) -> None:
        if not getattr(runner, "_resume", False):
            return  # a plain load (testing, fine-tuning) keeps the current RNG
        meta = checkpoint.get("meta", {})
        if "rng_state" in meta:
            restore_rng_state(meta["rng_state"])
        loop = getattr(runner, "_train_loop", None)
        if "loop_state" in meta and hasattr(loop, "check_resumable"):
            loop.check_resumable(meta["loop_state"])


# ------------------------------------------------------------- visualisation
def _to_uint8(image: Tensor) -> np.ndarray:
    """``[1, H, W]`` or ``[H, W]`` in [0, 1] → ``uint8 [H, W]``."""
    array = image.detach().float().cpu().squeeze(0).clamp(0, 1).numpy()
    return np.round(array * 255).astype(np.uint8)


def _grey_rgb(image: Tensor) -> np.ndarray:
    return np.repeat(_to_uint8(image)[..., None], 3, axis=2)


def _weight_rgb(weight: Tensor) -> np.ndarray:
    bgr = cv2.applyColorMap(_to_uint8(weight), cv2.COLORMAP_VIRIDIS)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def fusion_panel(
    a: Tensor,
    b: Tensor,
    fused: Tensor,
    weight_maps: Tensor,
    names: Sequence[str] = ("a", "b"),
    gap: int = 4,
    min_tile_width: int = 128,
) -> np.ndarray:
    """An RGB ``uint8`` panel, one row per sample: a | b | fused | w_a | w_b.

    Args:
        a, b, fused: ``[B, 1, H, W]`` in [0, 1].
        weight_maps: ``[B, 2, H, W]`` weight maps (shown with the viridis colour map,
            0 → dark blue, 1 → yellow).
        names: source names for the header.
        gap: white pixels between tiles.
        min_tile_width: tiles narrower than this are enlarged by an integer factor
            (nearest neighbour), so tiny training crops stay readable.
    """
    if a.ndim != 4 or weight_maps.ndim != 4 or weight_maps.shape[1] != 2:
        raise ValueError(f"need [B,1,H,W] images and [B,2,H,W] weight_maps, got {tuple(a.shape)}, {tuple(weight_maps.shape)}")
    titles = [names[0], names[1], "fused", f"w_{names[0]}", f"w_{names[1]}"]
    scale = max(1, -(-min_tile_width // a.shape[-1]))
    rows = []
    for i in range(a.shape[0]):
        tiles = [_grey_rgb(a[i]), _grey_rgb(b[i]), _grey_rgb(fused[i]),
                 _weight_rgb(weight_maps[i, 0]), _weight_rgb(weight_maps[i, 1])]
        if scale > 1:
            tiles = [np.repeat(np.repeat(t, scale, axis=0), scale, axis=1) for t in tiles]
        height = tiles[0].shape[0]
        spacer = np.full((height, gap, 3), 255, np.uint8)
        row = [tiles[0]]
        for tile in tiles[1:]:
            row += [spacer, tile]
        rows.append(np.concatenate(row, axis=1))
    width = rows[0].shape[1]
    tile_width = a.shape[-1] * scale
    header = np.full((18, width, 3), 255, np.uint8)
    for k, title in enumerate(titles):
        cv2.putText(header, title, (k * (tile_width + gap) + 2, 13), cv2.FONT_HERSHEY_SIMPLEX,
                    0.4, (0, 0, 0), 1, cv2.LINE_AA)
    spacer_row = np.full((gap, width, 3), 255, np.uint8)
    stacked = [header]
    for row in rows:
        stacked += [row, spacer_row]
    return np.concatenate(stacked[:-1], axis=0)


def _write_png(path: Path, image: np.ndarray) -> None:
    """Write a grey or RGB ``uint8`` image as PNG (atomically)."""
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, encoded = cv2.imencode(".png", image)
    if not ok:
        raise OSError(f"could not encode {path} as PNG")
    atomic_write_bytes(path, encoded.tobytes())


def _sample_name(output: Mapping[str, Any], fallback: str) -> str:
    for key in ("id", "name", "img_id", "sample_id", "img_path", "ir_path", "path"):
        value = output.get(key)
        if isinstance(value, (str, int)) and str(value):
            return Path(str(value)).stem
    return fallback


@HOOKS.register_module()
class FusionVisualizationHook(Hook):
    """Weight-map panels during training; fused images and weight maps at test time.

    Args:
        interval: draw a panel every this many training iterations (0: never).
        max_samples: rows per panel.
        out_dir: panels go to ``<work_dir>/<out_dir>/iter_XXXXXX.png``.
        draw_first: also draw after the first iteration.
        save_test_outputs: at test time write ``fused/<name>.png`` and
            ``weights/<name>_w_<source>.png`` under ``<work_dir>/<test_out_dir>``.
        test_out_dir: folder for the test outputs, relative to the work dir.
    """

    priority = "NORMAL"

    def __init__(
        self,
        interval: int = 50,
        max_samples: int = 2,
        out_dir: str = "vis",
        draw_first: bool = True,
        save_test_outputs: bool = True,
        test_out_dir: str = "test_outputs",
    ) -> None:
        if interval < 0 or max_samples < 1:
            raise ValueError(f"need interval >= 0 and max_samples >= 1, got {interval}, {max_samples}")
        self.interval = interval
        self.max_samples = max_samples
        self.out_dir = out_dir
        self.draw_first = draw_first
        self.save_test_outputs = save_test_outputs
        self.test_out_dir = test_out_dir
        self.saved_panels: list[Path] = []

    @staticmethod
    def _model(runner: Any) -> Any:
        return runner.model.module if is_model_wrapper(runner.model) else runner.model

    def after_train_iter(
        self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: Any = None
    ) -> None:
        if not self.interval or data_batch is None:
            return
        due = self.every_n_train_iters(runner, self.interval) or (self.draw_first and runner.iter == 0)
        if not due or not is_main_process():
            return
        batch = IterationData.of(data_batch).batch
        model = self._model(runner)
        fused_batch = model.preprocess(batch, False)
        a, b = fused_batch.a[: self.max_samples], fused_batch.b[: self.max_samples]
        was_training = model.training
        model.eval()  # no BatchNorm statistics may change because of a picture
        try:
            fused, weight_maps = model.fuse(a, b)
        finally:
            model.train(was_training)
        panel = fusion_panel(a, b, fused, weight_maps, names=model.source_names)
        step = runner.iter + 1
        path = Path(runner.work_dir) / self.out_dir / f"iter_{step:06d}.png"
        _write_png(path, panel)
        self.saved_panels.append(path)
        runner.visualizer.add_image("fusion_panel", panel, step=step)

    def after_test_iter(
        self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: Any = None
    ) -> None:
        if not self.save_test_outputs or not outputs or not is_main_process():
            return
        root = Path(runner.work_dir) / self.test_out_dir
        for i, output in enumerate(outputs):
            if not isinstance(output, Mapping) or "fused" not in output:
                continue
            name = _sample_name(output, f"{batch_idx:05d}_{i}")
            _write_png(root / "fused" / f"{name}.png", _to_uint8(output["fused"]))
            names = output.get("source_names", ("a", "b"))
            for k, source in enumerate(names):
                _write_png(root / "weights" / f"{name}_w_{source}.png", _to_uint8(output["weight_maps"][k]))
