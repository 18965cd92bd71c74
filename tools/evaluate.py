#!/usr/bin/env python
"""Evaluate folders of fused images against their IR and VIS sources.

Usage::

    python tools/evaluate.py --ir DIR --vi DIR --fused DIR [--fused DIR2 ...]
                             [--names m1 m2 ...] [--convention mean|sum|both]
                             [--metrics EN SD ...] [--device cpu] --out DIR

For each method (one ``--fused`` folder, named by ``--names`` or the folder name)
every fused image is matched by file stem with ``--ir`` and ``--vi`` and scored
with :func:`learnable_fusion_loss.metrics.fusion_metrics` (8-bit grey levels; a
colour image is reduced to BT.601 luma). Written to ``--out``:

* ``<method>.csv`` — one row per image (per-source metrics get ``_mean`` and
  ``_sum`` columns with ``--convention both``);
* ``summary.md`` — the mean of each metric, methods side by side (one table per
  convention; ``↑``/``↓`` mark the better direction);
* ``summary.json`` — the same means, image counts and every failure.

A fused image without both sources, an unreadable file or a size mismatch is
reported (``FAILED <method>/<name>: <reason>``) and left out; the exit status is
1 if anything failed, 2 for a usage error.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

import torch  # noqa: E402

from learnable_fusion_loss.datasets import list_images, load_image  # noqa: E402
from learnable_fusion_loss.metrics import (  # noqa: E402
    ALL_METRICS,
    HIGHER_IS_BETTER,
    PER_SOURCE_METRICS,
    fusion_metrics,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ir", required=True, type=Path, help="folder of infrared sources")
    parser.add_argument("--vi", required=True, type=Path, help="folder of visible sources")
    parser.add_argument("--fused", required=True, type=Path, nargs="+", action="extend",
                        help="one folder of fused images per method (repeatable)")
    parser.add_argument("--names", nargs="+", default=None, help="method names (default: folder names)")
    parser.add_argument("--convention", choices=("mean", "sum", "both"), default="mean",
                        help="two-source convention: mean (TDFusion), sum (CDDFuse) or both")
    parser.add_argument("--metrics", nargs="+", default=list(ALL_METRICS),
                        help=f"subset of {' '.join(ALL_METRICS)}")
    parser.add_argument("--device", default="cpu", help="torch device for the metrics")
    parser.add_argument("--out", required=True, type=Path, help="output folder (created)")
    args = parser.parse_args(argv)
    names = args.names if args.names is not None else [p.resolve().name for p in args.fused]
    if len(names) != len(args.fused):
        parser.error(f"--names gives {len(names)} names for {len(args.fused)} --fused folders")
    if len(set(names)) != len(names):
        parser.error(f"method names must be unique, got {names} (use --names)")
    for name in names:
        if not name or os.sep in name or name in (".", ".."):
            parser.error(f"bad method name {name!r}")
    args.names = names
    lookup = {m.upper().replace("-", "_"): m for m in ALL_METRICS}
    unknown = [m for m in args.metrics if m.upper().replace("-", "_") not in lookup]
    if unknown:
        parser.error(f"unknown metric(s) {unknown}; choose from {list(ALL_METRICS)}")
    args.metrics = [lookup[m.upper().replace("-", "_")] for m in args.metrics]
    return args


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _batch(image: torch.Tensor, device: str) -> torch.Tensor:
    return image.unsqueeze(0).to(device=device, dtype=torch.float64)


def evaluate_method(
    folder: Path, ir: dict[str, Path], vi: dict[str, Path], metrics: list[str], device: str,
) -> tuple[list[dict[str, float | str]], list[str]]:
    """Per-image rows (metric values in the 'mean' convention) and failure messages."""
    fused_files, problems = list_images(folder)
    failures = list(problems)
    rows: list[dict[str, float | str]] = []
    for stem, path in sorted(fused_files.items()):
        if stem not in ir or stem not in vi:
            missing = [name for name, table in (("--ir", ir), ("--vi", vi)) if stem not in table]
            failures.append(f"{stem}: no source image with stem {stem!r} in {' and '.join(missing)}")
            continue
        try:
            fused, a, b = load_image(path), load_image(ir[stem]), load_image(vi[stem])
        except (OSError, ValueError) as error:
            failures.append(f"{stem}: unreadable file: {error}")
            continue
        sizes = [(role, p.name, tuple(t.shape[-2:]))
                 for role, p, t in (("fused", path, fused), ("ir", ir[stem], a), ("vi", vi[stem], b))]
        if len({size for _, _, size in sizes}) > 1:
            listed = ", ".join(f"{role} {name} {s[1]}x{s[0]}" for role, name, s in sizes)
            failures.append(f"{stem}: size mismatch: {listed} (W x H)")
            continue
        try:
            values = fusion_metrics(_batch(fused, device), _batch(a, device), _batch(b, device),
                                    metrics=metrics, convention="mean")
        except ValueError as error:
            failures.append(f"{stem}: {error}")
            continue
        rows.append({"image": path.name, **{k: float(v[0]) for k, v in values.items()}})
    return rows, failures


def _columns(metrics: list[str], conventions: list[str]) -> list[tuple[str, str, float]]:
    """(column name, metric, factor from the 'mean' value)."""
    columns = []
    for metric in metrics:
        if metric in PER_SOURCE_METRICS and len(conventions) == 2:
            columns += [(f"{metric}_mean", metric, 1.0), (f"{metric}_sum", metric, 2.0)]
        elif metric in PER_SOURCE_METRICS and conventions == ["sum"]:
            columns.append((metric, metric, 2.0))
        else:
            columns.append((metric, metric, 1.0))
    return columns


def _fmt(value: float) -> str:
    return "nan" if math.isnan(value) else f"{value:.4f}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for flag, folder in [("--ir", args.ir), ("--vi", args.vi)] + [("--fused", f) for f in args.fused]:
        if not folder.is_dir():
            print(f"error: {flag} folder not found: {str(folder)!r}", file=sys.stderr)
            return 2
    conventions = ["mean", "sum"] if args.convention == "both" else [args.convention]
    ir, ir_problems = list_images(args.ir)
    vi, vi_problems = list_images(args.vi)
    for message in ir_problems + vi_problems:
        print(f"warning: {message}", file=sys.stderr)

    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        tqdm = None  # type: ignore[assignment]

    means: dict[str, dict[str, dict[str, float]]] = {c: {} for c in conventions}
    counts: dict[str, int] = {}
    all_failures: dict[str, list[str]] = {}
    columns = _columns(args.metrics, conventions)
    methods = list(zip(args.names, args.fused, strict=True))
    iterator = tqdm(methods, desc="methods", unit="method", file=sys.stderr) if tqdm else methods
    for name, folder in iterator:
        rows, failures = evaluate_method(folder, ir, vi, args.metrics, args.device)
        all_failures[name] = failures
        for message in failures:
            print(f"FAILED {name}/{message}", file=sys.stderr)
        counts[name] = len(rows)
        lines = [["image"] + [c[0] for c in columns]]
        for row in rows:
            lines.append([str(row["image"])] + [repr(float(row[m]) * f) for _, m, f in columns])
        with tempfile.TemporaryFile("w+", newline="") as buffer:
            csv.writer(buffer).writerows(lines)
            buffer.seek(0)
            _atomic_write(args.out / f"{name}.csv", buffer.read())
        for convention in conventions:
            table = {}
            for metric in args.metrics:
                factor = 2.0 if (metric in PER_SOURCE_METRICS and convention == "sum") else 1.0
                values = [float(r[metric]) * factor for r in rows]
                table[metric] = sum(values) / len(values) if values else float("nan")
            means[convention][name] = table

    md = ["# Fusion metrics", ""]
    md.append(f"Sources: IR `{args.ir}`, VIS `{args.vi}`. Mean over the images of each method; "
              "8-bit grey levels; ↑ higher is better, ↓ lower is better.")
    for convention in conventions:
        md += ["", f"## Convention `{convention}` "
               f"({'mean over the two sources, as TDFusion' if convention == 'mean' else 'sum over the two sources, as CDDFuse'})",
               ""]
        header = ["method", "images"] + [f"{m} {'↑' if HIGHER_IS_BETTER[m] else '↓'}" for m in args.metrics]
        md.append("| " + " | ".join(header) + " |")
        md.append("|" + "---|" * len(header))
        for name in args.names:
            cells = [name, str(counts[name])] + [_fmt(means[convention][name][m]) for m in args.metrics]
            md.append("| " + " | ".join(cells) + " |")
    failed_total = sum(len(v) for v in all_failures.values())
    if failed_total:
        md += ["", f"{failed_total} image(s) could not be evaluated; see summary.json."]
    _atomic_write(args.out / "summary.md", "\n".join(md) + "\n")
    summary = {
        "ir": str(args.ir), "vi": str(args.vi),
        "methods": {name: str(folder) for name, folder in methods},
        "metrics": args.metrics,
        "images": counts,
        "means": {c: {n: {m: (None if math.isnan(v) else v) for m, v in t.items()}
                      for n, t in means[c].items()} for c in conventions},
        "failures": all_failures,
    }
    _atomic_write(args.out / "summary.json", json.dumps(summary, indent=2) + "\n")
    print("\n".join(md))
    print(f"\nevaluated {sum(counts.values())} image(s) of {len(methods)} method(s); "
          f"{failed_total} failed; results in {str(args.out)!r}")
    return 1 if failed_total else 0


if __name__ == "__main__":
    from learnable_fusion_loss.compat import keep_freed_memory

    keep_freed_memory()  # every metric map is ~20 MB: reuse freed buffers instead of re-faulting them
    sys.exit(main())
