"""One meta iteration vs one fusion-phase step: median time and peak memory.

ReFusion (F) + TDFusion LPN (G), batch 2 (an MSRS pair and its modality swap),
256×256 crops for the fusion loss, the task at 192×256 (M3FD's task size), CPU,
2 threads. Each (backend, step) runs in its own process so that the peak RSS
(``resource.getrusage``) belongs to that configuration alone.

    python benchmarks/meta_step.py [--repeats 5] [--task yolov8|tiny] [--backends ...] [--out FILE]

Prints a Markdown table and writes ``benchmarks/results/meta_step.json``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import resource
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # projects.tdfusion.tdfusion
from _common import RESULTS, machine, markdown_table, median_time, msrs_pair, write_json_atomic  # noqa: E402

BACKENDS = ("torch.func", "higher", "learn2learn")
#: The forward-mode hypergradient (MetaLossLearner(hypergradient="forward")) runs as
#: its own row; its inner step is torch.func's update rule.
FORWARD = "forward-mode"


def _task(kind: str):
    import torch
    from torch import nn

    from learnable_fusion_loss.tasks import ModuleTask

    if kind == "yolov8":
        from learnable_fusion_loss.tasks.yolov8 import YOLOv8Task

        return YOLOv8Task(num_classes=3, in_channels=1)
    # a small conv segmentation head: stands in when ultralytics is absent
    net = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 9, 3, padding=1))
    return ModuleTask(net, nn.functional.cross_entropy, torch.optim.Adam(net.parameters(), lr=1e-4))


def _target(kind: str, batch: int, height: int, width: int):
    import torch

    if kind == "yolov8":
        # two boxes per image, normalised cxcywh, the ultralytics batch format
        boxes = torch.tensor([[0.3, 0.5, 0.1, 0.3], [0.7, 0.6, 0.2, 0.2]])
        return {
            "batch_idx": torch.arange(batch).repeat_interleave(2).float(),
            "cls": torch.tensor([[0.0], [2.0]]).repeat(batch, 1),
            "bboxes": boxes.repeat(batch, 1),
        }
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 9, (batch, height, width), generator=g)


def worker(backend: str, step: str, repeats: int, task_kind: str, checkpoint: bool) -> dict:
    import torch
    import torch.nn.functional as F

    from learnable_fusion_loss import FusionBatch, LearnableFusionLoss, MetaLossLearner
    from projects.tdfusion.tdfusion import ReFusionNet, TDFusionLPN

    torch.set_num_threads(2)
    torch.manual_seed(0)
    ir, vi, stem = msrs_pair(0)
    crop = (slice(None), slice(None), slice(112, 368), slice(192, 448))
    a = torch.cat([ir[crop], vi[crop]])  # the pair and its modality swap
    b = torch.cat([vi[crop], ir[crop]])
    task_a = F.interpolate(torch.cat([ir, vi]), size=(192, 256), mode="bilinear", align_corners=False)
    task_b = F.interpolate(torch.cat([vi, ir]), size=(192, 256), mode="bilinear", align_corners=False)
    batch = FusionBatch(a=a, b=b, target=_target(task_kind, 2, 192, 256), task_a=task_a, task_b=task_b)

    fusion = ReFusionNet(**({"checkpoint_activations": True} if checkpoint else {}))
    loss = LearnableFusionLoss(TDFusionLPN())
    learner = MetaLossLearner(
        fusion,
        loss,
        _task(task_kind),
        fusion_optimizer=torch.optim.Adam(fusion.parameters(), lr=1e-4),
        inner_backend=None if backend == FORWARD else backend,  # forward mode takes no backend
        hypergradient="forward" if backend == FORWARD else "unrolled",
    )
    run = (lambda: learner.meta_step(batch, batch)) if step == "meta" else (lambda: learner.fusion_step(batch))
    median, times = median_time(run, repeats=repeats, warmup=1)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = {"backend": backend, "step": step, "median_s": median, "times_s": times,
              "peak_rss_gib": peak_kib / 2**20, "pair": stem}
    if step == "meta" and backend in ("torch.func", FORWARD):
        result["saved_for_backward_gib"] = saved_tensor_breakdown(
            run, {"F (fusion net)": fusion, "G (loss net)": loss.generator, "T (task net)": learner.task.net})
    return result


def saved_tensor_breakdown(run, modules: dict) -> dict[str, float]:
    """GiB that autograd saves for backward during ``run()``, by the network running.

    Tensors saved while no network's forward is running belong to the backward pass
    of the inner step (``create_graph=True`` keeps its intermediates for the outer
    step) or to the loss terms; they are reported as ``inner backward + losses``.
    Saved tensors are not all alive at once (the forward-mode step frees F's
    after each first-order pass), so the peak RSS is the figure that counts.
    A tensor saved twice is counted twice (an upper bound on its share).
    """
    import torch

    totals: dict[str, float] = {}
    stack: list[str] = []
    handles = []
    def enter(label: str):
        def hook(*_) -> None:
            stack.append(label)
        return hook

    def leave(*_) -> None:  # returns None: the module's output is kept
        stack.pop()

    for label, module in modules.items():
        handles.append(module.register_forward_pre_hook(enter(label)))
        handles.append(module.register_forward_hook(leave))

    def pack(tensor):
        label = stack[-1] if stack else "inner backward + losses"
        totals[label] = totals.get(label, 0.0) + tensor.numel() * tensor.element_size() / 2**30
        return tensor

    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            run()
    finally:
        for handle in handles:
            handle.remove()
    return dict(sorted(totals.items(), key=lambda item: -item[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--task", choices=["yolov8", "tiny"], default=None,
                        help="task net (default: yolov8 when ultralytics is installed)")
    parser.add_argument("--backends", nargs="+", default=[*BACKENDS, FORWARD],
                        help=f"inner backends of the unrolled meta step, and/or {FORWARD!r}")
    parser.add_argument("--checkpoint-activations", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS / "meta_step.json")
    parser.add_argument("--worker", nargs=2, metavar=("BACKEND", "STEP"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    task_kind = args.task or ("yolov8" if importlib.util.find_spec("ultralytics") else "tiny")

    if args.worker:
        result = worker(*args.worker, args.repeats, task_kind, args.checkpoint_activations)
        print("RESULT " + json.dumps(result))
        return

    missing = [b for b in args.backends
               if b not in ("torch.func", FORWARD) and importlib.util.find_spec(b) is None]
    if missing:
        raise SystemExit(f"backend(s) not installed: {missing} (run tools/bootstrap.sh)")
    jobs = [(b, "meta") for b in args.backends]
    jobs.append(("torch.func", "fusion"))
    results = []
    for backend, step in jobs:
        cmd = [sys.executable, __file__, "--worker", backend, step, "--repeats", str(args.repeats),
               "--task", task_kind] + (["--checkpoint-activations"] if args.checkpoint_activations else [])
        proc = subprocess.run(cmd, capture_output=True, text=True)
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
        if proc.returncode != 0 or line is None:
            print(proc.stdout[-2000:], proc.stderr[-4000:], file=sys.stderr)
            raise SystemExit(f"worker {backend}/{step} failed (exit {proc.returncode})")
        results.append(json.loads(line[len("RESULT "):]))
        print(f"  {backend:12s} {step:7s} {results[-1]['median_s']:.2f} s", file=sys.stderr)

    rows = [[r["step"] + " step", r["backend"] if r["step"] == "meta" else "-", f"{r['median_s']:.2f}",
             f"{r['peak_rss_gib']:.2f}"] for r in results]
    print(f"task: {task_kind}, batch 2, fusion crops 256x256, task view 192x256, "
          f"{args.repeats} repeats (median)\n")
    print(markdown_table(["step", "inner backend", "median time (s)", "peak RSS (GiB)"], rows))
    for r in results:
        if "saved_for_backward_gib" in r:
            print(f"\nSaved for backward in one {r['backend']} meta step (GiB, by the network that saved it):\n")
            print(markdown_table(["saved by", "GiB"], [[k, f"{v:.2f}"] for k, v in r["saved_for_backward_gib"].items()]))
    write_json_atomic(args.out, {"benchmark": "meta_step", "task": task_kind, "repeats": args.repeats,
                                 "checkpoint_activations": args.checkpoint_activations,
                                 "machine": machine(), "results": results})
    print(f"\nwritten: {args.out}")


if __name__ == "__main__":
    from learnable_fusion_loss.compat import keep_freed_memory

    keep_freed_memory()  # as tools/train.py does (see compat.keep_freed_memory)
    main()
