#!/usr/bin/env python
"""Evaluate folders of fused images against their IR and VIS sources.

Usage::

    python tools/evaluate.py --ir DIR --vi DIR --fused DIR [--fused DIR2 ...]
                             [--names m1 m2 ...] [--convention mean|sum|both]
                             [--metrics EN SD ...] [--device cpu] --out DIR [--overwrite]

For each method (one ``--fused`` folder, named by ``--names`` or the folder name)
every fused image is matched by file stem with ``--ir`` and ``--vi`` and scored
with :func:`learnable_fusion_loss.metrics.fusion_metrics` (8-bit grey levels; a
colour image is reduced to BT.601 luma). Written to ``--out``:

* ``<method>.csv`` — one row per image (per-source metrics get ``_mean`` and
  ``_sum`` columns with ``--convention both``);
* ``summary.md`` — the mean of each metric, methods side by side (one table per
  convention; ``↑``/``↓`` mark the better direction);
* ``summary.json`` — the same means, image counts, the number of defined values
  per metric, every undefined value and every failure.

A metric can be undefined for one image (CC or SCD of a constant image is 0/0):
that value is reported per image (``undefined <method>/<image>: CC = nan``), kept
as ``nan`` in the CSV and left out of the mean, which is taken over the defined
values and shown with their count where that is not every image (``0.4321 (3/4)``).

A fused image without both sources, an unreadable file, a size mismatch or a
metric computation that fails (out of memory included) is reported
(``FAILED <method>/<name>: <reason>``) and left out; the other images and methods
are still scored. The exit status is 1 if anything failed, 2 for a usage error,
found before any metric is computed: a missing or empty folder (nothing to
evaluate), ``--out`` equal to a source or fused folder, an ``--out`` that is a file
or cannot be created or written, or output files that already exist there
(``--overwrite`` replaces them). Outputs are written atomically, with the mode a
plain ``open()`` gives (0666 less the umask).
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
from learnable_fusion_loss.datasets.io import (  # noqa: E402
    new_file_mode,
    output_folder_problem,
    prepare_output_folder,
)
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
    parser.add_argument("--overwrite", action="store_true",
                        help="replace summary.md, summary.json and <method>.csv if --out holds them")
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
        os.fchmod(fd, new_file_mode())  # mkstemp's 0600 would make the results private
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
    fused_files: dict[str, Path] | None = None, problems: list[str] | None = None,
) -> tuple[list[dict[str, float | str]], list[str]]:
    """Per-image rows (metric values in the 'mean' convention) and failure messages.

    ``fused_files``/``problems``: the folder's listing, if already made. Every image
    is scored on its own: whatever goes wrong with one (an unreadable file, a size
    mismatch, an error or out-of-memory inside a metric) becomes one failure line,
    and the other images and methods are still scored.
    """
    if fused_files is None:
        fused_files, problems = list_images(folder)
    failures = list(problems or [])
    rows: list[dict[str, float | str]] = []
    for stem, path in sorted(fused_files.items()):
        if stem not in ir or stem not in vi:
            missing = [name for name, table in (("--ir", ir), ("--vi", vi)) if stem not in table]
            failures.append(f"{stem}: no source image with stem {stem!r} in {' and '.join(missing)}")
            continue
        try:
            fused, a, b = load_image(path), load_image(ir[stem]), load_image(vi[stem])
        except (OSError, ValueError, MemoryError) as error:
            failures.append(f"{stem}: unreadable file: {error}")
            continue
        sizes = [(role, p, tuple(t.shape[-2:]))
                 for role, p, t in (("fused", path, fused), ("ir", ir[stem], a), ("vi", vi[stem], b))]
        if len({size for _, _, size in sizes}) > 1:
            listed = ", ".join(f"{role} {str(p)!r} {s[1]}x{s[0]}" for role, p, s in sizes)
            failures.append(f"{stem}: size mismatch: {listed} (W x H)")
            continue
        try:
            values = fusion_metrics(_batch(fused, device), _batch(a, device), _batch(b, device),
                                    metrics=metrics, convention="mean")
        except ValueError as error:
            failures.append(f"{stem}: {error}")
            continue
        except Exception as error:  # noqa: BLE001 - out of memory and the like: this image only
            failures.append(f"{stem}: metrics failed on {str(path)!r}: "
                            f"{type(error).__name__}: {error}")
            if torch.cuda.is_available():
                torch.cuda.empty_cache()  # give the next image the memory back
            continue
        rows.append({"image": path.name, **{k: float(v[0]) for k, v in values.items()}})
    return rows, failures


def defined_mean(values: list[float]) -> tuple[float, int]:
    """Mean of the finite values and how many there are; ``(nan, 0)`` when none is."""
    finite = [v for v in values if math.isfinite(v)]
    return (sum(finite) / len(finite) if finite else float("nan")), len(finite)


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
    return "n/a" if math.isnan(value) else f"{value:.4f}"


def _cell(value: float, defined: int, images: int) -> str:
    """The mean, with ``(defined/images)`` where some images had no defined value."""
    return _fmt(value) if defined == images else f"{_fmt(value)} ({defined}/{images})"


def _usage_problem(args: argparse.Namespace) -> str | None:
    """A usage error found before any image is read, or None."""
    sources = [("--ir", args.ir), ("--vi", args.vi)] + [("--fused", f) for f in args.fused]
    for flag, folder in sources:
        if not folder.is_dir():
            return f"{flag} folder not found: {str(folder)!r}"
    problem = output_folder_problem(args.out, sources)
    if problem:
        return problem
    outputs = [f"{name}.csv" for name in args.names] + ["summary.md", "summary.json"]
    present = [name for name in outputs if (args.out / name).exists()]
    blocked = [name for name in present if not (args.out / name).is_file()]
    if blocked:
        return f"--out {str(args.out)!r}: {', '.join(blocked)} exist(s) and is not a file"
    if present and not args.overwrite:
        return (f"--out {str(args.out)!r} already holds {', '.join(present)} "
                "(pass --overwrite to replace them, or choose another folder)")
    return None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    problem = _usage_problem(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    conventions = ["mean", "sum"] if args.convention == "both" else [args.convention]
    ir, ir_problems = list_images(args.ir)
    vi, vi_problems = list_images(args.vi)
    fused_lists = [list_images(folder) for folder in args.fused]
    # Nothing to do is an error, not a table of nan with exit 0.
    found = [("--ir", args.ir, ir), ("--vi", args.vi, vi)]
    found += [("--fused", f, files) for f, (files, _) in zip(args.fused, fused_lists, strict=True)]
    empty = [f"{flag} {str(folder)!r}" for flag, folder, files in found if not files]
    if empty:
        print(f"error: nothing to evaluate: {', '.join(empty)} hold(s) no image files",
              file=sys.stderr)
        return 2
    # Before the first metric: an --out that cannot be written is found now, not at the end.
    problem = prepare_output_folder(args.out)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    for message in ir_problems + vi_problems:
        print(f"warning: {message}", file=sys.stderr)

    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        tqdm = None  # type: ignore[assignment]

    means: dict[str, dict[str, dict[str, float]]] = {c: {} for c in conventions}
    defined: dict[str, dict[str, int]] = {}
    undefined: dict[str, dict[str, dict[str, float | None]]] = {}
    counts: dict[str, int] = {}
    all_failures: dict[str, list[str]] = {}
    columns = _columns(args.metrics, conventions)
    methods = list(zip(args.names, args.fused, strict=True))
    jobs = list(zip(methods, fused_lists, strict=True))
    iterator = tqdm(jobs, desc="methods", unit="method", file=sys.stderr) if tqdm else jobs

    def say(message: str) -> None:
        """A line on stderr that does not break the progress bar."""
        if tqdm:
            tqdm.write(message, file=sys.stderr)
        else:
            print(message, file=sys.stderr)

    for (name, folder), (files, problems) in iterator:
        rows, failures = evaluate_method(folder, ir, vi, args.metrics, args.device, files, problems)
        all_failures[name] = failures
        for message in failures:
            say(f"FAILED {name}/{message}")
        counts[name] = len(rows)
        undefined[name] = {}
        for row in rows:
            bad = {m: float(row[m]) for m in args.metrics if not math.isfinite(float(row[m]))}
            if bad:
                # JSON has no nan: null stands for it, an infinity keeps its sign.
                undefined[name][str(row["image"])] = {
                    m: None if math.isnan(v) else v for m, v in bad.items()}
                listed = ", ".join(f"{m} = {v}" for m, v in bad.items())
                say(f"undefined {name}/{row['image']}: {listed} (left out of the mean)")
        lines = [["image"] + [c[0] for c in columns]]
        for row in rows:
            lines.append([str(row["image"])] + [repr(float(row[m]) * f) for _, m, f in columns])
        with tempfile.TemporaryFile("w+", newline="") as buffer:
            csv.writer(buffer).writerows(lines)
            buffer.seek(0)
            _atomic_write(args.out / f"{name}.csv", buffer.read())
        defined[name] = {}
        for convention in conventions:
            table = {}
            for metric in args.metrics:
                factor = 2.0 if (metric in PER_SOURCE_METRICS and convention == "sum") else 1.0
                table[metric], defined[name][metric] = defined_mean(
                    [float(r[metric]) * factor for r in rows])
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
            cells = [name, str(counts[name])] + [
                _cell(means[convention][name][m], defined[name][m], counts[name])
                for m in args.metrics]
            md.append("| " + " | ".join(cells) + " |")
    undefined_total = sum(len(v) for v in undefined.values())
    if undefined_total:
        md += ["", f"{undefined_total} image(s) have an undefined metric value (e.g. CC of a "
               "constant image): `x (n/N)` is the mean over the n of N images where it is "
               "defined, `n/a` where it is defined for none; see summary.json."]
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
        "defined": defined,
        "undefined": undefined,
        "failures": all_failures,
    }
    _atomic_write(args.out / "summary.json", json.dumps(summary, indent=2) + "\n")
    print("\n".join(md))
    print(f"\nevaluated {sum(counts.values())} image(s) of {len(methods)} method(s); "
          f"{failed_total} failed; {undefined_total} with undefined values; "
          f"results in {str(args.out)!r}")
    return 1 if failed_total else 0


if __name__ == "__main__":
    from learnable_fusion_loss.compat import keep_freed_memory

    keep_freed_memory()  # every metric map is ~20 MB: reuse freed buffers instead of re-faulting them
    sys.exit(main())
