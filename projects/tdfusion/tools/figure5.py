#!/usr/bin/env python
"""The paper's Figure 5 from our model: IR | VIS | fused | w_IR for 3 day and 3 night pairs.

    python projects/tdfusion/tools/figure5.py [--model tdfusion_msrsdet_cpu] \\
        [--out projects/tdfusion/figure5.png]

The pairs are the three day (``*D``) and three night (``*N``) ``msrs_det`` test pairs
with the most person boxes. F and G run at the pairs' 480×640; each panel is shown at
160×120. ``w_IR`` is drawn with the inferno colour map (black 0, yellow 1). Beside
the PNG, ``<out>.json`` gives the mean ``w_IR`` inside and outside the labelled boxes,
for day and night pairs over the whole test split: the numbers the README's sentence
on where G gives IR weight comes from.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO_ROOT))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from learnable_fusion_loss.apis import fuse_images  # noqa: E402
from learnable_fusion_loss.apis.zoo import load_zoo_module  # noqa: E402
from learnable_fusion_loss.datasets import YoloPairedDetDataset, load_image  # noqa: E402
from learnable_fusion_loss.engine.hooks import atomic_write_bytes  # noqa: E402
import projects.tdfusion.tdfusion  # noqa: E402,F401 - registers the nets and the zoo folder

TILE = (160, 120)  # W, H of one panel
COLUMNS = ("IR", "VIS", "fused", "w_IR")


def _rgb(image: torch.Tensor) -> np.ndarray:
    x = image.clamp(0, 1)
    if x.shape[0] == 1:
        x = x.expand(3, -1, -1)
    array = (x.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    return cv2.resize(array, TILE, interpolation=cv2.INTER_AREA)


def _weight(weight: torch.Tensor) -> np.ndarray:
    grey = (weight.clamp(0, 1).numpy() * 255).round().astype(np.uint8)
    coloured = cv2.applyColorMap(grey, cv2.COLORMAP_INFERNO)[:, :, ::-1]
    return cv2.resize(np.ascontiguousarray(coloured), TILE, interpolation=cv2.INTER_AREA)


def box_statistics(fusion_net, generator, dataset) -> dict:
    """Mean w_IR inside / outside the boxes, per day and night, over the split."""
    sums = {g: {"inside": [0.0, 0], "outside": [0.0, 0]} for g in ("day", "night")}
    for i in range(len(dataset)):
        sample = dataset[i]
        with torch.no_grad():
            w_ir = generator(sample["source_a"][None], sample["source_b"][None])[0, 0]
        mask = torch.zeros_like(w_ir, dtype=torch.bool)
        for x1, y1, x2, y2 in sample["bboxes"].round().long().tolist():
            mask[y1:y2, x1:x2] = True
        group = "night" if sample["img_id"].endswith("N") else "day"
        for part, where in (("inside", mask), ("outside", ~mask)):
            sums[group][part][0] += float(w_ir[where].sum())
            sums[group][part][1] += int(where.sum())
    return {g: {p: round(total / max(count, 1), 4) for p, (total, count) in parts.items()}
            for g, parts in sums.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="tdfusion_msrsdet_cpu", help="zoo model name")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "projects" / "tdfusion" / "figure5.png")
    parser.add_argument("--data-root", type=Path, default=REPO_ROOT.parent / "shared" / "data")
    args = parser.parse_args(argv)
    fusion_net = load_zoo_module(args.model, "fusion_net")
    generator = load_zoo_module(args.model, "generator")
    dataset = YoloPairedDetDataset(root=str(args.data_root / "msrs_det"), split="test", pipeline=[])
    people = {}
    for i in range(len(dataset)):
        sample = dataset[i]
        people[sample["img_id"]] = (int((sample["labels"] == 0).sum()), i)
    chosen = []
    for suffix in ("D", "N"):
        ranked = sorted((k for k in people if k.endswith(suffix)), key=lambda k: (-people[k][0], k))
        chosen += ranked[:3]
    rows = []
    for pair in chosen:
        sample = dataset[people[pair][1]]
        ir = load_image(sample["ir_path"])
        vi = load_image(sample["vi_path"])
        fused = fuse_images(fusion_net, ir, vi)  # colour: VIS chroma kept (YCrCb)
        with torch.no_grad():
            w_ir = generator(sample["source_a"][None], sample["source_b"][None])[0, 0]
        rows.append(np.concatenate([_rgb(ir), _rgb(vi), _rgb(fused), _weight(w_ir)], axis=1))
        cv2.putText(rows[-1], pair, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1,
                    cv2.LINE_AA)
    header = np.zeros((18, TILE[0] * len(COLUMNS), 3), np.uint8)
    for k, name in enumerate(COLUMNS):
        cv2.putText(header, name, (k * TILE[0] + 4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                    (255, 255, 255), 1, cv2.LINE_AA)
    figure = np.concatenate([header, *rows], axis=0)
    # 256 colours (octree, no dither): a quarter of the RGB PNG's bytes, no visible loss
    # at this size, so the committed figure stays small.
    palette = Image.fromarray(figure).quantize(256, method=Image.Quantize.FASTOCTREE,
                                               dither=Image.Dither.NONE)
    buffer = io.BytesIO()
    palette.save(buffer, format="PNG", optimize=True)
    png = buffer.getvalue()
    atomic_write_bytes(args.out, png)
    stats = {"model": args.model, "pairs": chosen, "mean_w_ir": box_statistics(fusion_net, generator, dataset)}
    atomic_write_bytes(args.out.with_suffix(".json"), (json.dumps(stats, indent=2) + "\n").encode())
    print(f"written {args.out} ({len(png)} bytes) and {args.out.with_suffix('.json')}: {stats['mean_w_ir']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
