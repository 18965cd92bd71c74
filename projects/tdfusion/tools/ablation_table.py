#!/usr/bin/env python
"""TDFusion's Table 3 (ablations I–V) at CPU scale, beside the full method.

    python projects/tdfusion/tools/ablation_table.py [--seeds 0]
        [--work-root work_dirs/tdfusion_ablations_cpu]
        [--out projects/tdfusion/results_ablations_cpu.md]
        [--spread-from projects/tdfusion/results_cpu.json]

Every row is trained by ``tools/train.py`` under the CPU recipe
(``configs/*_msrsdet_cpu.py``: the same warm-ups, epochs, meta and fusion steps, and
seeds) and scored, as in the paper's Table 3, on fusion metrics only: the 60
``msrs_det`` test pairs at their 480×640, 8-bit, TDFusion's ``mean`` convention, for
all, night and day pairs. Each row's fused image comes from its whole trained model
(the config built, the checkpoint loaded strictly), so ablation V's weighted sum
uses its G. The table says by how much the full method beats each ablation; a *win*
or *loss* needs a difference beyond the seed spread: that of this run's seeds where
there are several, and at least the larger per-metric spread of TDFusion and ablation
I over three seeds in ``--spread-from`` (the results table), so that one seed is not
read as a result. Rows are cached in ``<work-root>/rows/``; a rerun computes only what
is missing.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tools.tdfusion_results import (  # noqa: E402
    CONFIG_DIR,
    GROUP_TITLES,
    GROUPS,
    PAPER_SIX,
    _git_commit,
    load_test_pairs,
    paper_table3,
    summarise,
    train_run,
    verdict,
)

#: Rows: name -> (config, label). "full" first: the others are compared with it.
ROWS: dict[str, tuple[str, str]] = {
    "full": ("tdfusion_yolov8_msrsdet_cpu.py", "TDFusion (full, CPU recipe)"),
    "I": ("ablation1_fixed_weights_msrsdet_cpu.py", "I: w fixed to ½ (no learnable loss)"),
    "II": ("ablation2_no_gradient_loss_msrsdet_cpu.py", "II: no gradient term (α = 0)"),
    "III": ("ablation3_task_loss_on_fusion_msrsdet_cpu.py", "III: F also trained by L_t (λ = 1)"),
    "IV": ("ablation4_no_fusion_phase_msrsdet_cpu.py", "IV: no fusion phase (F keeps θ')"),
    "V": ("ablation5_weighted_sum_msrsdet_cpu.py", "V: I_f = w_a·I_a + w_b·I_b (G's w)"),
}
KEYS = (*PAPER_SIX, "MI", "SD")
#: Rows of the results table whose three-seed spread is the floor of every verdict.
SPREAD_ROWS = ("tdfusion", "ablation1")


def fusion_of(config: Path, checkpoint: Path) -> Callable:
    """The trained model's F (with its G bound where F uses G), loaded strictly."""
    from mmengine.config import Config
    from mmengine.registry import DefaultScope

    from learnable_fusion_loss.compat import load_weights_only
    from learnable_fusion_loss.registry import MODELS

    cfg = Config.fromfile(str(config))
    for module in cfg.get("custom_imports", {}).get("imports", []):  # e.g. the project's nets
        importlib.import_module(module)
    with DefaultScope.overwrite_default_scope("lfl"):
        model = MODELS.build(cfg.model)
    state = load_weights_only(checkpoint)
    model.load_state_dict(state["state_dict"] if "state_dict" in state else state, strict=True)
    model.eval()
    return lambda a, b: model.fusion_net(a, b)


def fusion_row(fuse: Callable, data: Mapping) -> dict[str, dict[str, float]]:
    import torch

    from learnable_fusion_loss.metrics import fusion_metrics
    from projects.tdfusion.tdfusion.protocol import day_night_groups

    with torch.no_grad():
        fused = torch.cat([fuse(data["source_a"][i:i + 2], data["source_b"][i:i + 2]).clamp(0, 1)
                           for i in range(0, data["source_a"].shape[0], 2)])
    values = fusion_metrics(fused, data["source_a"], data["source_b"], KEYS)
    groups = day_night_groups(data["ids"])
    return {g: {k: float(v[idx].mean()) for k, v in values.items()} for g, idx in groups.items()}


def spread_floor(path: Path | None) -> dict[str, dict[str, float]]:
    """Per group and metric, the larger seed std of TDFusion and ablation I in ``path``."""
    if path is None:
        return {}
    if not path.is_file():
        raise SystemExit(f"error: --spread-from {path}: no such file")
    summary = json.loads(path.read_text()).get("summary", {})
    missing = [r for r in SPREAD_ROWS if r not in summary]
    if missing:
        raise SystemExit(f"error: --spread-from {path}: no summary rows {missing}")
    return {g: {k: max(summary[r][g][k][1] for r in SPREAD_ROWS) for k in KEYS} for g in GROUPS}


def _cell(value: float, key: str, std: float | None = None) -> str:
    digits = 2 if key == "SD" else 3
    if not math.isfinite(value):
        return "—"
    return f"{value:.{digits}f}" + ("" if std is None else f" ± {std:.{digits}f}")


