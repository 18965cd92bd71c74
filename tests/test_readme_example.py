"""The README's "Use it for your own task" block runs as written."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def _block(heading: str) -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split(heading, 1)
    assert len(section) == 2, f"README has no {heading!r} section"
    match = re.search(r"```python\n(.*?)```", section[1], re.S)
    assert match, f"no python block under {heading!r}"
    return match.group(1)


def test_use_it_for_your_own_task_runs():
    namespace: dict = {}
    exec(compile(_block("### Use it for your own task"), "README.md", "exec"), namespace)  # noqa: S102
    assert namespace["meta"]["hypergrad_norm"] > 0
    assert namespace["stats"]["skipped_fusion"] == 0
