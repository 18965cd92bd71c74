#!/usr/bin/env python
"""Export F and G of a TDFusion training run as a zoo model (``learnable_fusion_loss.apis.zoo``).

    python projects/tdfusion/tools/export_zoo.py CHECKPOINT --config CFG --seed S \\
        [--name tdfusion_msrsdet_cpu] [--results projects/tdfusion/results_cpu.json \\
        --row tdfusion_seed0] [--out projects/tdfusion/zoo]

Writes ``<out>/<name>/{fusion_net.pth, generator.pth, manifest.json}``: the two state
dicts (float32, ``torch.save``), their sha256, the config, seed and commit, the run's
row of the results JSON, and a reference output: one real ``msrs_det`` test pair fused
at 480×640, stored as 16×16 block means of the fused image and of ``w_IR`` that
``tests/test_zoo.py`` reproduces.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO_ROOT))

import torch  # noqa: E402

from learnable_fusion_loss import compat  # noqa: E402
from learnable_fusion_loss.apis.zoo import sha256_of  # noqa: E402
from learnable_fusion_loss.engine.hooks import atomic_write_bytes  # noqa: E402

#: The pair whose output the manifest stores (a night scene with people).
REFERENCE_PAIR = ("test", "00894N")


def reference_output(fusion_net: torch.nn.Module, generator: torch.nn.Module, data_root: Path) -> dict:
    """Block means (16×16 grid) of F's and G's outputs on :data:`REFERENCE_PAIR`."""
    from learnable_fusion_loss.datasets import YoloPairedDetDataset

    split, pair = REFERENCE_PAIR
    dataset = YoloPairedDetDataset(root=str(data_root / "msrs_det"), split=split, pipeline=[])
    sample = dataset[dataset.ids.index(pair)]
    a, b = sample["source_a"][None], sample["source_b"][None]
    with torch.no_grad():
        fused = fusion_net.eval()(a, b)
        weights = generator.eval()(a, b)
    pool = torch.nn.AdaptiveAvgPool2d(16)
    return {"split": split, "pair": pair, "size": list(a.shape[-2:]),
            "fused_blocks": pool(fused)[0, 0].round(decimals=6).tolist(),
            "w_ir_blocks": pool(weights[:, :1])[0, 0].round(decimals=6).tolist()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--config", required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--name", default="tdfusion_msrsdet_cpu")
    parser.add_argument("--results", type=Path, default=None, help="results JSON of tools/tdfusion_results.py")
    parser.add_argument("--row", default=None, help="the run's key in the results (e.g. tdfusion_seed0)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "projects" / "tdfusion" / "zoo")
    parser.add_argument("--data-root", type=Path, default=REPO_ROOT.parent / "shared" / "data")
    args = parser.parse_args(argv)
    from projects.tdfusion.tdfusion import ReFusionNet, TDFusionLPN

    state = compat.load_weights_only(args.checkpoint)["state_dict"]
    parts = {"fusion_net": ("fusion_net.", ReFusionNet()), "generator": ("loss.generator.", TDFusionLPN())}
    folder = args.out / args.name
    files, nets = {}, {}
    for part, (prefix, net) in parts.items():
        sub = {k[len(prefix):]: v.float().contiguous() for k, v in state.items() if k.startswith(prefix)}
        net.load_state_dict(sub, strict=True)
        buffer = io.BytesIO()
        torch.save(sub, buffer)
        path = folder / f"{part}.pth"
        atomic_write_bytes(path, buffer.getvalue())
        files[part] = {"path": path.name, "sha256": sha256_of(path), "bytes": path.stat().st_size}
        nets[part] = net
    results = None
    if args.results is not None:
        record = json.loads(args.results.read_text())
        method, _, seed = (args.row or "").rpartition("_seed")
        position = record["setup"]["seeds"].index(int(seed))
        results = {"row": args.row, "metrics": record["per_seed"][method][position],
                   "trained_at": record["setup"]["commit"], "command": record["setup"]["command"],
                   "source": str(args.results.relative_to(REPO_ROOT) if args.results.is_absolute()
                                 else args.results)}
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                            text=True).stdout.strip()
    manifest = {
        "name": args.name,
        "description": "TDFusion (ReFusion F + Restormer LPN G) trained with the CPU recipe on "
                       "msrs_det (120 pairs); YOLOv8n as the task",
        "custom_imports": {"imports": ["projects.tdfusion.tdfusion"]},  # registers the two types
        "fusion_net": {"type": "ReFusionNet"},
        "generator": {"type": "TDFusionLPN"},
        "files": files,
        "config": args.config,
        "seed": args.seed,
        "commit": commit,  # of the export; the training run's is results["trained_at"]
        "checkpoint": args.checkpoint.name,
        "results": results,
        "reference": reference_output(nets["fusion_net"], nets["generator"], args.data_root),
    }
    atomic_write_bytes(folder / "manifest.json", (json.dumps(manifest, indent=1) + "\n").encode())
    print(f"zoo model {args.name!r}: {folder} ({sum(f['bytes'] for f in files.values())} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
