"""tools/tdfusion_results.py: the method-minus-baseline table is computed, not typed."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parents[1] / "tools" / "tdfusion_results.py"


@pytest.fixture(scope="module")
def results_tool():
    spec = importlib.util.spec_from_file_location("tdfusion_results", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_table_gives_signed_differences_and_wins(results_tool):
    results = {
        "tdfusion": {"fusion/EN": 6.5, "fusion/SD": 30.0, "task/mAP50": 0.40},
        "max": {"fusion/EN": 6.7, "fusion/SD": 25.0, "task/mAP50": 0.35},
        "ir": {"fusion/EN": 6.0, "fusion/SD": 31.0, "task/mAP50": float("nan")},
    }
    labels = {"tdfusion": "TDFusion", "max": "max(IR, VIS)", "ir": "IR alone"}
    table = results_tool.build_table(results, labels, method="tdfusion")
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in table.splitlines() if line.startswith("| ")}
    assert rows["**TDFusion**"] == ["6.500", "30.000", "40.00"]
    assert rows["vs max(IR, VIS)"] == ["-0.200 (loss)", "+5.000 (win)", "+5.00 (win)"]
    assert rows["vs IR alone"] == ["+0.500 (win)", "-1.000 (loss)", "—"]
    assert "max(IR, VIS) 2/3" in table and "IR alone 1/3" in table
    assert "not comparable" in table


def test_bad_arguments_are_refused(results_tool):
    with pytest.raises(SystemExit, match="must include 'tdfusion'"):
        results_tool.main(["--runs", "ir"])
    with pytest.raises(SystemExit, match="--jobs must be >= 1"):
        results_tool.main(["--jobs", "0"])
