#!/usr/bin/env python
"""Fuse every matched IR/VIS pair of two folders with a trained fusion network.

Usage::

    python tools/fuse.py --ir DIR --vi DIR --out DIR --checkpoint CKPT [--config CFG]
                         [--device cpu] [--batch-size N] [--pad-multiple N] [--minmax]
                         [--tile SIZE [--overlap PX]] [--overwrite]

Pairs are matched by file stem (``ir/00001.png`` with ``vi/00001.jpg``). Output:
``OUT/<stem>.png``, grey when both sources are grey, RGB when a source is colour
(the colour source keeps its chroma through YCrCb; two colour sources mix their
chroma, see :mod:`learnable_fusion_loss.apis.inference`). Any image size works:
inputs are padded to what the network needs and cropped back. ``--tile SIZE``
fuses each image in SIZE×SIZE cores with ``--overlap`` pixels of context around
each (default 32), so that memory no longer grows with the image: the network's
activations are those of one (SIZE + 2·PX)² window. For a network with global
attention (the channel attention of the Restormer blocks) the result differs from the
whole-image pass (see :mod:`learnable_fusion_loss.apis.tiling`).

Networks and zoo models of the repository's projects: every project package
(``projects/<name>/<package>/__init__.py``) is imported first, so that its network
types, its weight readers (a checkpoint loads without ``--config``) and its zoo
folder (``--checkpoint <zoo model name>``) register.

A bad pair (missing partner, broken link, unreadable, truncated or too large
file, size mismatch, a fusion that fails) is skipped with a
``FAILED <name>: <reason>`` line; the others are still written. The summary gives
the counts; the exit status is 1 if any pair failed, 2 for a usage error: bad
arguments or checkpoint, input folders without a single image (nothing to do), an
output folder that is an input folder or a file, or one that cannot be created or
written (checked before anything is fused).

Inputs are never written: the output folder must not be an input folder, and an
existing output file is only replaced with ``--overwrite`` (never when it is one of
the inputs). Outputs are written atomically (temporary file + rename), with the
mode a plain ``open()`` gives (0666 less the umask).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # run from a checkout; projects.* import from here

import torch  # noqa: E402

from learnable_fusion_loss.apis import fuse_images, load_fusion_network  # noqa: E402
from learnable_fusion_loss.datasets import find_pairs, load_image, save_image  # noqa: E402
from learnable_fusion_loss.datasets.io import (  # noqa: E402
    output_folder_problem,
    prepare_output_folder,
)


def import_projects(repo_root: Path = REPO_ROOT) -> list[str]:
    """Import every project package ``projects/<name>/<package>``; their names, in order."""
    names = [f"projects.{init.parent.parent.name}.{init.parent.name}"
             for init in sorted((repo_root / "projects").glob("*/*/__init__.py"))]
    for name in names:
        importlib.import_module(name)
    return names


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ir", required=True, type=Path, help="folder of infrared (first) images")
    parser.add_argument("--vi", required=True, type=Path, help="folder of visible (second) images")
    parser.add_argument("--out", required=True, type=Path, help="output folder (created)")
    parser.add_argument("--checkpoint", required=True, type=Path,
                        help="fusion network weights, or a zoo model name (e.g. tdfusion_msrsdet_cpu)")
    parser.add_argument("--config", type=Path, default=None,
                        help="MMEngine config; builds cfg.model.fusion_net (or cfg.fusion_net)")
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    parser.add_argument("--batch-size", type=int, default=1,
                        help="pairs per forward pass; consecutive pairs of equal size share one")
    parser.add_argument("--pad-multiple", type=int, default=None,
                        help="pad inputs to this multiple (default: the network's size_divisor, or 1)")
    parser.add_argument("--minmax", action="store_true",
                        help="stretch each fused luminance to [0, 1] (TDFusion's test script)")
    parser.add_argument("--tile", type=int, default=None, metavar="SIZE",
                        help="fuse in SIZE x SIZE cores (bounded memory for large images)")
    parser.add_argument("--overlap", type=int, default=None, metavar="PX",
                        help="context around each tile, in pixels (default 32; needs --tile)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    args = parser.parse_args(argv)
    if args.tile is not None and args.tile < 1:
        parser.error(f"--tile must be >= 1, got {args.tile}")
    if args.overlap is not None and args.tile is None:
        parser.error("--overlap needs --tile")
    if args.overlap is not None and args.overlap < 0:
        parser.error(f"--overlap must be >= 0, got {args.overlap}")
    if args.overlap is None:
        args.overlap = 32
    if args.batch_size < 1:
        parser.error(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.pad_multiple is not None and args.pad_multiple < 1:
        parser.error(f"--pad-multiple must be >= 1, got {args.pad_multiple}")
    return args


def check_output_folder(out: Path, inputs: list[Path]) -> str | None:
    """Why writing into ``out`` could clobber an input (or cannot work at all), or None."""
    return output_folder_problem(out, [(flag, folder) for flag, folder in zip(("--ir", "--vi"), inputs)])


def _progress(total: int):
    try:
        from tqdm import tqdm

        return tqdm(total=total, unit="pair", desc="fusing", dynamic_ncols=True, file=sys.stderr)
    except ImportError:  # pragma: no cover - tqdm is a dependency
        from mmengine.utils import ProgressBar

        bar = ProgressBar(total)
        bar.update = lambda n=1: [ProgressBar.update(bar) for _ in range(n)]  # type: ignore[method-assign]
        bar.write = lambda msg: print(msg, file=sys.stderr)  # type: ignore[attr-defined]
        bar.close = lambda: print(file=sys.stderr)  # type: ignore[attr-defined]
        return bar


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for name, folder in (("--ir", args.ir), ("--vi", args.vi)):
        if not folder.is_dir():
            print(f"error: {name} folder not found: {str(folder)!r}", file=sys.stderr)
            return 2
    problem = check_output_folder(args.out, [args.ir, args.vi])
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    pairs, problems = find_pairs(args.ir, args.vi)
    if not pairs and not problems:
        # Exit 0 with "fused 0 of 0 pairs" would let a wrong path pass unnoticed.
        print(f"error: nothing to fuse: --ir {str(args.ir)!r} and --vi {str(args.vi)!r} "
              "hold no image files", file=sys.stderr)
        return 2
    try:
        import_projects()
        net = load_fusion_network(args.checkpoint, config=args.config, device=args.device)
    except (OSError, ImportError, ValueError, KeyError, TypeError, RuntimeError) as error:
        print(f"error: cannot load the fusion network: {error}", file=sys.stderr)
        return 2
    # Created only once the network loaded (a bad checkpoint leaves no empty folder),
    # and proved writable before the first pair is fused, not after.
    problem = prepare_output_folder(args.out)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    normalize = "minmax" if args.minmax else "none"
    input_files = set()
    for _, path_ir, path_vi in pairs:
        input_files.update((path_ir.resolve(), path_vi.resolve()))

    failures: list[tuple[str, str]] = []

    written = 0
    start = time.perf_counter()
    bar = _progress(len(pairs))

    def fail(stem: str, reason: str) -> None:
        failures.append((stem, reason))
        bar.write(f"FAILED {stem}: {reason}")

    for message in problems:  # missing partners and ambiguous stems, found before fusing
        failures.append(("-", message))
        bar.write(f"FAILED: {message}")

    pending: list[tuple[str, Path, torch.Tensor, torch.Tensor]] = []

    def flush() -> None:
        nonlocal written
        if not pending:
            return
        stems = [p[0] for p in pending]
        try:
            a = torch.stack([p[2] for p in pending])
            b = torch.stack([p[3] for p in pending])
            fused = fuse_images(net, a, b, pad_multiple=args.pad_multiple, normalize=normalize,
                                tile=args.tile, overlap=args.overlap)
        except Exception as error:  # noqa: BLE001 - one failing batch must not stop the run
            for stem in stems:
                fail(stem, f"fusion failed: {type(error).__name__}: {error}")
            bar.update(len(pending))
            pending.clear()
            return
        for (stem, target, _, _), image in zip(pending, fused, strict=True):
            try:
                save_image(target, image, overwrite=args.overwrite)
                written += 1
            except (OSError, ValueError) as error:
                fail(stem, f"cannot write {str(target)!r}: {error}")
        bar.update(len(pending))
        pending.clear()

    for stem, path_ir, path_vi in pairs:
        target = args.out / f"{stem}.png"
        if target.exists() and target.resolve() in input_files:
            fail(stem, f"output {str(target)!r} is an input file; refusing to overwrite it")
            bar.update(1)
            continue
        if target.exists() and not args.overwrite:
            fail(stem, f"output {str(target)!r} exists (pass --overwrite to replace it)")
            bar.update(1)
            continue
        try:
            a = load_image(path_ir)
            b = load_image(path_vi)
        except (OSError, ValueError, MemoryError) as error:  # one bad file fails one pair
            fail(stem, f"unreadable file: {error}")
            bar.update(1)
            continue
        if a.shape[-2:] != b.shape[-2:]:
            fail(stem, f"size mismatch: IR {str(path_ir)!r} is {a.shape[-1]}x{a.shape[-2]}, "
                       f"VIS {str(path_vi)!r} is {b.shape[-1]}x{b.shape[-2]} (W x H)")
            bar.update(1)
            continue
        if pending and (pending[0][2].shape != a.shape or pending[0][3].shape != b.shape):
            flush()  # a batch holds pairs of one size and one channel layout
        pending.append((stem, target, a, b))
        if len(pending) >= args.batch_size:
            flush()
    flush()
    bar.close()

    elapsed = time.perf_counter() - start
    total = len(pairs) + len(problems)
    print(f"fused {written} of {total} pairs into {str(args.out)!r} in {elapsed:.1f} s; "
          f"{len(failures)} failed")
    for stem, reason in failures:
        print(f"  failed {stem}: {reason}" if stem != "-" else f"  failed: {reason}")
    return 1 if failures else 0


if __name__ == "__main__":
    from learnable_fusion_loss.compat import keep_freed_memory

    keep_freed_memory()  # large images: reuse freed buffers instead of re-faulting them
    sys.exit(main())
