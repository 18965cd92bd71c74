"""The main job (tools/run_main.sh → projects/tdfusion/tools/main_job.py) on real pairs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA = REPO_ROOT.parent / "shared" / "data"
BASELINE_ROWS = {"IR alone", "VIS alone", "average (IR+VIS)/2", "max(IR, VIS)"}


@pytest.mark.skipif(not (DATA / "msrs_det").is_dir(), reason="needs ../shared/data/msrs_det")
def test_main_job_writes_full_size_colour_outputs_and_a_table_with_the_baselines(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run(
        [sys.executable, "projects/tdfusion/tools/main_job.py", "--work-dir", str(tmp_path), "--limit", "2"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads((tmp_path / "test" / "results.json").read_text())
    rows = set(record["metrics"])
    assert BASELINE_ROWS <= rows and len(rows) == 5
    method = next(iter(rows - BASELINE_ROWS))
    assert record["pairs"] == 2
    assert all(abs(value) < 1e3 for value in record["metrics"][method].values())
    table = (tmp_path / "test" / "results.md").read_text()
    assert all(f"| {row} |" in table for row in BASELINE_ROWS) and "SCD" in table
    fused = sorted((tmp_path / "test" / "fused").glob("*.png"))
    assert len(fused) == 2
    for path in fused:
        with Image.open(DATA / "msrs_det" / "test" / "ir" / path.name) as source, Image.open(path) as out:
            assert out.size == source.size and out.mode == "RGB"  # the pair's size, in colour
        for name in ("ir", "vis"):
            with Image.open(tmp_path / "test" / "weights" / f"{path.stem}_w_{name}.png") as weight:
                assert weight.size == source.size and weight.mode == "L"