def build_markdown(stats: Mapping[str, Mapping], seeds: Sequence[int], floor: Mapping[str, Mapping],
                   setup: Mapping, timings: Mapping[str, float], paper: Mapping[str, Mapping]) -> str:
    many = len(seeds) > 1
    lines = ["# TDFusion ablations (paper Table 3) at CPU scale", "",
             f"Made by `{setup['command']}` ({setup['commit']}). Every row: the CPU recipe "
             "(`configs/*_msrsdet_cpu.py`) with one change, trained on the 120 `msrs_det` train pairs, "
             f"seeds {list(seeds)}; fusion metrics on the 60 test pairs at 480×640 (8-bit, `mean` "
             "convention), as in the paper's Table 3 (fusion metrics only).", ""]
    for group in ("all", "night"):
        lines += [f"#### Metrics, {GROUP_TITLES[group]}", "",
                  "| row | " + " | ".join(KEYS) + " |", "|---|" + "---:|" * len(KEYS)]
        for name, by_group in stats.items():
            cells = " | ".join(_cell(by_group[group][k][0], k, by_group[group][k][1] if many else None)
                               for k in KEYS)
            label = ROWS[name][1]
            lines.append(f"| {f'**{label}**' if name == 'full' else label} | {cells} |")
        lines.append("")
    lines += ["#### The full method minus each ablation, all 60 test pairs", "",
              "A *win* or *loss* is a difference beyond the spread: the larger of this run's seed "
              "spread and the three-seed spread of TDFusion and ablation I in "
              f"`{setup['spread_from']}` (its floor per metric: "
              + ", ".join(f"{k} {floor['all'][k]:.3f}" for k in PAPER_SIX) + ")." if floor else
              "A *win* or *loss* is a difference beyond the larger seed spread of the two rows.", "",
              "| full minus | " + " | ".join(KEYS) + " |", "|---|" + "---:|" * len(KEYS)]
    wins = {}
    for name in stats:
        if name == "full":
            continue
        cells, won = [], 0
        for key in KEYS:
            (m, ms), (o, os_) = stats["full"]["all"][key], stats[name]["all"][key]
            spread = max(ms, os_, floor.get("all", {}).get(key, 0.0))
            word = verdict(m - o, spread)
            won += word == "win" and key in PAPER_SIX
            cells.append(f"{m - o:+.3f} ({word})")
        wins[name] = won
        lines.append(f"| {ROWS[name][1]} | " + " | ".join(cells) + " |")
    lines += ["", "The full method wins beyond the spread on: "
              + ", ".join(f"{n} {w}/6" for n, w in wins.items()) + " of the paper's six metrics.", ""]
    lines += ["#### The paper's Table 3 (FMB, full data, 50 epochs, one GPU; "
              "`../shared/reference/tdfusion_paper_tables.md`)", "",
              "| config | " + " | ".join(PAPER_SIX) + " |", "|---|" + "---:|" * len(PAPER_SIX)]
    for config, row in paper.items():
        lines.append(f"| {config} | " + " | ".join(row[k] for k in PAPER_SIX) + " |")
    lines += ["", "#### Wall time (2 CPU cores)", "", "| step | seconds |", "|---|---:|"]
    lines += [f"| {k} | {v:.0f} |" for k, v in timings.items()]
    lines.append(f"| total | {sum(v for v in timings.values() if math.isfinite(v)):.0f} |")
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work-root", default="work_dirs/tdfusion_ablations_cpu", type=Path)
    parser.add_argument("--out", default="projects/tdfusion/results_ablations_cpu.md", type=Path)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    parser.add_argument("--spread-from", type=Path, default=Path("projects/tdfusion/results_cpu.json"),
                        help="a results_cpu.json whose three-seed spread floors every verdict ('' for none)")
    parser.add_argument("--data-root", default=os.environ.get("LFL_DATA_ROOT", str(REPO_ROOT.parent / "shared" / "data")))
    args = parser.parse_args(argv)
    if "full" not in args.rows:
        parser.error("--rows must include 'full' (every ablation is compared with it)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    paper = paper_table3()  # a changed reference file stops the run before training
    floor = spread_floor(args.spread_from if str(args.spread_from) else None)
    from learnable_fusion_loss import compat

    compat.apply_offline_defaults()
    compat.patch_mmengine_checkpoint_loading()
    data = load_test_pairs(Path(args.data_root) / "msrs_det")
    rows_dir = args.work_root / "rows"
    rows_dir.mkdir(parents=True, exist_ok=True)
    per_seed: dict[str, list[dict]] = {}
    timings: dict[str, float] = {}
    for name in args.rows:
        config = ROWS[name][0]
        for seed in args.seeds:
            key = f"{name}_seed{seed}"
            cache = rows_dir / f"{key}.json"
            if cache.is_file():
                record = json.loads(cache.read_text())
            else:
                work = args.work_root / key
                seconds = train_run(name, config, seed, work, [])
                checkpoint = Path((work / "last_checkpoint").read_text().strip())
                start = time.time()
                record = {"metrics": fusion_row(fusion_of(CONFIG_DIR / config, checkpoint), data),
                          "checkpoint": str(checkpoint), "seconds": {"train": seconds}}
                record["seconds"]["fusion metrics"] = time.time() - start
                cache.write_text(json.dumps(record, indent=2) + "\n")
            per_seed.setdefault(name, []).append(record["metrics"])
            for part, seconds in record["seconds"].items():
                timings[f"{key}: {part}"] = seconds
    stats = {name: {g: {k: summarise([run[g][k] for run in runs]) for k in KEYS} for g in GROUPS}
             for name, runs in per_seed.items()}
    setup = {"command": "python projects/tdfusion/tools/ablation_table.py "
                        + " ".join(argv if argv is not None else sys.argv[1:]),
             "commit": _git_commit(), "seeds": args.seeds, "spread_from": str(args.spread_from)}
    markdown = build_markdown(stats, args.seeds, floor, setup, timings, paper)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(markdown)
    args.out.with_suffix(".json").write_text(json.dumps(
        {"setup": setup, "per_seed": per_seed, "spread_floor": floor, "timings": timings,
         "summary": {n: {g: {k: list(v) for k, v in s[g].items()} for g in GROUPS} for n, s in stats.items()}},
        indent=2) + "\n")
    print(markdown)
    print(f"written: {args.out} and {args.out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
