"""tools/tdfusion_results.py: tables, spreads and goals are computed, never typed in."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parents[1] / "tools" / "tdfusion_results.py"


@pytest.fixture(scope="module")
def results_tool():
    spec = importlib.util.spec_from_file_location("tdfusion_results", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(values: dict[str, float]) -> dict[str, dict[str, float]]:
    return {group: dict(values) for group in ("all", "night", "day")}


def _base(**over) -> dict[str, float]:
    row = {k: 1.0 for k in ("EN", "SF", "SCD", "VIF", "Qabf", "SSIM", "MI", "SD")}
    row.update({"mAP50": 0.1, "mAP50-95": 0.05})
    row.update(over)
    return row


def test_wins_need_to_exceed_the_seed_spread(results_tool):
    tool = results_tool
    assert tool.summarise([1.0, 2.0, 3.0]) == (2.0, 1.0)
    assert tool.summarise([4.0]) == (4.0, 0.0)
    assert tool.summarise([float("nan"), 2.0]) == (2.0, 0.0)
    assert tool.verdict(0.5, 0.2) == "win" and tool.verdict(-0.5, 0.2) == "loss"
    assert tool.verdict(0.1, 0.2) == "tie"
    stats = {
        "tdfusion": tool.row_stats([_run(_base(EN=2.0, mAP50=0.30)), _run(_base(EN=2.2, mAP50=0.10))]),
        "mean": tool.row_stats([_run(_base(EN=1.0, mAP50=0.15))]),
    }
    labels = {"tdfusion": "TDFusion", "mean": "average"}
    delta = tool.delta_table(stats, labels, "all", "tdfusion")
    cells = [c.strip() for c in delta[2].split("|")[2:-1]]
    assert cells[0] == "+1.100 (win)"  # EN: 2.1 ± 0.14 vs 1.0
    assert cells[8] == "+5.00 (tie)"  # mAP50: 20 ± 14 % vs 15 %: inside the spread
    table = tool.metrics_table(stats, labels, {"tdfusion": 2, "mean": 1}, "all", "tdfusion")
    assert table[2].startswith("| **TDFusion** | 2.100 ± 0.141 |")
    assert "±" not in table[3]


def test_goals_are_checked_from_the_numbers(results_tool):
    tool = results_tool
    good = _base(EN=9.0, SF=9.0, SCD=9.0, VIF=9.0, Qabf=9.0, SSIM=9.0, mAP50=0.5)
    stats = {name: tool.row_stats([_run(row)]) for name, row in {
        "tdfusion": good, "ablation1": _base(mAP50=0.2), "ir": _base(), "vis": _base(),
        "mean": _base(), "max": _base(EN=9.5)}.items()}
    goals = {goal: (met, evidence) for goal, met, evidence in tool.goals(stats, "tdfusion", "ablation1")}
    assert goals["beats the average rule on all six paper metrics"][0]
    met, evidence = goals["beats the max rule on EN and SCD"]
    assert not met and "EN" in evidence
    assert goals["the detector learns: mAP50 >= 0.3 on the best row"][0]
    assert goals["night mAP50 of TDFusion above ablation I's (beyond the spread)"][0]


def test_paper_numbers_come_from_the_reference_file(results_tool, tmp_path):
    paper = results_tool.paper_numbers()
    reference = results_tool.PAPER_TABLES
    if not reference.is_file():
        pytest.skip(f"the paper's tables are not at {reference}")
    assert paper["MSRS TDFusion"]["EN"] == "6.74" and paper["MSRS TDFusion"]["Qabf"] == "0.67"
    assert paper["table2 TDFusion"]["M3FD mAP50"] == "86.27"
    lines = "\n".join(results_tool.paper_lines(paper))
    assert "full datasets, 50 epochs, one RTX 3090" in lines and "| TDFusion | 6.74 | 11.30 |" in lines
    assert results_tool.paper_numbers(tmp_path / "absent.md") == {}


def test_bad_arguments_are_refused(results_tool):
    with pytest.raises(SystemExit):
        results_tool.parse_args(["--methods", "ablation1"])
    with pytest.raises(SystemExit):
        results_tool.parse_args(["--det-steps", "0"])
    with pytest.raises(SystemExit):
        results_tool.parse_args(["--seeds", "1", "1"])
    assert not math.isnan(results_tool.parse_args([]).det_lr)
