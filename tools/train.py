#!/usr/bin/env python
"""Train a task-driven fusion model (TDFusion's Algorithm 1) from an MMEngine config.

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]]
                          [--cfg-options KEY=VALUE ...] [--launcher none|pytorch]

``--resume`` without a file continues from ``<work-dir>/last_checkpoint`` (or the
newest ``iter_*.pth`` / ``epoch_*.pth`` there); with a file, from that checkpoint.
Checkpoints hold F, G, T, every optimiser and scheduler, the loop position and the
RNG states, so a run killed mid-epoch resumes at the iteration it was saved at.

The data root is ``data_root`` of the config (default ``../shared/data`` relative to
the repository root), overridden by ``LFL_DATA_ROOT`` and by ``--cfg-options data_root=...``.

The work dir is guarded:

* a run holds ``<work-dir>/train.lock`` (an exclusive ``flock`` with its PID in the
  file) until it ends; a second run on the same dir stops at once, naming the lock
  and the PID holding it. A lock left by a killed run is not held by anyone and is
  taken over, with a note;
* a work dir that already holds checkpoints (``iter_*.pth``, ``epoch_*.pth``,
  ``last_checkpoint``) is only trained in with ``--resume`` (continue) or
  ``--overwrite`` (start again; its checkpoints are replaced as the new run
  reaches them, and ``last_checkpoint`` is dropped at once so that ``--resume``
  never continues the old run);
* the temporary files of a checkpoint write that was killed are removed;
* a ``--resume`` checkpoint is read (weights-only) and must be a runner checkpoint
  of this tool (``meta`` with epoch and iteration, ``state_dict``, ``message_hub``).

Usage errors (these, a missing config, a work dir that is a file) exit 2 with one
``error:`` line; a checkpoint that cannot be written (a full disk) stops the run
with exit 1 and an ``error:`` line naming the file, the previous checkpoint intact.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # projects.* (custom_imports) and an uninstalled checkout
    sys.path.insert(0, str(REPO_ROOT))

from learnable_fusion_loss import compat  # noqa: E402

# Before mmengine, mmseg or ultralytics are imported: offline settings and the
# torch>=2.6 weights_only compatibility of MMEngine's checkpoint loading.
compat.apply_offline_defaults()
compat.patch_mmengine_checkpoint_loading()

import argparse  # noqa: E402
import errno  # noqa: E402
import fcntl  # noqa: E402
import importlib.util  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
from collections.abc import Mapping  # noqa: E402

import torch  # noqa: E402

from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

from learnable_fusion_loss.engine.config import load_config  # noqa: E402
from learnable_fusion_loss.engine.hooks import remove_partial_writes  # noqa: E402
from learnable_fusion_loss.meta import NonFiniteError  # noqa: E402

#: The work dir's lock file (see the module docstring).
LOCK_NAME = "train.lock"


class BadInput(Exception):
    """A usage or input error: reported as one ``error:`` line, exit status 2."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Train a TDFusion-style meta-fusion model")
    parser.add_argument("config", help="config file")
    parser.add_argument("--work-dir", help="folder for logs, checkpoints and panels")
    parser.add_argument(
        "--resume", nargs="?", const="auto", default=None, metavar="CKPT",
        help="resume from CKPT, or without a value from the work dir's latest checkpoint",
    )
    parser.add_argument(
        "--overwrite", action="store_true",
        help="start from scratch in a work dir that already holds checkpoints (they are replaced)",
    )
    parser.add_argument(
        "--cfg-options", nargs="+", action=DictAction, default={},
        help="override config entries, e.g. train_cfg.meta_steps=10 data_root=/data",
    )
    parser.add_argument("--launcher", choices=["none", "pytorch"], default="none")
    parser.add_argument(
        "--deterministic", action="store_true",
        help="deterministic algorithms (randomness.deterministic=True)",
    )
    parser.add_argument("--local_rank", "--local-rank", type=int, default=0)
    args = parser.parse_args(argv)
    if args.resume is not None and args.overwrite:
        parser.error("--resume and --overwrite exclude each other: continue the run, or replace it")
    if "LOCAL_RANK" not in os.environ:
        os.environ["LOCAL_RANK"] = str(args.local_rank)
    return args


def _checkpoint_step(path: Path) -> tuple[int, int]:
    """Sort key of MMEngine checkpoint names: (kind, number); iter after epoch."""
    match = re.fullmatch(r"(epoch|iter)_(\d+)\.pth", path.name)
    if not match:
        return (-1, -1)
    return (1 if match.group(1) == "iter" else 0, int(match.group(2)))


