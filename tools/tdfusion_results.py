#!/usr/bin/env python
"""Build the TDFusion mini results table: the method vs. the trivial baselines.

    python tools/tdfusion_results.py [--work-root work_dirs/tdfusion_results]
                                     [--runs tdfusion ir vis mean max] [--ablations]
                                     [--out projects/tdfusion/results_mini.md]
                                     [--jobs N] [--cfg-options ...]

For every run (a config in projects/tdfusion/configs) it trains with
``tools/train.py`` unless ``<work-root>/<run>/last_checkpoint`` exists, evaluates
with ``tools/test.py`` (JSON in ``<work-root>/<run>/test_results.json``), and
writes one Markdown file with

1. the metrics of every run (fusion metrics on the test images, task metrics of
   the task net trained on each run's fused images, same schedule and data);
2. the difference method − baseline for each baseline, with the metric's
   direction (higher or lower is better), i.e. how much the method wins or loses;
3. the paper's published numbers, marked as not comparable.

``--cfg-options`` are passed to both tools for every run (e.g. smaller schedules).
``--jobs N`` trains and tests N runs at once (each run is its own process; on a
small CPU machine give each one thread, ``OMP_NUM_THREADS=1``).
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO_ROOT / "projects" / "tdfusion" / "configs"

RUNS: dict[str, tuple[str, str]] = {
    "tdfusion": ("tdfusion_yolov8_msrsdet_mini.py", "TDFusion (ours, mini)"),
    "ir": ("baseline_ir_msrsdet_mini.py", "IR alone"),
    "vis": ("baseline_vis_msrsdet_mini.py", "VIS alone"),
    "mean": ("baseline_mean_msrsdet_mini.py", "average (IR+VIS)/2"),
    "max": ("baseline_max_msrsdet_mini.py", "max(IR, VIS)"),
}
ABLATIONS: dict[str, tuple[str, str]] = {
    "ablation1": ("ablation1_fixed_weights_msrsdet_mini.py", "I: fixed 1/2 weights"),
    "ablation2": ("ablation2_no_gradient_loss_msrsdet_mini.py", "II: no gradient term"),
    "ablation3": ("ablation3_task_loss_on_fusion_msrsdet_mini.py", "III: F also on L_t"),
    "ablation4": ("ablation4_no_fusion_phase_msrsdet_mini.py", "IV: no separate fusion phase"),
    "ablation5": ("ablation5_weighted_sum_msrsdet_mini.py", "V: fused = w_a·a + w_b·b"),
}
BASELINES = ("ir", "vis", "mean", "max")

#: Columns of the table: (metric key, header, higher is better).
COLUMNS: tuple[tuple[str, str, bool], ...] = (
    ("fusion/EN", "EN", True),
    ("fusion/SD", "SD", True),
    ("fusion/SF", "SF", True),
    ("fusion/MI", "MI", True),
    ("fusion/SCD", "SCD", True),
    ("fusion/VIF", "VIF", True),
    ("fusion/Qabf", "Qabf", True),
    ("fusion/SSIM", "SSIM", True),
    ("task/mAP50", "mAP50", True),
    ("task/mAP75", "mAP75", True),
    ("task/mAP50-95", "mAP50-95", True),
)

#: TDFusion's published results, for orientation only: other data (full M3FD/MSRS
#: train and test splits), 50 epochs at full resolution. Source: the values listed
#: for arXiv 2412.03240 on wizwand.com (M3FD detection mAP@0.5, MSRS fusion EN);
#: check them against the paper's tables before citing.
PAPER = {"task/mAP50": ("86.27 % (M3FD)", 0.8627), "fusion/EN": ("6.74 (MSRS)", 6.74)}


def _run(cmd: list[str], log: Path) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.time()
    with log.open("w") as handle:
        done = subprocess.run(cmd, cwd=REPO_ROOT, stdout=handle, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        raise SystemExit(f"failed ({done.returncode}): {' '.join(cmd)}; see {log}")
    print(f"  {Path(cmd[1]).name} done in {time.time() - start:.0f} s (log: {log})", flush=True)


def run_one(name: str, config: str, work_root: Path, options: list[str]) -> dict:
    work = work_root / name
    extra = ["--cfg-options", *options] if options else []
    config_path = str(CONFIG_DIR / config)
    if not (work / "last_checkpoint").is_file():
        print(f"[{name}] training {config}", flush=True)
        _run([sys.executable, "tools/train.py", config_path, "--work-dir", str(work), *extra],
             work / "train.log")
    checkpoint = Path((work / "last_checkpoint").read_text().strip())
    result = work / "test_results.json"
    print(f"[{name}] testing {checkpoint.name}", flush=True)
    _run([sys.executable, "tools/test.py", config_path, str(checkpoint), "--work-dir", str(work),
          "--out", str(result), *extra], work / "test.log")
    return json.loads(result.read_text())["metrics"]


def _cell(value: float | None, key: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if key.startswith("task/"):
        return f"{100 * value:.2f}"
    return f"{value:.3f}"


def _delta(method: float | None, base: float | None, key: str, higher: bool) -> str:
    if method is None or base is None or math.isnan(method) or math.isnan(base):
        return "—"
    diff = method - base
    scale = 100 if key.startswith("task/") else 1
    verdict = "=" if diff == 0 else ("win" if (diff > 0) == higher else "loss")
    return f"{scale * diff:+.{2 if scale == 100 else 3}f} ({verdict})"


def build_table(results: dict[str, dict], labels: dict[str, str], method: str) -> str:
    keys = [c for c in COLUMNS if any(c[0] in r for r in results.values())]
    header = "| run | " + " | ".join(h for _, h, _ in keys) + " |"
    rule = "|---|" + "---:|" * len(keys)
    lines = ["#### Metrics on the msrs_det test split (60 pairs at 240×320; task metrics in %)", "",
             header, rule]
    for name, metrics in results.items():
        cells = " | ".join(_cell(metrics.get(k), k) for k, _, _ in keys)
        label = f"**{labels[name]}**" if name == method else labels[name]
        lines.append(f"| {label} | {cells} |")
    paper = " | ".join(PAPER[k][0] if k in PAPER else "" for k, _, _ in keys)
    lines.append(f"| *paper, full data (not comparable)* | {paper} |")
    lines += ["", f"#### {labels[method]} minus each baseline (win = better for the method)", "",
              header, rule]
    for name in results:
        if name == method or name not in BASELINES:
            continue
        cells = " | ".join(
            _delta(results[method].get(k), results[name].get(k), k, higher) for k, _, higher in keys
        )
        lines.append(f"| vs {labels[name]} | {cells} |")
    wins = {name: sum(
        1 for k, _, higher in keys
        if k in results[method] and k in results[name]
        and (results[method][k] - results[name][k]) * (1 if higher else -1) > 0)
        for name in results if name in BASELINES and name != method}
    if wins:
        lines += ["", "Columns won by the method: " + ", ".join(
            f"{labels[n]} {w}/{len(keys)}" for n, w in wins.items()) + "."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work-root", default="work_dirs/tdfusion_results")
    parser.add_argument("--runs", nargs="+", default=list(RUNS), choices=list(RUNS))
    parser.add_argument("--ablations", action="store_true", help="also run the five ablations")
    parser.add_argument("--out", default="work_dirs/tdfusion_results/results_mini.md")
    parser.add_argument("--cfg-options", nargs="+", default=[], help="passed to train.py and test.py")
    parser.add_argument("--jobs", type=int, default=1, help="runs trained and tested at once")
    args = parser.parse_args(argv)
    if "tdfusion" not in args.runs:
        raise SystemExit("--runs must include 'tdfusion' (the method the table compares)")
    chosen = {name: RUNS[name] for name in args.runs}
    if args.ablations:
        chosen.update(ABLATIONS)
    if args.jobs < 1:
        raise SystemExit(f"--jobs must be >= 1, got {args.jobs}")
    work_root = Path(args.work_root)
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = {name: pool.submit(run_one, name, config, work_root, list(args.cfg_options))
                   for name, (config, _) in chosen.items()}
        results = {name: future.result() for name, future in futures.items()}
    labels = {name: label for name, (_, label) in chosen.items()}
    table = build_table(results, labels, method="tdfusion")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(table)
    (out.with_suffix(".json")).write_text(json.dumps(results, indent=2) + "\n")
    print(table)
    print(f"written: {out} and {out.with_suffix('.json')}")


if __name__ == "__main__":
    main()
