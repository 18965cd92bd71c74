"""Tiled fusion (``tools/fuse.py --tile``) against the whole-image pass: difference and memory.

Quality: the zoo model ``tdfusion_msrsdet_cpu`` (TDFusion's F, whose Restormer
blocks use channel attention over the whole input) on ``--pairs`` MSRS test pairs
at 640×480, for several tile sizes and overlaps: the mean and largest absolute
difference from the whole-image pass (8-bit grey levels), the PSNR between the
two, and the *seam* ratio: the mean absolute step between neighbouring pixels
across core boundaries in the tiled output over the same in the whole-image
output (1.0 = no visible seam).

Memory: the peak resident memory (Linux ``VmHWM``, reset just before fusing) of a
child process that fuses one ``--size`` pair (an MSRS pair resized) whole, and
tiled, measured in the same run, beside its resident memory before fusing.

    python benchmarks/tiled_fusion.py [--pairs 10] [--size 2400x1800] [--threads 2]

Prints Markdown tables and writes ``benchmarks/results/tiled_fusion.json`` (atomically).
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _common import RESULTS, machine, markdown_table, msrs_pair, write_json_atomic  # noqa: E402

from learnable_fusion_loss.apis import fuse_tensors, fuse_tiled, load_fusion_network  # noqa: E402

MODEL = "tdfusion_msrsdet_cpu"
SETTINGS = ((64, 16), (128, 16), (128, 32), (256, 32), (256, 64))


def _boundary_step(image: torch.Tensor, tile: int) -> float:
    """Mean |step| between the pixels on either side of every core boundary."""
    steps = []
    for x in range(tile, image.shape[-1], tile):
        steps.append((image[..., x] - image[..., x - 1]).abs().flatten())
    for y in range(tile, image.shape[-2], tile):
        steps.append((image[..., y, :] - image[..., y - 1, :]).abs().flatten())
    return float(torch.cat(steps).mean())


def quality(pairs: int) -> list[dict]:
    net = load_fusion_network(MODEL)
    rows: dict[tuple[int, int], dict[str, list[float]]] = {s: {"mean": [], "max": [], "mse": [], "seam": []}
                                                          for s in SETTINGS}
    for index in range(pairs):
        ir, vi, _ = msrs_pair(index)
        whole = fuse_tensors(net, ir, vi) * 255
        for tile, overlap in SETTINGS:
            tiled = fuse_tiled(net, ir, vi, tile=tile, overlap=overlap) * 255
            diff = (tiled - whole).abs()
            row = rows[(tile, overlap)]
            row["mean"].append(float(diff.mean()))
            row["max"].append(float(diff.max()))
            row["mse"].append(float((diff ** 2).mean()))
            row["seam"].append(_boundary_step(tiled, tile) / max(_boundary_step(whole, tile), 1e-12))
    out = []
    for (tile, overlap), row in rows.items():
        mse = sum(row["mse"]) / pairs
        out.append({
            "tile": tile, "overlap": overlap, "pairs": pairs,
            "mean_abs_diff": sum(row["mean"]) / pairs, "max_abs_diff": max(row["max"]),
            "psnr_db": 10 * math.log10(255 ** 2 / mse) if mse > 0 else math.inf,
            "seam_ratio": sum(row["seam"]) / pairs,
        })
    return out


_CHILD = """
import sys, time, torch, torch.nn.functional as F
sys.path.insert(0, {bench!r}); sys.path.insert(0, {repo!r})
from _common import msrs_pair
from learnable_fusion_loss.apis import fuse_tensors, fuse_tiled, load_fusion_network
torch.set_num_threads({threads})
net = load_fusion_network({model!r})
ir, vi, _ = msrs_pair(0)
ir, vi = (F.interpolate(x, size=({h}, {w}), mode="bilinear", align_corners=False) for x in (ir, vi))
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1])
with open("/proc/self/clear_refs", "w") as handle:  # reset the high-water mark (VmHWM)
    handle.write("5")
base = status("VmRSS")
start = time.perf_counter()
if {tile} is None:
    fuse_tensors(net, ir, vi)
else:
    fuse_tiled(net, ir, vi, tile={tile}, overlap={overlap})
print(base, status("VmHWM"), time.perf_counter() - start)
"""


def memory(size: tuple[int, int], threads: int) -> list[dict]:
    width, height = size
    rows = []
    for tile, overlap in ((None, 0), (512, 32), (256, 32)):
        code = _CHILD.format(bench=str(Path(__file__).resolve().parent), repo=str(RESULTS.parents[1]),
                             threads=threads, model=MODEL, h=height, w=width, tile=tile, overlap=overlap)
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        base_kb, peak_kb, seconds = done.stdout.split()
        rows.append({"mode": "whole" if tile is None else f"tile {tile}, overlap {overlap}",
                     "width": width, "height": height,
                     "peak_rss_mib": int(peak_kb) / 1024, "before_fusion_mib": int(base_kb) / 1024,
                     "seconds": float(seconds)})
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=10)
    parser.add_argument("--size", default="2400x1800", help="W x H of the memory test")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    size = tuple(int(v) for v in args.size.lower().split("x"))
    started = time.time()
    q = quality(args.pairs)
    m = memory(size, args.threads)  # type: ignore[arg-type]
    print(f"## Tiled vs whole-image fusion, {MODEL}, {args.pairs} MSRS test pairs at 640x480\n")
    print(markdown_table(
        ["tile", "overlap", "mean |diff| (grey levels)", "max |diff|", "PSNR (dB)", "seam ratio"],
        [[r["tile"], r["overlap"], f"{r['mean_abs_diff']:.2f}", f"{r['max_abs_diff']:.1f}",
          f"{r['psnr_db']:.1f}", f"{r['seam_ratio']:.2f}"] for r in q]))
    print(f"\n## Peak memory, one {size[0]}x{size[1]} pair, {args.threads} threads\n")
    print(markdown_table(
        ["mode", "peak RSS (MiB)", "resident before fusing (MiB)", "seconds"],
        [[r["mode"], f"{r['peak_rss_mib']:.0f}", f"{r['before_fusion_mib']:.0f}", f"{r['seconds']:.1f}"]
         for r in m]))
    payload = {"benchmark": "tiled_fusion", "model": MODEL, "machine": machine(),
               "seconds": time.time() - started, "quality": q, "memory": m}
    write_json_atomic(RESULTS / "tiled_fusion.json", payload)
    print(json.dumps({"written": str(RESULTS / "tiled_fusion.json")}))


if __name__ == "__main__":
    main()
