"""Shared fixtures: the real data folder and small deterministic nets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Offline everywhere: no hub, no telemetry, no font downloads.
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "0")

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_ROOT = Path(os.environ.get("LFL_DATA_ROOT", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def data_root() -> Path:
    if not DATA_ROOT.is_dir():
        pytest.fail(f"real test data not found at {DATA_ROOT} (set LFL_DATA_ROOT)")
    return DATA_ROOT


@pytest.fixture(scope="session")
def compiled_filters() -> None:
    """Skip (with the reason) where the metrics' compiled filters cannot be built."""
    from learnable_fusion_loss.metrics import native

    reason = native.unavailable_reason()
    if reason is not None:
        pytest.skip(f"compiled metric filters unavailable: {reason} (CI has a C compiler)")
