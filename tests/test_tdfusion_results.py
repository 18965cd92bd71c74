"""tools/tdfusion_results.py: tables, spreads and goals are computed, never typed in."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from _scripts import load_script

TOOL = Path(__file__).resolve().parents[1] / "tools" / "tdfusion_results.py"


@pytest.fixture(scope="module")
def results_tool():
    return load_script(TOOL, "tdfusion_results")


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


SIX = ("EN", "SF", "SCD", "VIF", "Qabf", "SSIM")
DATASETS = ("MSRS", "FMB", "M3FD", "LLVIP")
TASK = {"MSRS": ("mAcc", "mIoU"), "FMB": ("mAcc", "mIoU"), "M3FD": ("mAP50", "mAP75"),
        "LLVIP": ("AP50", "AP75")}


def _number(*parts: int) -> str:
    """A distinct, recognisable value per cell (so a swapped row or column shows)."""
    return f"{sum(p * 10 ** (2 * k) for k, p in enumerate(parts)) / 100:.2f}"


def _tables_md(table1_header: str = "| dataset | method | " + " | ".join(SIX) + " |",
               table3_configs: tuple[str, ...] = ("I", "II", "III", "IV", "V", "full")) -> str:
    """A small transcription in the reference file's format (two methods per table)."""
    lines = ["# TDFusion paper", "", "## Settings", "", "| what | value |", "|---|---|", "| epochs | 50 |",
             "", "## Table 1: fusion metrics", "", table1_header, "|---|---|" + "---|" * len(SIX)]
    for d, dataset in enumerate(DATASETS):
        for m, method in enumerate(("EMMA", "**TDFusion**")):
            lines.append(f"| {dataset} | {method} | "
                         + " | ".join(_number(1, d, m, k) for k in range(len(SIX))) + " |")
    columns = [f"{dataset} {metric}" for dataset in DATASETS for metric in TASK[dataset]]
    lines += ["", "## Table 2: downstream tasks (percent)", "", "Some prose.", "",
              "| method | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    for m, method in enumerate(("Infrared", "**TDFusion**")):
        lines.append(f"| {method} | " + " | ".join(_number(2, m, k) for k in range(len(columns))) + " |")
    lines += ["", "## Table 3: ablations on FMB (fusion metrics)", "",
              "| config | what changes | " + " | ".join(SIX) + " |", "|---|---|" + "---|" * len(SIX)]
    for c, config in enumerate(table3_configs):
        lines.append(f"| {config} | change {c} | " + " | ".join(_number(3, c, k) for k in range(len(SIX))) + " |")
    lines += ["", "## Figure 5's claim", "", "Prose."]
    return "\n".join(lines) + "\n"


def test_paper_tables_are_read_per_dataset(results_tool, tmp_path):
    path = tmp_path / "tables.md"
    path.write_text(_tables_md())
    table1 = results_tool.paper_table1(path)
    assert list(table1) == list(DATASETS)
    assert table1["M3FD"]["TDFusion"]["SF"] == _number(1, 2, 1, 1)  # bold marks stripped
    assert table1["LLVIP"]["EMMA"]["SSIM"] == _number(1, 3, 0, 5)
    table2 = results_tool.paper_table2(path)
    assert {d: set(table2[d]["TDFusion"]) for d in DATASETS} == {d: set(TASK[d]) for d in DATASETS}
    assert table2["FMB"]["Infrared"]["mIoU"] == _number(2, 0, 3)  # 4th task column
    assert table2["LLVIP"]["TDFusion"]["AP75"] == _number(2, 1, 7)
    paper = results_tool.paper_numbers(path)
    assert list(paper["FMB"]) == ["Infrared", "TDFusion", "EMMA"]
    assert paper["FMB"]["TDFusion"] == {**table2["FMB"]["TDFusion"], **table1["FMB"]["TDFusion"]}
    text = "\n".join(results_tool.paper_lines(paper))
    assert "full datasets, 50 epochs, one RTX 3090" in text
    for d, dataset in enumerate(DATASETS):  # every dataset has its own table, with its task columns
        assert f"##### {dataset} (Table 1; Table 2: {', '.join(TASK[dataset])})" in text
        fusion = " | ".join(_number(1, d, 1, k) for k in range(len(SIX)))
        task = " | ".join(_number(2, 1, 2 * d + k) for k in range(2))
        assert f"| **TDFusion** | {fusion} | {task} |" in text
    assert "| Infrared | — | — | — | — | — | — | " in text  # no Table 1 row: shown, not invented


def test_paper_table3_is_keyed_by_config(results_tool, tmp_path):
    path = tmp_path / "tables.md"
    path.write_text(_tables_md())
    table3 = results_tool.paper_table3(path)
    assert list(table3) == ["I", "II", "III", "IV", "V", "full"]
    assert table3["IV"]["Qabf"] == _number(3, 3, 4) and table3["full"]["EN"] == _number(3, 5, 0)
    assert table3["II"]["what changes"] == "change 1"


def test_missing_or_changed_tables_are_refused_naming_the_file(results_tool, tmp_path):
    tool = results_tool
    absent = tmp_path / "absent.md"
    for read in (tool.paper_table1, tool.paper_table2, tool.paper_table3, tool.paper_numbers):
        with pytest.raises(tool.PaperTablesError, match=f"missing: {absent}"):
            read(absent)
    changed = {
        "renamed column": (_tables_md(table1_header="| dataset | method | EN | SF | SCD | VIF | Qabf | MS-SSIM |"),
                           tool.paper_table1, "columns"),
        "a config dropped": (_tables_md(table3_configs=("I", "II", "III", "IV", "full")),
                             tool.paper_table3, "configs"),
        "a config twice": (_tables_md(table3_configs=("I", "II", "III", "IV", "V", "V")),
                           tool.paper_table3, "configs"),
        "a dataset dropped": (_tables_md().replace("| LLVIP |", "| KAIST |"), tool.paper_table1, "datasets"),
        "not a number": (_tables_md().replace(f"| {_number(2, 1, 0)} |", "| n/a |"), tool.paper_table2,
                         "not a number"),
        "no Table 2 heading": (_tables_md().replace("## Table 2:", "## Table two:"), tool.paper_table2,
                               "no section"),
        "a cell lost": (_tables_md().replace(f" {_number(3, 2, 5)} |", ""), tool.paper_table3, "cells"),
    }
    for name, (text, read, match) in changed.items():
        path = tmp_path / f"{name.replace(' ', '_')}.md"
        path.write_text(text)
        with pytest.raises(tool.PaperTablesError, match=match) as error:
            read(path)
        assert str(path) in str(error.value), name


def test_markdown_has_the_paper_section_per_dataset(results_tool, tmp_path, monkeypatch):
    tool = results_tool
    path = tmp_path / "tables.md"
    path.write_text(_tables_md())
    monkeypatch.setattr(tool, "PAPER_TABLES", path)  # build_markdown reads it by default
    stats = {name: tool.row_stats([_run(_base())]) for name in ("tdfusion", "ir", "vis", "mean", "max")}
    setup = {"command": "python tools/tdfusion_results.py", "commit": "commit x", "det_steps": 1,
             "det_batch": 1, "det_size": (8, 8), "seeds": [0]}
    markdown = tool.build_markdown(stats, {n: n for n in stats}, {n: 1 for n in stats}, setup, {},
                                   ablation=None)
    assert "#### The paper's numbers (Tables 1–2)" in markdown
    assert [line for line in markdown.splitlines() if line.startswith("##### ")] == [
        f"##### {d} (Table 1; Table 2: {', '.join(TASK[d])})" for d in DATASETS]


def test_main_stops_before_training_without_the_tables(results_tool, tmp_path, monkeypatch):
    monkeypatch.setattr(results_tool, "PAPER_TABLES", tmp_path / "absent.md")
    monkeypatch.setattr(results_tool, "load_data", lambda args: pytest.fail("main went on without the tables"))
    with pytest.raises(SystemExit, match="absent.md"):
        results_tool.main(["--work-root", str(tmp_path / "work")])


def test_the_reference_file_parses(results_tool):
    reference = results_tool.PAPER_TABLES
    if not reference.is_file():
        pytest.skip(f"the paper's tables are not at {reference}")
    paper = results_tool.paper_numbers()
    assert list(paper) == list(DATASETS)
    assert paper["MSRS"]["TDFusion"]["EN"] == "6.74" and paper["MSRS"]["TDFusion"]["mIoU"] == "75.09"
    assert paper["FMB"]["TDFusion"]["SF"] == "14.16" and paper["FMB"]["Visible"]["mAcc"] == "65.12"
    assert paper["M3FD"]["TDFusion"]["mAP50"] == "86.27" and paper["LLVIP"]["Infrared"]["AP50"] == "96.03"
    assert all(len(methods) == 10 for methods in paper.values())  # 8 fused methods + IR + VIS
    table3 = results_tool.paper_table3()
    assert table3["IV"]["SF"] == "14.07" and table3["full"] == {
        "what changes": "TDFusion", "EN": "6.86", "SF": "14.16", "SCD": "1.76", "VIF": "0.43",
        "Qabf": "0.68", "SSIM": "0.75"}


def test_bad_arguments_are_refused(results_tool):
    with pytest.raises(SystemExit):
        results_tool.parse_args(["--methods", "ablation1"])
    with pytest.raises(SystemExit):
        results_tool.parse_args(["--det-steps", "0"])
    with pytest.raises(SystemExit):
        results_tool.parse_args(["--seeds", "1", "1"])
    assert not math.isnan(results_tool.parse_args([]).det_lr)


def test_a_stopped_training_run_is_resumed_and_a_finished_one_kept(results_tool, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch):
    calls: list[list[str]] = []

    class Done:
        returncode = 0

    monkeypatch.setattr(results_tool.subprocess, "run", lambda cmd, **kwargs: calls.append(cmd) or Done())
    stopped = tmp_path / "stopped"
    stopped.mkdir()
    (stopped / "last_checkpoint").write_text("iter_10.pth")  # killed: checkpoints but no time
    assert math.isnan(results_tool.train_run("full", "c.py", 0, stopped, []))
    assert "--resume" in calls[-1]
    assert results_tool.train_run("full", "c.py", 0, stopped, []) != 0 and len(calls) == 1  # now done
    fresh = tmp_path / "fresh"
    seconds = results_tool.train_run("full", "c.py", 0, fresh, [])
    assert "--resume" not in calls[-1] and seconds >= 0 and (fresh / "train_seconds.txt").is_file()
