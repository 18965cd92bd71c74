"""compat.keep_freed_memory: large freed blocks are reused instead of re-faulted."""

from __future__ import annotations

import subprocess
import sys

import pytest

PROGRAM = """
import resource, sys, torch
if sys.argv[1] == "keep":
    from learnable_fusion_loss.compat import keep_freed_memory
    assert keep_freed_memory()
# 64 MiB twice, so both runs start from a settled heap: after a single warm-up the
# first block of the loop landed in fresh memory in about half the runs (16384
# faults, right at the bound below); after two it never does.
for _ in range(2):
    torch.ones(2**24).sum()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    torch.ones(2**24).sum()  # allocate, touch, free 64 MiB
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", PROGRAM, mode], capture_output=True, text=True,
                          check=True)
    return int(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt is Linux-only")
def test_keep_freed_memory_stops_refaulting_large_blocks():
    default, kept = _faults("default"), _faults("keep")
    # by default each 64 MiB block is a fresh mmap: ~16k page faults per allocation
    assert default > 20 * 10_000, default
    assert kept < default / 20, (kept, default)
