"""Why the fusion metrics are our own: torchmetrics and kornia against the evaluators.

For every metric where torchmetrics or kornia has a function of the same name, this
computes it on MSRS test triplets (IR, VIS luma, fused by the average rule) the way
a user would call it with the evaluators' settings, and reports how far it lands
from the evaluators' reference (``tests/_metric_reference.py``: sewar, scikit-image,
scikit-learn, scipy) and how long it takes, beside ours
(:func:`learnable_fusion_loss.metrics.fusion_metrics`, ``mean`` convention).

    python benchmarks/metric_libraries.py [--pairs 8] [--threads 2] [--out FILE]

``--pairs N``: values and the libraries' times come from the first N triplets,
times are scaled to all 60; ours is timed on all 60. Writes
``benchmarks/results/metric_libraries.json`` atomically.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _common import RESULTS, machine, markdown_table, write_json_atomic  # noqa: E402
from metrics import load_msrs  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from learnable_fusion_loss.metrics import fusion_metrics  # noqa: E402

Pair = Callable[[torch.Tensor, torch.Tensor], float]  # (fused, source) -> value, [1, 1, H, W] float64 levels


def _library_functions() -> list[tuple[str, str, Pair]]:
    """(metric, library call, fn(fused, source)); the two-source mean is taken outside."""
    import kornia
    import torchmetrics.functional.image as tmi
    from torchmetrics.functional import pearson_corrcoef
    from torchmetrics.functional.clustering import mutual_info_score

    return [
        ("VIF", "torchmetrics visual_information_fidelity(sigma_n_sq=2)",
         lambda f, s: float(tmi.visual_information_fidelity(f, s, sigma_n_sq=2.0))),
        ("SSIM", "torchmetrics structural_similarity_index_measure(uniform 7x7, data_range=255)",
         lambda f, s: float(tmi.structural_similarity_index_measure(
             f, s, gaussian_kernel=False, kernel_size=7, data_range=255.0))),
        ("SSIM", "kornia.metrics.ssim(window 7, max_val=255)",
         lambda f, s: float(kornia.metrics.ssim(f, s, 7, max_val=255.0).mean())),
        ("MS_SSIM", "torchmetrics multiscale_structural_similarity_index_measure(11, 1.5, relu)",
         lambda f, s: float(tmi.multiscale_structural_similarity_index_measure(
             f, s, data_range=255.0, kernel_size=11, sigma=1.5, normalize="relu"))),
        ("MI", "torchmetrics mutual_info_score(levels)",
         lambda f, s: float(mutual_info_score(s.flatten().long(), f.flatten().long()))),
        ("CC", "torchmetrics pearson_corrcoef",
         lambda f, s: float(pearson_corrcoef(f.flatten(), s.flatten()))),
    ]


def _reference_functions() -> dict[str, Callable[[np.ndarray, np.ndarray], float]]:
    import _metric_reference as reference

    missing = reference.missing_packages()
    if missing:
        raise SystemExit(f"the reference needs {missing}; install the test extras")
    # (source, fused) in the evaluators' argument order.
    return {"VIF": reference.vif, "SSIM": reference.ssim, "MS_SSIM": reference.ms_ssim,
            "MI": reference.mi, "CC": reference.corr}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=8, help="triplets for values and library times")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS / "metric_libraries.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from learnable_fusion_loss.compat import keep_freed_memory

    keep_freed_memory()  # as benchmarks/metrics.py and tools/evaluate.py do
    warnings.filterwarnings("ignore", category=UserWarning)  # torchmetrics' sparse-tensor notice

    stems, ir, vi = load_msrs()
    fused = np.round((ir + vi) / 2)
    n, k = len(stems), min(max(args.pairs, 1), len(stems))
    to_t = lambda x: torch.from_numpy(x)[None, None]  # noqa: E731
    reference = _reference_functions()

    # ---- ours: each metric alone on all triplets (after a warm-up), batch 4
    levels = lambda x: torch.from_numpy(x / 255.0).unsqueeze(1)  # noqa: E731
    t_f, t_a, t_b = levels(fused), levels(ir), levels(vi)
    fusion_metrics(t_f[:1], t_a[:1], t_b[:1])
    ours_time, ours_values = {}, {}
    for name in reference:
        start = time.perf_counter()
        values = [fusion_metrics(t_f[i:i + 4], t_a[i:i + 4], t_b[i:i + 4], metrics=(name,))[name]
                  for i in range(0, n, 4)]
        ours_time[name] = time.perf_counter() - start
        ours_values[name] = torch.cat(values)[:k].numpy()

    expected = {name: np.array([(fn(ir[i], fused[i]) + fn(vi[i], fused[i])) / 2 for i in range(k)])
                for name, fn in reference.items()}

    rows, records = [], []
    for metric, call, fn in _library_functions():
        fn(to_t(fused[0]), to_t(ir[0]))  # warm-up
        start = time.perf_counter()
        values = np.array([(fn(to_t(fused[i]), to_t(ir[i])) + fn(to_t(fused[i]), to_t(vi[i]))) / 2
                           for i in range(k)])
        library_time = (time.perf_counter() - start) * n / k
        rel = float(np.max(np.abs(values - expected[metric]) / np.abs(expected[metric])))
        ours_rel = float(np.max(np.abs(ours_values[metric] - expected[metric]) / np.abs(expected[metric])))
        rows.append([metric, call, f"{rel:.1e}", f"{ours_rel:.1e}", f"{library_time:.2f}",
                     f"{ours_time[metric]:.3f}", f"{library_time / ours_time[metric]:.0f}x"])
        records.append({"metric": metric, "library": call, "max_relative_difference": rel,
                        "ours_max_relative_difference": ours_rel, "library_seconds": library_time,
                        "ours_seconds": ours_time[metric]})

    print(f"\n## torchmetrics / kornia vs the evaluators' reference on MSRS test ({k} triplets for values; "
          f"times for {n}, {args.threads} thread(s))")
    print(markdown_table(["metric", "library call", "library: max rel. diff", "ours: max rel. diff",
                          "library [s]", "ours [s]", "ours faster"], rows))
    write_json_atomic(args.out, {
        "benchmark": "torchmetrics/kornia fusion-metric equivalents vs the evaluators' reference",
        "data": f"msrs_det test, fused = round((IR + VIS_luma) / 2); values on {k} triplets, "
                f"library times scaled to {n}, ours timed on {n}",
        "machine": machine(),
        "threads": args.threads,
        "results": records,
    })
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
