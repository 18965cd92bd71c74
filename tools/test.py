#!/usr/bin/env python
"""Evaluate a trained meta-fusion checkpoint on the config's test split.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out FILE.json]
                         [--cfg-options KEY=VALUE ...] [--launcher none|pytorch]

Reports the fusion metrics (``fusion/...``: EN, SD, SF, AG, MI, SCD, VIF, Qabf,
SSIM, ...) and the task metrics (``task/mIoU``, ``task/mAcc`` or ``task/mAP50``,
``task/mAP75`` ...) as JSON (``--out``, default ``<work-dir>/test_results.json``)
and as a Markdown table (same name, ``.md``), and writes every fused test image
and both weight maps under ``<work-dir>/test_outputs/{fused,weights}/``.

The checkpoint is loaded strictly (weights-only, with the allow-list of MMEngine
runner checkpoints): every key of the model built from the config must be in it
with its shape, and nothing else. MMEngine's own ``load_from`` only warns about
missing or mismatched keys, so a wrong file would be tested as a randomly
initialised model and reported with exit 0. A file that does not match (or a
missing config / checkpoint) exits 2 with one ``error:`` line naming the file and
the first missing, unexpected or wrong-shape key; nothing is written. So does an
``--out`` (or ``--work-dir``) that could not take the results, checked before the
test runs.
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

from collections.abc import Mapping  # noqa: E402

from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.dist import is_main_process  # noqa: E402
from mmengine.model import is_model_wrapper  # noqa: E402
from mmengine.runner import Runner  # noqa: E402
from torch import Tensor, nn  # noqa: E402

from learnable_fusion_loss.datasets.io import prepare_output_folder  # noqa: E402
from learnable_fusion_loss.engine.config import load_config  # noqa: E402
from learnable_fusion_loss.engine.hooks import atomic_write_bytes  # noqa: E402


class BadInput(Exception):
    """A usage or input error: reported as one ``error:`` line, exit status 2."""


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
        raise BadInput(f"config file not found: {config_path}")
    if not Path(args.checkpoint).is_file():
        raise BadInput(f"checkpoint not found: {args.checkpoint}")
    cfg = load_config(config_path, REPO_ROOT, args.cfg_options, args.launcher, args.work_dir)
    if cfg.get("test_dataloader") is None or cfg.get("test_evaluator") is None:
        raise BadInput(f"{config_path} defines no test_dataloader / test_evaluator")
    check_outputs(Path(cfg.work_dir), Path(args.out) if args.out else None)
    # Loaded strictly by load_checkpoint_strictly, not by the runner's lenient load_from.
    cfg.load_from = None
    cfg.resume = False
    hooks = list(cfg.get("custom_hooks", []))
    _ensure_hook(hooks, "FusionVisualizationHook", save_test_outputs=not args.no_images)
    _ensure_hook(hooks, "TaskMetricHook")
    cfg.custom_hooks = hooks
    return cfg


def check_outputs(work_dir: Path, out: Path | None) -> None:
    """:class:`BadInput` now if the results could not be written after the test.

    The work dir must be a folder (or creatable), and ``--out`` a file whose folder
    can be written: otherwise the whole test would run and end in a traceback.
    """
    if work_dir.exists() and not work_dir.is_dir():
        raise BadInput(f"--work-dir {str(work_dir)!r} exists and is not a folder")
    if out is None:
        return
    if out.is_dir():
        raise BadInput(f"--out {str(out)!r} is a folder; give a file name such as results.json")
    for target in (out, out.with_suffix(".md")):
        if target.exists() and not target.is_file():
            raise BadInput(f"--out: {str(target)!r} exists and is not a file")
    problem = prepare_output_folder(out.parent, flag="--out's")
    if problem:
        raise BadInput(problem)


_FUSION_ANCHOR = "project_in_1.weight"  # ReFusionNet's stem (projects.tdfusion.tdfusion.convert)


def _first(keys: list[str], kind: str, detail: str = "") -> str:
    """``"3 missing keys (first: 'a.b')"``, singular for one; ``detail`` follows the key."""
    noun = "key" if len(keys) == 1 else "keys"
    return f"{len(keys)} {kind} {noun} (first: {keys[0]!r}{detail})"


def state_dict_mismatch(expected: Mapping[str, Tensor], given: Mapping[str, object]) -> str | None:
    """What keeps ``given`` from loading strictly into a model with state ``expected``.

    One line listing, per kind (missing, unexpected, wrong shape, not a tensor),
    the count and the first key in the model's order; None when it loads.
    """
    missing = [k for k in expected if k not in given]
    unexpected = [str(k) for k in given if k not in expected]
    non_tensor = [k for k in expected if k in given and not isinstance(given[k], Tensor)]
    wrong = [
        (k, tuple(value.shape), tuple(expected[k].shape))
        for k, value in ((k, given.get(k)) for k in expected)
        if isinstance(value, Tensor) and value.shape != expected[k].shape
    ]
    problems = []
    if missing:
        problems.append(_first(missing, "missing"))
    if unexpected:
        problems.append(_first(unexpected, "unexpected"))
    if wrong:
        _, found, wanted = wrong[0]
        problems.append(_first([w[0] for w in wrong], "wrong-shape",
                               f", checkpoint {found} vs model {wanted}"))
    if non_tensor:
        problems.append(_first(non_tensor, "non-tensor"))
    return "; ".join(problems) or None


def load_checkpoint_strictly(runner: Runner, path: str) -> dict:
    """Load ``path`` into ``runner.model`` strictly; :class:`BadInput` if it does not match.

    The file is read weights-only with the allow-list (``compat.load_weights_only``);
    its ``'state_dict'`` (or the file itself, if it is a plain state dict) with
    MMEngine's ``module.`` prefix stripped must hold exactly the model's keys and
    shapes. A bare fusion-network state dict (``project_in_1.weight`` without the
    ``fusion_net.`` prefix) is refused too, with a pointer to ``tools/fuse.py``:
    testing it here would report G's weight maps and T's task metrics of random
    networks. Returns the checkpoint; calls the ``after_load_checkpoint`` hooks, as
    ``Runner.load_checkpoint`` does.
    """
    try:
        checkpoint = compat.load_weights_only(path, map_location="cpu")
    except (OSError, ValueError) as error:
        raise BadInput(str(error)) from None
    if not isinstance(checkpoint, Mapping):
        raise BadInput(f"checkpoint {path!r} holds a {type(checkpoint).__name__}, not a state dict")
    state = checkpoint.get("state_dict", checkpoint)
    if not isinstance(state, Mapping):
        raise BadInput(f"checkpoint {path!r}: 'state_dict' is a {type(state).__name__}, not a dict")
    state = {(k[len("module."):] if isinstance(k, str) and k.startswith("module.") else k): v
             for k, v in state.items()}
    model: nn.Module = runner.model.module if is_model_wrapper(runner.model) else runner.model
    expected = model.state_dict()
    problem = state_dict_mismatch(expected, state)
    if problem is not None:
        hint = ""
        if _FUSION_ANCHOR in state and not any(str(k).startswith("fusion_net.") for k in state):
            hint = (" (it holds only a fusion network without the 'fusion_net.' prefix; "
                    "tools/test.py needs a full checkpoint of tools/train.py with F, G and T: "
                    "fuse with tools/fuse.py and score with tools/evaluate.py instead)")
        raise BadInput(f"checkpoint {path!r} does not match the model of the config: "
                       f"{problem}{hint}")
    runner.call_hook("after_load_checkpoint", checkpoint=checkpoint)
    model.load_state_dict(state, strict=True)
    runner.logger.info(f"Loaded checkpoint {path} strictly ({len(expected)} tensors)")
    return checkpoint


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
    """Test the checkpoint; :class:`BadInput` (exit 2 from the command line) before any output."""
    args = parse_args(argv)
    cfg = build_config(args)
    runner = Runner.from_cfg(cfg)
    load_checkpoint_strictly(runner, args.checkpoint)
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
    try:
        main()
    except BadInput as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
