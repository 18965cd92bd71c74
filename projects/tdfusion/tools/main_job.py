#!/usr/bin/env python
"""The main job: fuse the 60 msrs_det test pairs with TDFusion and stand it beside the baselines.

    python projects/tdfusion/tools/main_job.py [--model tdfusion_msrsdet_cpu | --checkpoint CKPT]
                                               [--work-dir work_dirs/main] [--limit N]

F and G come from the zoo model (default; trained with the CPU recipe, see
``projects/tdfusion/zoo``) or from a runner checkpoint of ``tools/train.py``. Every
test pair is fused at its own resolution (480×640), in colour (the visible image's
chroma kept through YCrCb), and written with both weight maps to
``WORK_DIR/test/{fused,weights}/``. The fusion metrics of the fused images and of
IR alone, VIS alone, the average and the max on the same pairs go to
``WORK_DIR/test/results.{md,json}`` and are printed. Detection needs a detector
trained per method (minutes each): its numbers are in
``projects/tdfusion/results_cpu.md``, made by ``tools/tdfusion_results.py``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO_ROOT))

import torch  # noqa: E402

from learnable_fusion_loss import compat  # noqa: E402
from learnable_fusion_loss.apis import fuse_images  # noqa: E402
from learnable_fusion_loss.apis.zoo import load_zoo_module  # noqa: E402
from learnable_fusion_loss.datasets import YoloPairedDetDataset, load_image, save_image  # noqa: E402
from learnable_fusion_loss.datasets.io import rgb_to_luma  # noqa: E402
from learnable_fusion_loss.engine.hooks import atomic_write_bytes  # noqa: E402
from learnable_fusion_loss.metrics import fusion_metrics  # noqa: E402
from projects.tdfusion.tdfusion import ReFusionNet, TDFusionLPN  # noqa: E402 - and its zoo folder

METRICS = ("EN", "SF", "SCD", "VIF", "Qabf", "SSIM", "MI", "SD")
BASELINES = {"IR alone": lambda a, b: a, "VIS alone": lambda a, b: b,
             "average (IR+VIS)/2": lambda a, b: (a + b) / 2, "max(IR, VIS)": torch.maximum}


def load_nets(args: argparse.Namespace) -> tuple[torch.nn.Module, torch.nn.Module, str]:
    """F and G from the zoo or from a runner checkpoint (weights-only, allow-listed)."""
    if args.checkpoint is None:
        return (load_zoo_module(args.model, "fusion_net"), load_zoo_module(args.model, "generator"),
                f"zoo model {args.model}")
    state = compat.load_weights_only(args.checkpoint)["state_dict"]
    nets = []
    for prefix, net in (("fusion_net.", ReFusionNet()), ("loss.generator.", TDFusionLPN())):
        net.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)},
                            strict=True)
        nets.append(net.eval())
    return nets[0], nets[1], f"checkpoint {args.checkpoint}"


def _number(value: float, signed: bool = False) -> str:
    """A table cell; an undefined value (e.g. SCD of a source against itself) is a dash."""
    if not math.isfinite(value):
        return "—"
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def table(rows: dict[str, dict[str, float]], method: str) -> str:
    lines = ["| row | " + " | ".join(METRICS) + " |", "|---|" + "---:|" * len(METRICS)]
    for name, values in rows.items():
        label = f"**{name}**" if name == method else name
        lines.append(f"| {label} | " + " | ".join(_number(values[k]) for k in METRICS) + " |")
    lines += ["", f"{method} minus each baseline (higher is better for every column):", "",
              "| baseline | " + " | ".join(METRICS) + " |", "|---|" + "---:|" * len(METRICS)]
    for name, values in rows.items():
        if name != method:
            lines.append(f"| {name} | " + " | ".join(
                _number(rows[method][k] - values[k], signed=True) for k in METRICS) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="tdfusion_msrsdet_cpu", help="zoo model name")
    parser.add_argument("--checkpoint", type=Path, default=None, help="a tools/train.py checkpoint instead")
    parser.add_argument("--work-dir", type=Path, default=Path("work_dirs/main"))
    parser.add_argument("--data-root", type=Path, default=REPO_ROOT.parent / "shared" / "data")
    parser.add_argument("--limit", type=int, default=None, help="only the first N test pairs")
    args = parser.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        parser.error(f"--limit must be >= 1, got {args.limit}")
    start = time.time()
    fusion_net, generator, source = load_nets(args)
    dataset = YoloPairedDetDataset(root=str(args.data_root / "msrs_det"), split="test", pipeline=[])
    count = len(dataset) if args.limit is None else min(args.limit, len(dataset))
    out = args.work_dir / "test"
    fused_y, ir_all, vi_all = [], [], []
    for i in range(count):
        sample = dataset[i]
        ir, vi = load_image(sample["ir_path"]), load_image(sample["vi_path"])
        with torch.no_grad():
            fused = fuse_images(fusion_net, ir, vi).clamp(0, 1)
            weights = generator(sample["source_a"][None], sample["source_b"][None])[0].clamp(0, 1)
        name = sample["img_id"]
        save_image(out / "fused" / f"{name}.png", fused, overwrite=True)
        for k, source_name in enumerate(("ir", "vis")):
            save_image(out / "weights" / f"{name}_w_{source_name}.png", weights[k:k + 1], overwrite=True)
        fused_y.append(rgb_to_luma(fused[None])[0] if fused.shape[0] == 3 else fused)
        ir_all.append(sample["source_a"])
        vi_all.append(sample["source_b"])
        print(f"fused {i + 1}/{count}: {name} ({fused.shape[-1]}x{fused.shape[-2]})", flush=True)
    a, b, f = torch.stack(ir_all), torch.stack(vi_all), torch.stack(fused_y)
    method = "TDFusion (" + source + ")"
    candidates = {method: f, **{n: rule(a, b) for n, rule in BASELINES.items()}}
    rows = {}
    for name, images in candidates.items():
        values = fusion_metrics(images, a, b, METRICS)
        rows[name] = {k: float(v[torch.isfinite(v)].mean()) if torch.isfinite(v).any() else math.nan
                      for k, v in values.items()}
    text = (f"### Fusion metrics on {count} msrs_det test pairs at 480x640 (TDFusion's mean "
            f"convention, 8-bit; — = undefined, e.g. SCD of a source alone)\n\n" + table(rows, method))
    record = {"source": source, "pairs": count, "metrics": rows, "seconds": round(time.time() - start, 1)}
    atomic_write_bytes(out / "results.md", text.encode())
    atomic_write_bytes(out / "results.json", (json.dumps(record, indent=2) + "\n").encode())
    print("\n" + text)
    print(f"fused images and weight maps: {out}/fused, {out}/weights; table: {out}/results.md "
          f"({record['seconds']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
