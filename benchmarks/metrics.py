"""Fusion-metric suite: torch implementation vs the numpy/scipy/sewar/skimage/sklearn reference.

On the 60 MSRS test triplets (IR, VIS luma, fused by the average rule), times every
metric of :func:`learnable_fusion_loss.metrics.fusion_metrics` and of the reference
in ``tests/_metric_reference.py`` (the one the exactness tests use), checks that the
values agree, and evaluates the trivial baselines (IR alone, VIS alone, average,
max) with every metric. Also times the whole suite once more on the torch path
alone (the compiled filters of ``metrics/native.py`` switched off).

    python benchmarks/metrics.py [--threads 2] [--batch 4] [--reference-pairs 60] [--out FILE]

Prints Markdown tables and writes ``benchmarks/results/metrics.json`` atomically.
``--reference-pairs N`` times (and checks) the reference on the first N triplets
only and scales its time to 60; the JSON records N.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _common import DATA_ROOT, RESULTS, machine, markdown_table, write_json_atomic  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from learnable_fusion_loss.metrics import (  # noqa: E402
    ALL_METRICS,
    HIGHER_IS_BETTER,
    PER_SOURCE_METRICS,
    fusion_metrics,
    native,
)


def grey_levels(path: Path) -> np.ndarray:
    """8-bit grey levels as the evaluators read a file (BT.601 luma, rounded)."""
    rgb = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64)
    return np.round(rgb @ np.array([0.299, 0.587, 0.114]))


def load_msrs(split: str = "test") -> tuple[list[str], np.ndarray, np.ndarray]:
    folder = DATA_ROOT / "msrs_det" / split
    stems = sorted(p.stem for p in (folder / "ir").glob("*.png"))
    if not stems:
        raise FileNotFoundError(f"no MSRS pairs under {folder}")
    ir = np.stack([grey_levels(folder / "ir" / f"{s}.png") for s in stems])
    vi = np.stack([grey_levels(folder / "vi" / f"{s}.png") for s in stems])
    return stems, ir, vi


def ours_suite(fused: torch.Tensor, a: torch.Tensor, b: torch.Tensor, batch: int,
               metrics: tuple[str, ...] = ALL_METRICS, convention: str = "mean") -> dict[str, torch.Tensor]:
    parts: dict[str, list[torch.Tensor]] = {m: [] for m in metrics}
    for start in range(0, fused.shape[0], batch):
        sl = slice(start, start + batch)
        out = fusion_metrics(fused[sl], a[sl], b[sl], metrics=metrics, convention=convention)
        for name, value in out.items():
            parts[name].append(value)
    return {name: torch.cat(values) for name, values in parts.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=4, help="triplets per fusion_metrics call")
    parser.add_argument("--reference-pairs", type=int, default=60)
    parser.add_argument("--out", type=Path, default=RESULTS / "metrics.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from learnable_fusion_loss.compat import keep_freed_memory

    keep_freed_memory()  # as tools/evaluate.py does (see compat.keep_freed_memory)

    import _metric_reference as reference

    missing = reference.missing_packages()
    if missing:
        raise SystemExit(f"the reference needs {missing}; install the test extras")

    stems, ir, vi = load_msrs()
    fused_avg = np.round((ir + vi) / 2)  # the average rule, saved as 8-bit
    to_t = lambda x: torch.from_numpy(x / 255.0).unsqueeze(1)  # noqa: E731
    t_f, t_a, t_b = to_t(fused_avg), to_t(ir), to_t(vi)
    n = len(stems)

    # ---- ours: whole suite in one call per batch, then each metric alone
    ours_suite(t_f[:1], t_a[:1], t_b[:1], 1)  # warm-up (allocator, lazy imports)
    start = time.perf_counter()
    ours = ours_suite(t_f, t_a, t_b, args.batch)
    ours_total = time.perf_counter() - start
    ours_each = {}
    for name in ALL_METRICS:
        start = time.perf_counter()
        ours_suite(t_f, t_a, t_b, args.batch, metrics=(name,))
        ours_each[name] = time.perf_counter() - start
    # The same suite without the compiled filters: what a machine without a C
    # compiler gets (and the path CUDA tensors take).
    compiled = native.unavailable_reason() is None
    with native.disabled():
        start = time.perf_counter()
        torch_path = ours_suite(t_f, t_a, t_b, args.batch)
        torch_path_total = time.perf_counter() - start
    torch_path_agreement = max(float(((torch_path[m] - ours[m]).abs() / ours[m].abs().clamp_min(1e-12)).max())
                               for m in ALL_METRICS)

    # ---- reference, one triplet at a time
    k = min(max(args.reference_pairs, 1), n)
    ref_time: dict[str, float] = {}
    ref_values = {name: [] for name in ALL_METRICS}
    for i in range(k):
        values = reference.reference_metrics(fused_avg[i], ir[i], vi[i], "mean", timings=ref_time)
        for name, value in values.items():
            ref_values[name].append(value)
    scale = n / k
    ref_total = sum(ref_time.values()) * scale

    rows = []
    agreement = {}
    for name in ALL_METRICS:
        ours_v = ours[name][:k].numpy()
        ref_v = np.asarray(ref_values[name])
        rel = np.abs(ours_v - ref_v) / np.maximum(np.abs(ref_v), 1e-12)
        agreement[name] = float(rel.max())
        rows.append([name, f"{ours_each[name]:.3f}", f"{ref_time[name] * scale:.2f}",
                     f"{ref_time[name] * scale / ours_each[name]:.1f}x", f"{agreement[name]:.1e}"])
    rows.append(["**whole suite**", f"{ours_total:.3f}", f"{ref_total:.2f}",
                 f"**{ref_total / ours_total:.1f}x**", f"{max(agreement.values()):.1e}"])
    print(f"\n## Metric suite on {n} MSRS test triplets (fused = average rule), "
          f"{args.threads} thread(s), batch {args.batch}")
    if k < n:
        print(f"(reference timed on {k} triplets and scaled to {n})")
    print(markdown_table(["metric", "ours [s]", "reference [s]", "speed-up", "max rel. diff"], rows))
    print(f"\nCompiled filters (metrics/native.py): {'used' if compiled else native.unavailable_reason()}. "
          f"Whole suite on the torch path alone: {torch_path_total:.3f} s "
          f"({ref_total / torch_path_total:.1f}x; max rel. diff to the compiled path {torch_path_agreement:.1e}).")

    # ---- baselines
    baselines = {
        "IR alone": t_a, "VIS alone": t_b,
        "average": t_f, "max": to_t(np.maximum(ir, vi)),
    }
    tables = {}
    for convention in ("mean", "sum"):
        tables[convention] = {}
        for label, fused in baselines.items():
            values = ours_suite(fused, t_a, t_b, args.batch, convention=convention)
            tables[convention][label] = {m: float(v.mean()) for m, v in values.items()}
    header = ["fused image"] + [f"{m} {'↑' if HIGHER_IS_BETTER[m] else '↓'}" for m in ALL_METRICS]
    for convention in ("mean", "sum"):
        print(f"\n## Trivial baselines on MSRS test ({n} pairs), convention `{convention}`")
        print(markdown_table(header, [[label] + [f"{tables[convention][label][m]:.4f}" for m in ALL_METRICS]
                                      for label in baselines]))
    print("\nSCD of 'IR alone' / 'VIS alone' is undefined (F − A is constant): NaN.")
    print(f"Per-source metrics ({', '.join(PER_SOURCE_METRICS)}) double from `mean` to `sum`.")

    write_json_atomic(args.out, {
        "benchmark": "fusion metric suite vs numpy/scipy/sewar/skimage/sklearn reference",
        "data": f"msrs_det test, {n} triplets, fused = round((IR + VIS_luma) / 2)",
        "machine": machine(),
        "threads": args.threads,
        "batch": args.batch,
        "reference_triplets_timed": k,
        "compiled_filters": compiled,
        "ours_seconds": {"total": ours_total, **ours_each},
        "ours_torch_path_seconds_total": torch_path_total,
        "torch_path_max_relative_difference": torch_path_agreement,
        "reference_seconds": {"total": ref_total, **{m: t * scale for m, t in ref_time.items()}},
        "speedup_total": ref_total / ours_total,
        "max_relative_difference": agreement,
        "baselines": {c: {label: {m: (None if np.isnan(v) else v) for m, v in row.items()}
                          for label, row in t.items()} for c, t in tables.items()},
        "load_average": list(__import__("os").getloadavg()),
    })
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