def find_resume_checkpoint(work_dir: Path) -> Path | None:
    """The checkpoint ``last_checkpoint`` names, else the newest iter_/epoch_ file; None if none."""
    pointer = work_dir / "last_checkpoint"
    if pointer.is_file():
        named = Path(pointer.read_text().strip())
        if named.is_file():
            return named
        print(f"warning: {pointer} names {named}, which does not exist; looking for others",
              file=sys.stderr)
    candidates = sorted(
        (p for p in work_dir.glob("*.pth") if _checkpoint_step(p)[0] >= 0),
        key=lambda p: (p.stat().st_mtime, _checkpoint_step(p)),
    )
    return candidates[-1] if candidates else None


def existing_checkpoints(work_dir: Path) -> list[Path]:
    """The checkpoints of an earlier run in ``work_dir`` (oldest step first), pointer last."""
    if not work_dir.is_dir():
        return []
    found = sorted((p for p in work_dir.glob("*.pth") if _checkpoint_step(p)[0] >= 0),
                   key=_checkpoint_step)
    pointer = work_dir / "last_checkpoint"
    return found + ([pointer] if pointer.is_file() else [])


def _lock_holder(fd: int) -> str:
    """The PID written in an open lock file, or a word saying there is none."""
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 64).decode(errors="replace").strip()
    return text if text.isdigit() else "unknown (the lock is being taken right now)"


def lock_work_dir(work_dir: Path) -> tuple[int, str | None]:
    """Take ``work_dir``'s exclusive lock for this process: ``(fd, note)``.

    ``flock`` rather than "does the file exist": the kernel drops the lock when its
    holder dies, however it dies, so a lock file left by ``kill -9`` is simply not
    held, and is taken over (``note`` says so). Raises :class:`BadInput` naming the
    lock file and the holder's PID when another live process holds it.
    """
    path = work_dir / LOCK_NAME
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                os.close(fd)
                raise BadInput(f"cannot lock the work dir: {str(path)!r}: {error.strerror}") from None
            holder = _lock_holder(fd)
            os.close(fd)
            raise BadInput(
                f"work dir {str(work_dir)!r} is in use by another tools/train.py run: its lock "
                f"{str(path)!r} is held by PID {holder}; wait for that run to end or use "
                "another --work-dir") from None
        # The holder removes the file when it ends; if that happened between our open
        # and flock, we locked a deleted file: try again on the new one.
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    previous = _lock_holder(fd)
    note = None
    if previous.isdigit() and int(previous) != os.getpid():
        note = (f"note: took over the stale lock {str(path)!r} of PID {previous}, which no "
                "longer holds it (a run that was killed)")
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd, note


def release_work_dir(work_dir: Path, fd: int) -> None:
    """Remove the lock file, then drop the lock (in that order, see :func:`lock_work_dir`)."""
    try:
        (work_dir / LOCK_NAME).unlink()
    except FileNotFoundError:
        pass
    os.close(fd)


def check_resume_checkpoint(path: Path) -> None:
    """:class:`BadInput` unless ``path`` is a runner checkpoint this tool can resume.

    MMEngine's resume reads ``meta['epoch']``, ``meta['iter']``, ``message_hub`` and
    ``state_dict`` without checking them, so any other file ended in a bare
    ``KeyError: 'meta'``, an ``AttributeError`` or an ``EOFError``.
    """
    try:
        checkpoint = compat.load_weights_only(path, map_location="cpu")
    except (OSError, ValueError) as error:
        raise BadInput(f"--resume: {error}") from None
    what = f"--resume: {str(path)!r} is not a checkpoint of tools/train.py"
    if not isinstance(checkpoint, Mapping):
        raise BadInput(f"{what}: it holds a {type(checkpoint).__name__}, not a dict")
    meta = checkpoint.get("meta")
    missing = [key for key in ("meta", "state_dict", "message_hub") if key not in checkpoint]
    if not missing and not (isinstance(meta, Mapping) and "epoch" in meta and "iter" in meta):
        missing = ["meta['epoch'] / meta['iter']"]
    if missing:
        keys = [str(k) for k in list(checkpoint)[:8]]
        raise BadInput(f"{what}: it has no {', '.join(map(repr, missing))} (its keys: {keys}); "
                       "only a runner checkpoint (iter_*.pth / epoch_*.pth) can be resumed")


def _is_main_rank() -> bool:
    """Rank 0 of a distributed launch (or a plain run): the one that owns the work dir."""
    return os.environ.get("RANK", "0") == "0"


