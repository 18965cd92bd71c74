"""projects/tdfusion/tools/ablation_table.py: verdicts floored at the seed spread, from cached rows.

No training: the rows' metrics are written into the tool's cache (``<work-root>/rows``),
as a finished run leaves them, and the table is rebuilt from them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from _scripts import load_script

TOOL = Path(__file__).resolve().parents[1] / "projects" / "tdfusion" / "tools" / "ablation_table.py"


@pytest.fixture(scope="module")
def table_tool():
    return load_script(TOOL, "ablation_table")


def _metrics(tool, **over: float) -> dict:
    base = {k: 1.0 for k in tool.KEYS}
    return {g: {**base, **over} for g in tool.GROUPS}


def test_verdicts_need_a_difference_beyond_the_three_seed_spread(table_tool, tmp_path: Path, data_root: Path):
    rows = tmp_path / "work" / "rows"
    rows.mkdir(parents=True)
    cached = {"full": _metrics(table_tool, EN=7.0, Qabf=0.60),
              "I": _metrics(table_tool, EN=6.9, Qabf=0.40)}  # EN within the floor, Qabf beyond it
    for name, metrics in cached.items():
        (rows / f"{name}_seed0.json").write_text(json.dumps(
            {"metrics": metrics, "checkpoint": "x.pth", "seconds": {"train": 1.0}}))
    spread = {"summary": {r: {g: {k: [0.0, 0.2 if k == "EN" else 0.05] for k in table_tool.KEYS}
                              for g in table_tool.GROUPS} for r in table_tool.SPREAD_ROWS}}
    (tmp_path / "spread.json").write_text(json.dumps(spread))
    out = tmp_path / "table.md"
    assert table_tool.main(["--rows", "full", "I", "--work-root", str(tmp_path / "work"), "--out", str(out),
                            "--spread-from", str(tmp_path / "spread.json"),
                            "--data-root", str(data_root)]) == 0
    text = out.read_text()
    line = [row for row in text.splitlines() if row.startswith("| I: w fixed")][-1]  # the differences
    cells = dict(zip(("row", *table_tool.KEYS), (c.strip() for c in line.strip("|").split("|")), strict=True))
    assert cells["EN"] == "+0.100 (tie)" and cells["Qabf"] == "+0.200 (win)"
    assert "I 1/6" in text and "EN 0.200" in text  # the floor is stated
    saved = json.loads(out.with_suffix(".json").read_text())
    assert saved["summary"]["I"]["all"]["Qabf"][0] == pytest.approx(0.40)


def test_a_missing_spread_file_or_row_is_refused(table_tool, tmp_path: Path):
    with pytest.raises(SystemExit, match="no such file"):
        table_tool.spread_floor(tmp_path / "absent.json")
    (tmp_path / "partial.json").write_text(json.dumps({"summary": {"tdfusion": {}}}))
    with pytest.raises(SystemExit, match="ablation1"):
        table_tool.spread_floor(tmp_path / "partial.json")
