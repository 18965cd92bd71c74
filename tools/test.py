#!/usr/bin/env python
"""Evaluate a trained meta-fusion checkpoint on the config's test split.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out FILE.json]
                         [--cfg-options KEY=VALUE ...] [--launcher none|pytorch]

Reports the fusion metrics (``fusion/...``: EN, SD, SF, AG, MI, SCD, VIF, Qabf,
SSIM, ...) and the task metrics (``task/mIoU``, ``task/mAcc`` or ``task/mAP50``,
``task/mAP75`` ...) as JSON (``--out``, default ``<work-dir>/test_results.json``)
and as a Markdown table (same name, ``.md``), and writes every fused test image
and both weight maps under ``<work-dir>/test_outputs/{fused,weights}/``.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from learnable_fusion_loss import compat  # noqa: E402

compat.apply_offline_defaults()
compat.patch_mmengine_checkpoint_loading()

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.dist import is_main_process  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

from learnable_fusion_loss.engine.config import resolve_data_root  # noqa: E402
from learnable_fusion_loss.engine.hooks import atomic_write_bytes  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Test a TDFusion-style meta-fusion checkpoint")
    parser.add_argument("config", help="config file")
    parser.add_argument("checkpoint", help="checkpoint file (from tools/train.py)")
    parser.add_argument("--work-dir", help="folder for logs, results and test outputs")
    parser.add_argument("--out", help="JSON results file (the Markdown table goes next to it)")
    parser.add_argument("--no-images", action="store_true", help="do not write fused images")
    parser.add_argument(
        "--cfg-options", nargs="+", action=DictAction, default={},
        help="override config entries, e.g. test_dataloader.num_batch_per_epoch=2",
    )
    parser.add_argument("--launcher", choices=["none", "pytorch"], default="none")
    parser.add_argument("--local_rank", "--local-rank", type=int, default=0)
    args = parser.parse_args(argv)
    if "LOCAL_RANK" not in os.environ:
        os.environ["LOCAL_RANK"] = str(args.local_rank)
    return args


def _ensure_hook(hooks: list, hook_type: str, **kwargs: Any) -> None:
    for hook in hooks:
        if hook.get("type") == hook_type:
            hook.update(kwargs)
            return
    hooks.append(dict(type=hook_type, **kwargs))


def build_config(args: argparse.Namespace) -> Config:
    config_path = Path(args.config)
    if not config_path.is_file():
        raise SystemExit(f"config file not found: {config_path}")
    if not Path(args.checkpoint).is_file():
        raise SystemExit(f"checkpoint not found: {args.checkpoint}")
    cfg = Config.fromfile(str(config_path))
    explicit_root = args.cfg_options.get("data_root")
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    resolve_data_root(cfg, REPO_ROOT, explicit=explicit_root)
    if cfg.get("test_dataloader") is None or cfg.get("test_evaluator") is None:
        raise SystemExit(f"{config_path} defines no test_dataloader / test_evaluator")
    cfg.launcher = args.launcher
    if args.work_dir:
        cfg.work_dir = args.work_dir
    elif cfg.get("work_dir") is None:
        cfg.work_dir = str(Path("work_dirs") / config_path.stem)
    cfg.load_from = args.checkpoint
    cfg.resume = False
    hooks = list(cfg.get("custom_hooks", []))
    _ensure_hook(hooks, "FusionVisualizationHook", save_test_outputs=not args.no_images)
    _ensure_hook(hooks, "TaskMetricHook")
    cfg.custom_hooks = hooks
    return cfg


def _format(value: float) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, (int, float)):
        return f"{value:.4f}" if abs(value) < 1000 else f"{value:.1f}"
    return str(value)


def markdown_table(metrics: dict[str, float], title: str) -> str:
    """``| group | metric | value |`` with fusion metrics first, then task metrics."""
    lines = [f"### {title}", "", "| group | metric | value |", "|---|---|---:|"]
    for key, value in metrics.items():
        group, _, name = key.partition("/") if "/" in key else ("", "", key)
        lines.append(f"| {group} | {name} | {_format(value)} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, float]:
    args = parse_args(argv)
    cfg = build_config(args)
    runner = Runner.from_cfg(cfg)
    start = time.time()
    metrics = {k: float(v) for k, v in runner.test().items()}
    if not is_main_process():
        return metrics
    out = Path(args.out) if args.out else Path(cfg.work_dir) / "test_results.json"
    record = {
        "config": str(Path(args.config)),
        "checkpoint": str(Path(args.checkpoint)),
        "data_root": cfg.data_root,
        "test_seconds": round(time.time() - start, 2),
        "metrics": metrics,
        "outputs": None if args.no_images else str(Path(cfg.work_dir) / "test_outputs"),
    }
    atomic_write_bytes(out, (json.dumps(record, indent=2, allow_nan=True) + "\n").encode())
    table = markdown_table(metrics, f"{Path(args.config).stem} ({Path(args.checkpoint).name})")
    atomic_write_bytes(out.with_suffix(".md"), table.encode())
    print(table)
    print(f"results: {out} and {out.with_suffix('.md')}")
    return metrics


if __name__ == "__main__":
    compat.keep_freed_memory()  # a training process: reuse freed activations (see compat)
    main()