def prepare_work_dir(args: argparse.Namespace, cfg: Config) -> tuple[int | None, list[str]]:
    """Lock the work dir and check it against ``--resume`` / ``--overwrite``.

    Returns the lock's fd (None on ranks other than 0) and notes to print. Only
    once the lock is held is it safe to look at the checkpoints and to clear the
    temporary files of a killed write: no other run can be writing them.
    """
    work_dir = Path(cfg.work_dir)
    if work_dir.exists() and not work_dir.is_dir():
        raise BadInput(f"--work-dir {str(work_dir)!r} exists and is not a folder")
    try:
        work_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise BadInput(f"cannot create the work dir {str(work_dir)!r}: {error.strerror}") from None
    notes: list[str] = []
    fd = None
    if _is_main_rank():
        fd, note = lock_work_dir(work_dir)
        notes += [note] if note else []
    try:
        earlier = existing_checkpoints(work_dir)
        if earlier and args.resume is None:
            names = ", ".join(p.name for p in earlier[:6]) + (" ..." if len(earlier) > 6 else "")
            if not args.overwrite:
                raise BadInput(
                    f"work dir {str(work_dir)!r} already holds checkpoints ({names}); a new run "
                    "would replace them: pass --resume to continue from the newest, or "
                    "--overwrite to start from scratch there")
            pointer = work_dir / "last_checkpoint"
            if _is_main_rank() and pointer.is_file():
                pointer.unlink()  # --resume must not continue the run being replaced
            notes.append(f"note: --overwrite: starting from scratch in {str(work_dir)!r}; its "
                         f"checkpoints ({names}) are replaced as this run reaches them")
        if _is_main_rank():
            removed = remove_partial_writes(work_dir)
            if removed:
                notes.append(f"note: removed {len(removed)} partial checkpoint file(s) of an "
                             f"interrupted write: {', '.join(p.name for p in removed)}")
        resolve_resume(args, cfg, notes)
    except BaseException:
        if fd is not None:
            release_work_dir(work_dir, fd)
        raise
    return fd, notes


def resolve_resume(args: argparse.Namespace, cfg: Config, notes: list[str]) -> None:
    """Set ``cfg.resume`` / ``cfg.load_from`` from ``--resume``, the file checked."""
    if args.resume is None:
        return
    cfg.resume = True
    if args.resume == "auto":
        found = find_resume_checkpoint(Path(cfg.work_dir))
        cfg.load_from = str(found) if found is not None else None
        if found is None:
            notes.append(f"no checkpoint in {cfg.work_dir}: starting from scratch")
            cfg.resume = False
            return
    else:
        if not Path(args.resume).is_file():
            raise BadInput(f"--resume: checkpoint not found: {args.resume}")
        cfg.load_from = args.resume
    check_resume_checkpoint(Path(cfg.load_from))


def build_config(args: argparse.Namespace) -> Config:
    config_path = Path(args.config)
    if not config_path.is_file():
        raise BadInput(f"config file not found: {config_path}")
    cfg = load_config(config_path, REPO_ROOT, args.cfg_options, args.launcher, args.work_dir)
    if args.launcher != "none" and not torch.cuda.is_available():
        cfg.setdefault("env_cfg", {}).setdefault("dist_cfg", {})["backend"] = "gloo"  # CPU
    if args.deterministic:
        cfg.setdefault("randomness", {})
        cfg.randomness["deterministic"] = True
    # --resume is resolved in prepare_work_dir, once the work dir's lock is held.
    if importlib.util.find_spec("tensorboard") is not None and cfg.get("visualizer") is not None:
        backends = cfg.visualizer.setdefault("vis_backends", [])
        if not any(b.get("type") == "TensorboardVisBackend" for b in backends):
            backends.append(dict(type="TensorboardVisBackend"))
    return cfg


class OutputNotWritten(Exception):
    """Training stopped because a checkpoint (or panel) could not be written: exit status 1."""


def main(argv: list[str] | None = None) -> None:
    """Train; :class:`BadInput` (exit 2) before the run starts, :class:`OutputNotWritten` or
    :class:`NonFiniteError` (a diverged run, 1)."""
    args = parse_args(argv)
    cfg = build_config(args)
    lock, notes = prepare_work_dir(args, cfg)
    for note in notes:
        print(note, file=sys.stderr)
    try:
        if args.launcher == "pytorch" and not torch.cuda.is_available():
            # MMEngine's pytorch launcher pins a CUDA device per rank; on a CPU-only
            # machine start the (gloo) process group here, which the runner then reuses.
            import torch.distributed as dist

            if not dist.is_initialized():
                dist.init_process_group(backend="gloo")
        runner = Runner.from_cfg(cfg)
        try:
            runner.train()
        except OSError as error:
            # atomic_write_bytes names the file it could not write (ENOSPC, EROFS, ...).
            if "cannot write" not in str(error):
                raise
            raise OutputNotWritten(
                # runner.iter counts finished iterations; the logs count from 1.
                f"training stopped in iteration {runner.iter + 1}: {error.strerror or error}; "
                "the checkpoints written before are intact (free space, then rerun with --resume)"
            ) from error
    finally:
        if lock is not None:
            release_work_dir(Path(cfg.work_dir), lock)


if __name__ == "__main__":
    compat.keep_freed_memory()  # a training process: reuse freed activations (see compat)
    try:
        main()
    except BadInput as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except (OutputNotWritten, NonFiniteError) as error:  # diverged: the log has every skip
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
