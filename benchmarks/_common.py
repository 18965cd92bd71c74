"""Helpers shared by the benchmark scripts: real inputs, timing, atomic JSON."""

from __future__ import annotations

import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_ROOT = Path(os.environ.get("LFL_DATA_ROOT", REPO_ROOT.parent / "shared" / "data"))
RESULTS = REPO_ROOT / "benchmarks" / "results"


def msrs_pair(index: int = 0, split: str = "test") -> tuple[torch.Tensor, torch.Tensor, str]:
    """A real MSRS pair as ``[1, 1, 480, 640]`` float tensors (IR, VIS luminance)."""
    ids = sorted(p.stem for p in (DATA_ROOT / "msrs_det" / split / "ir").glob("*.png"))
    if not ids:
        raise FileNotFoundError(f"no MSRS pairs under {DATA_ROOT / 'msrs_det' / split}")
    stem = ids[index % len(ids)]
    ir = np.asarray(Image.open(DATA_ROOT / "msrs_det" / split / "ir" / f"{stem}.png").convert("L"))
    # ITU-R BT.601 luma, as OpenCV's YCrCb conversion
    vi = np.asarray(Image.open(DATA_ROOT / "msrs_det" / split / "vi" / f"{stem}.png").convert("RGB"))
    y = vi.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    to_t = lambda x: torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32) / 255.0)[None, None]  # noqa: E731
    return to_t(ir), to_t(y), stem


def median_time(fn: Callable[[], object], repeats: int, warmup: int = 1) -> tuple[float, list[float]]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def machine() -> dict:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def write_json_atomic(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as handle:
        json.dump(payload, handle, indent=2)
        handle.write("\n")
    os.replace(tmp, path)


def markdown_table(header: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
