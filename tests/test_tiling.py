"""Reliability catalogue, item 12: large images fused in tiles within a memory bound.

``fuse_tiled`` must equal the whole-image pass for a network of receptive radius
at most ``overlap`` (seams are then invisible by construction), only ever run the
network on windows of at most ``tile + 2·overlap`` pixels a side (the memory
bound), and stay close to the whole-image pass for TDFusion's F, whose channel
attention is global (the measured gap is in ``benchmarks/tiled_fusion.py``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from learnable_fusion_loss.apis import fuse_images, fuse_tensors, fuse_tiled, tile_windows

REPO = Path(__file__).resolve().parents[1]


class LocalNet(nn.Module):
    """Two 3×3 convolutions: each output pixel sees inputs within 2 pixels."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.Tanh(), nn.Conv2d(4, 1, 3, padding=1))
        self.sizes: list[tuple[int, int]] = []

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        self.sizes.append(tuple(a.shape[-2:]))
        return torch.sigmoid(self.body(torch.cat([a, b], 1)))


def _pair(h: int, w: int, batch: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return (torch.rand(batch, 1, h, w, generator=g, dtype=torch.float64),
            torch.rand(batch, 1, h, w, generator=g, dtype=torch.float64))


def test_cores_cover_every_pixel_once():
    counts = torch.zeros(37, 53)
    for (wy, wx), (cy, cx) in tile_windows(37, 53, tile=16, overlap=5):
        window = torch.zeros(37, 53)[wy, wx]
        assert window.shape[0] <= 16 + 10 and window.shape[1] <= 16 + 10
        counts[wy, wx][cy, cx] += 1
    assert bool((counts == 1).all())


@pytest.mark.parametrize(("tile", "overlap"), [(16, 2), (7, 3), (64, 2)])
def test_tiles_equal_the_whole_image_for_a_local_network(tile: int, overlap: int):
    net = LocalNet().double().eval()
    a, b = _pair(45, 61, batch=2)
    tiled = fuse_tiled(net, a, b, tile, overlap)
    assert max(max(size) for size in net.sizes) <= tile + 2 * overlap  # the memory bound
    torch.testing.assert_close(tiled, fuse_tensors(net, a, b), rtol=0, atol=1e-12)


def test_too_little_overlap_shows_seams():
    """With less context than the receptive radius the core edges differ (so the test above can fail)."""
    net = LocalNet().double().eval()
    a, b = _pair(40, 40)
    assert not torch.allclose(fuse_tiled(net, a, b, 10, 1), fuse_tensors(net, a, b), atol=1e-6)


def test_minmax_is_applied_to_the_whole_stitched_image():
    net = LocalNet().double().eval()
    a, b = _pair(30, 30)
    torch.testing.assert_close(fuse_tiled(net, a, b, 8, 2, normalize="minmax"),
                               fuse_tensors(net, a, b, normalize="minmax"), rtol=0, atol=1e-12)


def test_colour_pair_in_tiles_equals_one_pass_for_a_local_network():
    net = LocalNet().double().eval()
    g = torch.Generator().manual_seed(2)
    ir, vi = torch.rand(1, 33, 47, generator=g, dtype=torch.float64), torch.rand(3, 33, 47, generator=g,
                                                                                  dtype=torch.float64)
    torch.testing.assert_close(fuse_images(net, ir, vi, tile=12, overlap=2), fuse_images(net, ir, vi),
                               rtol=0, atol=1e-12)


def test_tdfusion_f_in_tiles_stays_close_to_one_pass(data_root: Path):
    """Global channel attention: not exact; 0.45 grey levels on average on this 240×320 crop
    (full pairs: ``benchmarks/tiled_fusion.py``), so 1.5 leaves room for other builds."""
    import projects.tdfusion.tdfusion  # noqa: F401 - registers its zoo folder
    from learnable_fusion_loss.apis import load_fusion_network
    from learnable_fusion_loss.datasets import load_image

    net = load_fusion_network("tdfusion_msrsdet_cpu")
    stem = sorted((data_root / "msrs_det" / "test" / "ir").glob("*.png"))[0].name
    ir = load_image(data_root / "msrs_det" / "test" / "ir" / stem)[None, :, :240, :320]
    vi = load_image(data_root / "msrs_det" / "test" / "vi" / stem).mean(0, keepdim=True)[None, :, :240, :320]
    diff = (fuse_tiled(net, ir, vi, tile=128, overlap=32) - fuse_tensors(net, ir, vi)).abs() * 255
    assert 0 < float(diff.mean()) < 1.5, float(diff.mean())


def _fuse(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(REPO / "tools" / "fuse.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=600, cwd=REPO,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))


def test_fuse_tool_tiles_and_checks_its_arguments(tmp_path: Path):
    for name in ("ir", "vi"):
        (tmp_path / name).mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (70, 90), dtype=np.uint8)).save(tmp_path / "ir" / "p.png")
    Image.fromarray(rng.integers(0, 255, (70, 90, 3), dtype=np.uint8)).save(tmp_path / "vi" / "p.png")
    common = ["--ir", tmp_path / "ir", "--vi", tmp_path / "vi", "--checkpoint", "tdfusion_msrsdet_cpu"]
    done = _fuse(*common, "--out", tmp_path / "tiled", "--tile", 32, "--overlap", 8)
    assert done.returncode == 0, done.stderr[-2000:]
    with Image.open(tmp_path / "tiled" / "p.png") as image:
        assert image.size == (90, 70) and image.mode == "RGB"
    for flags, message in ((["--overlap", 8], "--overlap needs --tile"), (["--tile", 0], "--tile must be >= 1"),
                           (["--tile", 16, "--overlap", -1], "--overlap must be >= 0")):
        done = _fuse(*common, "--out", tmp_path / "bad", *flags)
        assert done.returncode == 2 and message in done.stderr, done.stderr[-2000:]
