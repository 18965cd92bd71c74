#!/usr/bin/env python
"""TDFusion's results table at CPU scale: the method, ablation I and the trivial baselines.

    python tools/tdfusion_results.py [--seeds 0 1 2] [--det-steps 800]
                                     [--work-root work_dirs/tdfusion_results_cpu]
                                     [--out projects/tdfusion/results_cpu.md]

1. **Training.** ``tools/train.py`` trains the CPU recipe
   (``projects/tdfusion/configs/tdfusion_yolov8_msrsdet_cpu.py``) and ablation I under
   the same schedule (``ablation1_fixed_weights_msrsdet_cpu.py``) once per seed
   (``randomness.seed`` and ``model.task.seed``), unless the run's
   ``last_checkpoint`` already exists.
2. **Rows.** Every trained F, plus IR alone, VIS alone, the average and the max.
3. **Fusion metrics** of each row on the 60 ``msrs_det`` test pairs at their own
   480×640 resolution (8-bit, TDFusion's ``mean`` convention), overall and for the
   night (``*N``) and day (``*D``) pairs.
4. **The paper's protocol for the task** (T retrained per method): for each row a
   fresh YOLOv8n (same seed, same ``--det-steps`` budget for every row) is trained on
   that row's fused *train* images and tested on its fused *test* images at
   ``--det-size`` (``projects/tdfusion/tdfusion/protocol.py``).
5. **Output.** A Markdown file with the three tables (mean ± std over seeds for the
   trained rows), the method's difference to every other row (a *win* only where
   it exceeds the seed spread), the goals of the results issue checked one by one,
   the paper's own numbers (``../shared/reference/tdfusion_paper_tables.md``) and
   the wall time of every step; and a JSON file with every per-seed value.

Each row's numbers are cached in ``<work-root>/rows/<row>.json``: a rerun only
computes what is missing (delete a file to recompute it).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

CONFIG_DIR = REPO_ROOT / "projects" / "tdfusion" / "configs"
PAPER_TABLES = REPO_ROOT.parent / "shared" / "reference" / "tdfusion_paper_tables.md"

#: Trained rows: name -> (config, label).
METHODS: dict[str, tuple[str, str]] = {
    "tdfusion": ("tdfusion_yolov8_msrsdet_cpu.py", "TDFusion (ours, CPU recipe)"),
    "ablation1": ("ablation1_fixed_weights_msrsdet_cpu.py", "ablation I: fixed ½–½ loss"),
}
#: Fixed rules: name -> label.
BASELINES: dict[str, str] = {
    "ir": "IR alone",
    "vis": "VIS alone",
    "mean": "average (IR+VIS)/2",
    "max": "max(IR, VIS)",
}
#: Columns: (key, header). Higher is better for every one of them.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("EN", "EN"), ("SF", "SF"), ("SCD", "SCD"), ("VIF", "VIF"), ("Qabf", "Qabf"),
    ("SSIM", "SSIM"), ("MI", "MI"), ("SD", "SD"), ("mAP50", "mAP50"), ("mAP50-95", "mAP50-95"),
)
FUSION_KEYS = tuple(k for k, _ in COLUMNS if not k.startswith("mAP"))
PAPER_SIX = ("EN", "SF", "SCD", "VIF", "Qabf", "SSIM")
GROUPS = ("all", "night", "day")
GROUP_TITLES = {"all": "all 60 test pairs", "night": "30 night pairs (*N)", "day": "30 day pairs (*D)"}


# ----------------------------------------------------------------------------- statistics
def summarise(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value); NaNs are dropped."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return math.nan, math.nan
    return statistics.fmean(finite), statistics.stdev(finite) if len(finite) > 1 else 0.0


def verdict(diff: float, spread: float) -> str:
    """``win`` / ``loss`` where ``|diff|`` exceeds ``spread``, else ``tie`` (within spread)."""
    if not math.isfinite(diff):
        return "—"
    if abs(diff) <= spread:
        return "tie"
    return "win" if diff > 0 else "loss"


def row_stats(per_seed: Sequence[Mapping[str, Mapping[str, float]]]) -> dict[str, dict[str, tuple[float, float]]]:
    """``{group: {metric: (mean, std)}}`` over the seeds of one row."""
    return {
        group: {key: summarise([run[group].get(key, math.nan) for run in per_seed if group in run])
                for key, _ in COLUMNS}
        for group in GROUPS
    }


# ----------------------------------------------------------------------------- tables
def _scale(key: str) -> float:
    return 100.0 if key.startswith("mAP") else 1.0


def _cell(mean: float, std: float, key: str, seeds: int) -> str:
    if not math.isfinite(mean):
        return "—"
    digits = 2 if key.startswith("mAP") or key == "SD" else 3
    text = f"{_scale(key) * mean:.{digits}f}"
    if seeds > 1:
        text += f" ± {_scale(key) * std:.{digits}f}"
    return text


def metrics_table(stats: Mapping[str, Mapping], labels: Mapping[str, str], seeds: Mapping[str, int],
                  group: str, method: str) -> list[str]:
    header = "| row | " + " | ".join(h for _, h in COLUMNS) + " |"
    lines = [header, "|---|" + "---:|" * len(COLUMNS)]
    for name, by_group in stats.items():
        cells = " | ".join(_cell(*by_group[group][k], k, seeds[name]) for k, _ in COLUMNS)
        label = f"**{labels[name]}**" if name == method else labels[name]
        lines.append(f"| {label} | {cells} |")
    return lines


def delta_table(stats: Mapping[str, Mapping], labels: Mapping[str, str], group: str,
                method: str) -> list[str]:
    """The method minus every other row; a win only beyond the larger seed spread."""
    header = "| TDFusion minus | " + " | ".join(h for _, h in COLUMNS) + " |"
    lines = [header, "|---|" + "---:|" * len(COLUMNS)]
    for name in stats:
        if name == method:
            continue
        cells = []
        for key, _ in COLUMNS:
            (m_mean, m_std), (o_mean, o_std) = stats[method][group][key], stats[name][group][key]
            diff, spread = m_mean - o_mean, max(m_std, o_std)
            if not math.isfinite(diff):
                cells.append("—")
                continue
            digits = 2 if key.startswith("mAP") or key == "SD" else 3
            cells.append(f"{_scale(key) * diff:+.{digits}f} ({verdict(diff, spread)})")
        lines.append(f"| {labels[name]} | " + " | ".join(cells) + " |")
    return lines


def goals(stats: Mapping[str, Mapping], method: str, ablation: str | None) -> list[tuple[str, bool, str]]:
    """The results issue's goals, each ``(goal, met, evidence)``; wins beyond the spread."""

    def beats(other: str, key: str, group: str = "all") -> bool:
        (m, ms), (o, os_) = stats[method][group][key], stats[other][group][key]
        return verdict(m - o, max(ms, os_)) == "win"

    out = []
    lost = [k for k in PAPER_SIX if not beats("mean", k)]
    out.append(("beats the average rule on all six paper metrics", not lost,
                "loses or ties on " + ", ".join(lost) if lost else "wins on all six"))
    lost = [k for k in ("EN", "SCD") if not beats("max", k)]
    out.append(("beats the max rule on EN and SCD", not lost,
                "loses or ties on " + ", ".join(lost) if lost else "wins on both"))
    best_name = max(stats, key=lambda n: stats[n]["all"]["mAP50"][0]
                    if math.isfinite(stats[n]["all"]["mAP50"][0]) else -1)
    best = stats[best_name]["all"]["mAP50"][0]
    out.append(("the detector learns: mAP50 >= 0.3 on the best row", best >= 0.3,
                f"best mAP50 {100 * best:.2f} % ({best_name})"))
    night = stats[method]["night"]["mAP50"][0]
    others = [n for n in stats if n != method and (n in BASELINES)]
    below = [n for n in others if stats[n]["night"]["mAP50"][0] > night]
    out.append(("night mAP50 of TDFusion >= every baseline's", not below,
                f"TDFusion {100 * night:.2f} %; above it: "
                + (", ".join(f"{n} {100 * stats[n]['night']['mAP50'][0]:.2f} %" for n in below) or "none")))
    if ablation is not None and ablation in stats:
        out.append(("night mAP50 of TDFusion above ablation I's (beyond the spread)",
                    beats(ablation, "mAP50", "night"),
                    f"{100 * night:.2f} ± {100 * stats[method]['night']['mAP50'][1]:.2f} vs "
                    f"{100 * stats[ablation]['night']['mAP50'][0]:.2f} ± "
                    f"{100 * stats[ablation]['night']['mAP50'][1]:.2f} %"))
    return out


