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
import importlib.util  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402

import torch  # noqa: E402

from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

from learnable_fusion_loss.engine.config import resolve_data_root  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Train a TDFusion-style meta-fusion model")
    parser.add_argument("config", help="config file")
    parser.add_argument("--work-dir", help="folder for logs, checkpoints and panels")
    parser.add_argument(
        "--resume", nargs="?", const="auto", default=None, metavar="CKPT",
        help="resume from CKPT, or without a value from the work dir's latest checkpoint",
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


def build_config(args: argparse.Namespace) -> Config:
    config_path = Path(args.config)
    if not config_path.is_file():
        raise SystemExit(f"config file not found: {config_path}")
    cfg = Config.fromfile(str(config_path))
    explicit_root = args.cfg_options.get("data_root")
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    resolve_data_root(cfg, REPO_ROOT, explicit=explicit_root)
    cfg.launcher = args.launcher
    if args.launcher != "none" and not torch.cuda.is_available():
        cfg.setdefault("env_cfg", {}).setdefault("dist_cfg", {})["backend"] = "gloo"  # CPU
    if args.work_dir:
        cfg.work_dir = args.work_dir
    elif cfg.get("work_dir") is None:
        cfg.work_dir = str(Path("work_dirs") / config_path.stem)
    if args.deterministic:
        cfg.setdefault("randomness", {})
        cfg.randomness["deterministic"] = True
    if args.resume is not None:
        cfg.resume = True
        if args.resume == "auto":
            found = find_resume_checkpoint(Path(cfg.work_dir))
            cfg.load_from = str(found) if found is not None else None
            if found is None:
                print(f"no checkpoint in {cfg.work_dir}: starting from scratch", file=sys.stderr)
                cfg.resume = False
        else:
            if not Path(args.resume).is_file():
                raise SystemExit(f"--resume: checkpoint not found: {args.resume}")
            cfg.load_from = args.resume
    if importlib.util.find_spec("tensorboard") is not None:
        backends = cfg.visualizer.setdefault("vis_backends", [])
        if not any(b.get("type") == "TensorboardVisBackend" for b in backends):
            backends.append(dict(type="TensorboardVisBackend"))
    return cfg


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    cfg = build_config(args)
    if args.launcher == "pytorch" and not torch.cuda.is_available():
        # MMEngine's pytorch launcher pins a CUDA device per rank; on a CPU-only
        # machine start the (gloo) process group here, which the runner then reuses.
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group(backend="gloo")
    runner = Runner.from_cfg(cfg)
    runner.train()


if __name__ == "__main__":
    compat.keep_freed_memory()  # a training process: reuse freed activations (see compat)
    main()
