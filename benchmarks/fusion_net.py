"""Forward time of ReFusionNet (F) and TDFusionLPN (G) on one 640×480 MSRS pair.

CPU, ``torch.set_num_threads(2)`` (``--threads``), inference mode, median of
``--repeats`` runs after one warm-up. Baseline: the plain NCHW implementation of
the same architectures in ``tests/_reference_nets.py`` (the public code's
structure: hand-written layer norm, per-head reshapes), loaded with the same
weights; the table also gives the largest output difference between the two.
A GPU row is added when CUDA is available.

    python benchmarks/fusion_net.py [--repeats 7] [--reference-repeats 3] [--threads 2]

Prints a Markdown table and writes ``benchmarks/results/fusion_net.json`` (atomically).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # projects.tdfusion.tdfusion
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _common import (  # noqa: E402
    RESULTS,
    machine,
    markdown_table,
    median_time,
    msrs_pair,
    write_json_atomic,
)
from _reference_nets import ReferenceLPN, ReferenceReFusion  # noqa: E402

from projects.tdfusion.tdfusion import ReFusionNet, TDFusionLPN, load_official_state_dict  # noqa: E402

NETWORKS = {
    "ReFusionNet (F)": (ReFusionNet, ReferenceReFusion),
    "TDFusionLPN (G)": (TDFusionLPN, ReferenceLPN),
}


def cpu_seconds(fn, repeats: int) -> float:
    """Median process CPU time of ``fn`` (after the warm-up done by the wall-clock timing)."""
    times = []
    for _ in range(repeats):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--reference-repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-reference", action="store_true", help="skip the slow baseline")
    parser.add_argument("--out", type=Path, default=RESULTS / "fusion_net.json")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    a, b, stem = msrs_pair(0)
    load_before = os.getloadavg()
    rows, records = [], []
    for name, (fast_cls, ref_cls) in NETWORKS.items():
        torch.manual_seed(0)
        reference = ref_cls().eval()
        fast = load_official_state_dict(fast_cls().eval(), reference.state_dict())
        with torch.inference_mode():
            fast_out = fast(a, b)
            fast_median, fast_times = median_time(lambda: fast(a, b), args.repeats)
            fast_cpu = cpu_seconds(lambda: fast(a, b), max(1, args.repeats // 2))
            record = {
                "network": name,
                "input": [list(a.shape), stem],
                "fast_cpu_median_s": fast_median,
                "fast_cpu_times_s": fast_times,
                "fast_process_cpu_s": fast_cpu,
            }
            if not args.no_reference:
                max_diff = (reference(a, b) - fast_out).abs().max().item()
                ref_median, ref_times = median_time(
                    lambda: reference(a, b), args.reference_repeats, 0
                )
                record.update(
                    reference_cpu_median_s=ref_median,
                    reference_cpu_times_s=ref_times,
                    speedup=ref_median / fast_median,
                    max_abs_diff=max_diff,
                )
            if torch.cuda.is_available():
                ga, gb = a.cuda(), b.cuda()
                fast_gpu = fast.cuda()

                def gpu_call() -> None:
                    fast_gpu(ga, gb)
                    torch.cuda.synchronize()

                record["fast_gpu_median_s"] = median_time(gpu_call, args.repeats, warmup=3)[0]
                fast.cpu()
        records.append(record)
        rows.append(
            [
                name,
                f"{record['fast_cpu_median_s']:.3f}",
                f"{record['fast_process_cpu_s']:.3f}",
                f"{record.get('reference_cpu_median_s', float('nan')):.3f}",
                f"{record.get('speedup', float('nan')):.1f}×",
                f"{record.get('max_abs_diff', float('nan')):.1e}",
                f"{record['fast_gpu_median_s'] * 1e3:.1f} ms"
                if "fast_gpu_median_s" in record
                else "–",
            ]
        )
        print(f"{name}: {record}", file=sys.stderr, flush=True)

    header = ["network", "fast CPU s (median)", "fast process CPU s", "plain NCHW CPU s",
              "speed-up", "max |Δ|", "GPU"]
    print(markdown_table(header, rows))
    payload = {
        "benchmark": "fusion_net",
        "settings": {"threads": args.threads, "repeats": args.repeats,
                     "reference_repeats": args.reference_repeats, "mode": "inference_mode",
                     "input": "one MSRS test pair, 1x1x480x640 each"},
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "machine": machine(),
        "results": records,
    }
    write_json_atomic(args.out, payload)
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    from learnable_fusion_loss.compat import keep_freed_memory

    keep_freed_memory()  # as tools/train.py does (see compat.keep_freed_memory)
    main()