# ----------------------------------------------------------------------------- paper numbers
#: The datasets of the paper's Tables 1–2, in the paper's order. A transcription that
#: covers other datasets is a changed format, not a silent partial table.
PAPER_DATASETS: tuple[str, ...] = ("MSRS", "FMB", "M3FD", "LLVIP")
#: Table 3's rows (ablations on FMB), in the paper's order.
PAPER_TABLE3_CONFIGS: tuple[str, ...] = ("I", "II", "III", "IV", "V", "full")


class PaperTablesError(ValueError):
    """The paper's tables are missing from, or no longer parse in, the reference file."""


def _section_table(path: Path | None, title: str) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the first Markdown table under the ``## {title}: …`` heading.

    Cells are stripped of spaces and of the bold markers the transcription puts
    around the paper's own method. Every failure names ``path``: a reader of the
    error must know which file to fix. ``path=None`` is :data:`PAPER_TABLES`, read at
    call time (so a test or a caller can point the module at another file).
    """
    path = PAPER_TABLES if path is None else Path(path)
    if not path.is_file():
        raise PaperTablesError(
            f"the paper's tables are missing: {path} does not exist (it is the transcription of "
            f"Bai et al., CVPR 2025, Tables 1–3; see the README beside it)")
    section: list[str] | None = None
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            if section is not None:
                break
            if line[3:].startswith(f"{title}:"):
                section = []
            continue
        if section is not None:
            section.append(line)
    if section is None:
        raise PaperTablesError(f"{path}: no section '## {title}: …' (has its format changed?)")
    block: list[str] = []
    for line in section:
        if line.startswith("|"):
            block.append(line)
        elif block:
            break  # the first table only; text after it is commentary
    if len(block) < 3 or not set(block[1].strip()) <= set("|-: "):
        raise PaperTablesError(
            f"{path}: section '{title}' has no Markdown table (header, |---| line, rows)")

    def cells(line: str) -> list[str]:
        return [c.strip().strip("*").strip() for c in line.strip().strip("|").split("|")]

    header = cells(block[0])
    rows = [cells(line) for line in block[2:]]
    for row in rows:
        if len(row) != len(header):
            raise PaperTablesError(
                f"{path}: section '{title}': row {row} has {len(row)} cells, the header {len(header)}")
    return header, rows


def _check_number(path: Path, title: str, where: str, text: str) -> str:
    """``text`` if it reads as a number (the transcription's digits are kept as written)."""
    try:
        float(text)
    except ValueError:
        raise PaperTablesError(f"{path}: section '{title}': {where} is {text!r}, not a number") from None
    return text


def _expect(path: Path, title: str, what: str, got: Sequence[str], want: Sequence[str]) -> None:
    if list(got) != list(want):
        raise PaperTablesError(
            f"{path}: section '{title}': {what} are {list(got)}, expected {list(want)} "
            f"(has the file's format changed?)")


def paper_table1(path: Path | None = None) -> dict[str, dict[str, dict[str, str]]]:
    """The paper's Table 1 (fusion metrics): ``{dataset: {method: {metric: value}}}``.

    Values are the transcription's strings (``"11.30"``, not ``11.3``), so a table
    printed from them shows the paper's digits. Raises :class:`PaperTablesError`,
    naming ``path``, if the file is missing or its format changed.

    >>> table = paper_table1()  # the reference file beside the repository
    >>> table["MSRS"]["TDFusion"]["EN"], table["LLVIP"]["EMMA"]["SF"]
    ('6.74', '15.37')
    """
    title, path = "Table 1", PAPER_TABLES if path is None else Path(path)
    header, rows = _section_table(path, title)
    _expect(path, title, "the columns", header, ("dataset", "method", *PAPER_SIX))
    table: dict[str, dict[str, dict[str, str]]] = {}
    for dataset, method, *values in rows:
        if method in table.get(dataset, {}):  # a second row would silently replace the first
            raise PaperTablesError(f"{path}: section '{title}': {dataset} {method} appears twice")
        table.setdefault(dataset, {})[method] = {
            key: _check_number(path, title, f"{dataset} {method} {key}", value)
            for key, value in zip(PAPER_SIX, values, strict=True)}
    _expect(path, title, "the datasets", list(table), PAPER_DATASETS)
    return table


def paper_table2(path: Path | None = None) -> dict[str, dict[str, dict[str, str]]]:
    """The paper's Table 2 (downstream tasks, %): ``{dataset: {method: {metric: value}}}``.

    The header's ``"<dataset> <metric>"`` columns are split per dataset, so MSRS has
    ``mAcc``/``mIoU``, M3FD ``mAP50``/``mAP75``, LLVIP ``AP50``/``AP75`` (the paper's
    names). Raises :class:`PaperTablesError`, naming ``path``, on a missing file or
    a changed format.

    >>> table = paper_table2()
    >>> table["M3FD"]["TDFusion"]["mAP50"], table["LLVIP"]["Infrared"]
    ('86.27', {'AP50': '96.03', 'AP75': '72.07'})
    """
    title, path = "Table 2", PAPER_TABLES if path is None else Path(path)
    header, rows = _section_table(path, title)
    if header[0] != "method" or any(len(h.split()) != 2 for h in header[1:]):
        raise PaperTablesError(
            f"{path}: section '{title}': columns {header} are not 'method' then '<dataset> <metric>' "
            f"(has the file's format changed?)")
    columns = [tuple(h.split()) for h in header[1:]]
    _expect(path, title, "the datasets", list(dict.fromkeys(d for d, _ in columns)), PAPER_DATASETS)
    table: dict[str, dict[str, dict[str, str]]] = {d: {} for d in PAPER_DATASETS}
    for method, *values in rows:
        if method in table[PAPER_DATASETS[0]]:
            raise PaperTablesError(f"{path}: section '{title}': {method} appears twice")
        for (dataset, metric), value in zip(columns, values, strict=True):
            table[dataset].setdefault(method, {})[metric] = _check_number(
                path, title, f"{method} {dataset} {metric}", value)
    return table


def paper_table3(path: Path | None = None) -> dict[str, dict[str, str]]:
    """The paper's Table 3 (ablations on FMB, fusion metrics), keyed by config.

    Keys are ``"I"`` … ``"V"`` and ``"full"`` (TDFusion itself); each value maps the
    six metrics (``"EN"`` … ``"SSIM"``, strings as transcribed) and ``"what changes"``
    (the transcription's description of the configuration) to their cells. Raises
    :class:`PaperTablesError`, naming ``path``, on a missing file or a changed format.

    >>> rows = paper_table3()
    >>> list(rows), rows["full"]["SSIM"], rows["II"]["SF"]
    (['I', 'II', 'III', 'IV', 'V', 'full'], '0.75', '11.65')
    """
    title, path = "Table 3", PAPER_TABLES if path is None else Path(path)
    header, rows = _section_table(path, title)
    _expect(path, title, "the columns", header, ("config", "what changes", *PAPER_SIX))
    table = {row[0]: dict(zip(header[1:], row[1:], strict=True)) for row in rows}
    # a list, not the dict's keys: a config given twice must not collapse into one row
    _expect(path, title, "the configs", [row[0] for row in rows], PAPER_TABLE3_CONFIGS)
    for config, row in table.items():
        for key in PAPER_SIX:
            _check_number(path, title, f"config {config} {key}", row[key])
    return table


def paper_numbers(path: Path | None = None) -> dict[str, dict[str, dict[str, str]]]:
    """Tables 1 and 2 merged per dataset: ``{dataset: {method: {metric: value}}}``.

    A method's row holds Table 1's six fusion metrics and the dataset's two Table 2
    task metrics, whichever the paper reports (Infrared and Visible have no Table 1
    row). Methods come in Table 2's order, then any only in Table 1.

    >>> fmb = paper_numbers()["FMB"]
    >>> fmb["TDFusion"]["mIoU"], fmb["TDFusion"]["EN"], fmb["Visible"].get("EN")
    ('60.50', '6.86', None)
    """
    fusion, task = paper_table1(path), paper_table2(path)
    merged: dict[str, dict[str, dict[str, str]]] = {}
    for dataset in PAPER_DATASETS:
        methods = list(dict.fromkeys([*task[dataset], *fusion[dataset]]))
        merged[dataset] = {m: {**task[dataset].get(m, {}), **fusion[dataset].get(m, {})} for m in methods}
    return merged


def paper_lines(paper: Mapping[str, Mapping[str, Mapping[str, str]]]) -> list[str]:
    """The Markdown paper section: one table per dataset (Tables 1 and 2 side by side).

    >>> paper = {"MSRS": {"Infrared": {"mAcc": "83.23", "mIoU": "69.49"},
    ...                   "TDFusion": {"EN": "6.74", "SF": "11.30", "SCD": "1.86", "VIF": "0.50",
    ...                                "Qabf": "0.67", "SSIM": "0.70", "mAcc": "86.04",
    ...                                "mIoU": "75.09"}}}
    >>> print("\\n".join(paper_lines(paper)[-4:]))
    | method | EN | SF | SCD | VIF | Qabf | SSIM | mAcc | mIoU |
    |---|---:|---:|---:|---:|---:|---:|---:|---:|
    | Infrared | — | — | — | — | — | — | 83.23 | 69.49 |
    | **TDFusion** | 6.74 | 11.30 | 1.86 | 0.50 | 0.67 | 0.70 | 86.04 | 75.09 |
    """
    lines = [
        "#### The paper's numbers (Tables 1–2)", "",
        ("The paper's own numbers (Bai et al., CVPR 2025, Tables 1–2, read from "
         "`../shared/reference/tdfusion_paper_tables.md`): **full datasets, 50 epochs, one RTX "
         "3090**, task nets retrained for 300 epochs; not comparable with this CPU run, which "
         "trains on 120 pairs of MSRS's *test* split. Fusion metrics from Table 1, task "
         "metrics (%) from Table 2; — where the paper gives none.")]
    for dataset, methods in paper.items():
        task = list(dict.fromkeys(k for row in methods.values() for k in row if k not in PAPER_SIX))
        columns = [*PAPER_SIX, *task]
        lines += ["", f"##### {dataset} (Table 1; Table 2: {', '.join(task) or 'none'})", "",
                  "| method | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
        for method, row in methods.items():
            label = f"**{method}**" if method == "TDFusion" else method
            lines.append(f"| {label} | " + " | ".join(row.get(k, "—") for k in columns) + " |")
    return lines


def build_markdown(stats: Mapping[str, Mapping], labels: Mapping[str, str], seeds: Mapping[str, int],
                   setup: Mapping[str, object], timings: Mapping[str, float],
                   method: str = "tdfusion", ablation: str | None = "ablation1",
                   paper: Mapping[str, Mapping[str, Mapping[str, str]]] | None = None) -> str:
    """The results Markdown; ``paper`` (default: :func:`paper_numbers` of the reference
    file, which must exist) gives the paper section, one table per dataset."""
    if paper is None:
        paper = paper_numbers()
    lines = ["## Results (CPU recipe, msrs_det)", "",
             f"Made by `{setup['command']}` ({setup['commit']}). Fusion metrics on the test pairs "
             f"at 480×640; task columns: a fresh YOLOv8n per row, {setup['det_steps']} steps "
             f"(batch {setup['det_batch']}, {setup['det_size'][0]}×{setup['det_size'][1]}) on the "
             f"row's fused train images, tested on its fused test images (mAP in %). Trained rows: "
             f"mean ± std over seeds {list(setup['seeds'])}. A *win* or *loss* is a difference "
             f"beyond the larger seed spread of the two rows; otherwise *tie*.", ""]
    for group in GROUPS:
        lines += [f"#### Metrics, {GROUP_TITLES[group]}", ""]
        lines += metrics_table(stats, labels, seeds, group, method) + [""]
    for group in GROUPS:
        lines += [f"#### TDFusion minus each row, {GROUP_TITLES[group]}", ""]
        lines += delta_table(stats, labels, group, method) + [""]
    lines += ["#### Goals of the results issue", "", "| goal | met | evidence |", "|---|---|---|"]
    for goal, met, evidence in goals(stats, method, ablation):
        lines.append(f"| {goal} | {'yes' if met else '**no**'} | {evidence} |")
    lines += [""] + paper_lines(paper) + ["", "#### Wall time (2 CPU cores)", "",
                                               "| step | seconds |", "|---|---:|"]
    lines += [f"| {step} | {seconds:.0f} |" if math.isfinite(seconds) else f"| {step} | — |"
              for step, seconds in timings.items()]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- running
def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, text=True,
                             capture_output=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=REPO_ROOT, text=True, capture_output=True).stdout.strip()
        return f"commit {out.stdout.strip()}{' + local changes' if dirty else ''}"
    except (OSError, subprocess.CalledProcessError):
        return "commit unknown"


def train_run(name: str, config: str, seed: int, work: Path, options: Sequence[str]) -> float:
    """Train one seed of one method with tools/train.py (skipped if done); wall seconds.

    A run is done when ``<work>/train_seconds.txt`` holds its time; a run that was
    stopped midway (checkpoints, no time) is resumed, and its time is then NaN.
    """
    stamp = work / "train_seconds.txt"
    if stamp.is_file():
        return float(stamp.read_text())
    resume = (work / "last_checkpoint").is_file()
    work.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "tools/train.py", str(CONFIG_DIR / config), "--work-dir", str(work),
           *(["--resume"] if resume else []),
           "--cfg-options", f"randomness.seed={seed}", f"model.task.seed={seed}", *options]
    print(f"[{name} seed {seed}] {'resuming' if resume else 'training'}: {' '.join(cmd[1:])}", flush=True)
    start = time.time()
    with (work / "train.log").open("a" if resume else "w") as log:
        done = subprocess.run(cmd, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        raise SystemExit(f"training failed ({done.returncode}); see {work / 'train.log'}")
    seconds = math.nan if resume else time.time() - start  # a resumed run's time is partial
    stamp.write_text(f"{seconds:.1f}\n")
    return seconds


def fusion_function(name: str, checkpoint: Path | None) -> Callable:
    import torch

    rules = {"ir": lambda a, b: a, "vis": lambda a, b: b, "mean": lambda a, b: (a + b) / 2,
             "max": torch.maximum}
    if name in rules:
        return rules[name]
    from projects.tdfusion.tdfusion import load_fusion_checkpoint

    net = load_fusion_checkpoint(checkpoint).eval()
    return lambda a, b: net(a, b)


def evaluate_row(fuse: Callable, data: Mapping, args: argparse.Namespace) -> dict:
    """Fusion metrics at full resolution and the retrained detector, per group."""
    import torch

    from learnable_fusion_loss.metrics import fusion_metrics
    from projects.tdfusion.tdfusion.protocol import (
        day_night_groups,
        evaluate_detector,
        fuse_split,
        train_detector,
    )

    start = time.time()
    full = data["full"]
    with torch.no_grad():
        fused = torch.cat([fuse(full["source_a"][i:i + 2], full["source_b"][i:i + 2]).clamp(0, 1)
                           for i in range(0, full["source_a"].shape[0], 2)])
    values = fusion_metrics(fused, full["source_a"], full["source_b"], FUSION_KEYS)
    groups = day_night_groups(full["ids"])
    result: dict[str, dict[str, float]] = {
        g: {k: float(v[idx].mean()) for k, v in values.items()} for g, idx in groups.items()}
    fusion_seconds = time.time() - start
    start = time.time()
    train_images = fuse_split(fuse, data["train"])
    test_images = fuse_split(fuse, data["test"])
    detector = train_detector(train_images, data["train"].targets, args.det_steps,
                              batch_size=args.det_batch, lr=args.det_lr, seed=args.det_seed,
                              log=lambda m: print("   ", m, flush=True))
    task = evaluate_detector(detector, test_images, data["test"])
    for group, metrics in task.items():
        result[group].update({k: metrics[k] for k in ("mAP50", "mAP50-95", "mAP75")})
    return {"metrics": result, "seconds": {"fusion_metrics": fusion_seconds,
                                           "detector": time.time() - start}}


def load_test_pairs(root: Path) -> dict:
    """The ``msrs_det`` test pairs at their own size: ``{"ids", "source_a", "source_b"}``."""
    import torch

    from learnable_fusion_loss.datasets import YoloPairedDetDataset

    test = YoloPairedDetDataset(root=str(root), split="test", pipeline=[])
    samples = [test[i] for i in range(len(test))]
    return {"ids": [s["img_id"] for s in samples],
            "source_a": torch.stack([s["source_a"] for s in samples]),
            "source_b": torch.stack([s["source_b"] for s in samples])}


def load_data(args: argparse.Namespace) -> dict:
    from projects.tdfusion.tdfusion.protocol import load_det_split

    root = Path(args.data_root) / "msrs_det"
    return {
        "full": load_test_pairs(root),
        "train": load_det_split(root, "train", args.det_size),
        "test": load_det_split(root, "test", args.det_size),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work-root", default="work_dirs/tdfusion_results_cpu", type=Path)
    parser.add_argument("--out", default="projects/tdfusion/results_cpu.md", type=Path)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--det-steps", type=int, default=800, help="detector steps per row")
    parser.add_argument("--det-batch", type=int, default=8)
    parser.add_argument("--det-lr", type=float, default=2e-3)
    parser.add_argument("--det-seed", type=int, default=0, help="the detector's seed, every row")
    parser.add_argument("--det-size", nargs=2, type=int, default=[256, 320], metavar=("H", "W"))
    parser.add_argument("--data-root", default=os.environ.get("LFL_DATA_ROOT", str(REPO_ROOT.parent / "shared" / "data")))
    parser.add_argument("--cfg-options", nargs="+", default=[], help="passed to tools/train.py")
    args = parser.parse_args(argv)
    if "tdfusion" not in args.methods:
        parser.error("--methods must include 'tdfusion' (the method the tables compare)")
    if args.det_steps < 1 or args.det_batch < 1:
        parser.error("--det-steps and --det-batch must be >= 1")
    if len(set(args.seeds)) != len(args.seeds):
        parser.error(f"--seeds must be distinct, got {args.seeds}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Read the paper's tables first: a missing or changed reference file must stop the
    # run before hours of training, not when the Markdown is written at the end.
    try:
        paper = paper_numbers()
    except PaperTablesError as error:
        raise SystemExit(f"error: {error}") from None
    from learnable_fusion_loss import compat

    compat.apply_offline_defaults()
    compat.patch_mmengine_checkpoint_loading()
    timings: dict[str, float] = {}
    data = load_data(args)
    rows_dir = args.work_root / "rows"
    rows_dir.mkdir(parents=True, exist_ok=True)
    per_seed: dict[str, list[dict]] = {}
    # The method's first seed, the baselines, then the remaining seeds (each trained,
    # then evaluated), so that a first comparison is there early.
    rows = [("tdfusion", args.seeds[0])] + [(name, None) for name in BASELINES] + [
        (name, seed) for name in args.methods for seed in args.seeds
        if (name, seed) != ("tdfusion", args.seeds[0])]
    for name, seed in rows:
        key = name if seed is None else f"{name}_seed{seed}"
        cache = rows_dir / f"{key}.json"
        if cache.is_file():
            record = json.loads(cache.read_text())
        else:
            checkpoint, seconds = None, None
            if seed is not None:
                work = args.work_root / key
                seconds = train_run(name, METHODS[name][0], seed, work, args.cfg_options)
                checkpoint = Path((work / "last_checkpoint").read_text().strip())
            print(f"[{key}] fusion metrics and a fresh detector", flush=True)
            record = evaluate_row(fusion_function(name, checkpoint), data, args)
            record["checkpoint"] = None if checkpoint is None else str(checkpoint)
            if seconds is not None:
                record["seconds"] = {"train": seconds, **record["seconds"]}
            cache.write_text(json.dumps(record, indent=2) + "\n")
        for part, seconds in record["seconds"].items():
            timings[f"{key}: {part.replace('_', ' ')}"] = seconds
        per_seed.setdefault(name, []).append(record["metrics"])
    order = list(args.methods) + list(BASELINES)
    stats = {name: row_stats(per_seed[name]) for name in order}
    labels = {**{n: METHODS[n][1] for n in args.methods}, **BASELINES}
    seeds = {name: len(per_seed[name]) for name in order}
    setup = {"command": "python tools/tdfusion_results.py " + " ".join(argv if argv is not None else sys.argv[1:]),
             "commit": _git_commit(), "seeds": args.seeds, "det_steps": args.det_steps,
             "det_batch": args.det_batch, "det_size": args.det_size, "det_lr": args.det_lr,
             "det_seed": args.det_seed}
    markdown = build_markdown(stats, labels, seeds, setup, timings,
                              ablation="ablation1" if "ablation1" in args.methods else None,
                              paper=paper)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(markdown)
    record = {"setup": setup, "per_seed": per_seed,
              "summary": {n: {g: {k: list(v) for k, v in s[g].items()} for g in GROUPS}
                          for n, s in stats.items()},
              "goals": [dict(goal=g, met=m, evidence=e) for g, m, e in
                        goals(stats, "tdfusion", "ablation1" if "ablation1" in args.methods else None)],
              "timings": timings}
    args.out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    print(markdown)
    print(f"written: {args.out} and {args.out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
