"""tools/fuse.py and tools/evaluate.py end to end on real TNO / RoadScene pairs
(subprocess on the real scripts, a small randomly initialised ReFusionNet saved by
the test), plus the inference helpers they use."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch import nn

from learnable_fusion_loss.apis import (
    crop_to,
    fuse_chroma,
    fuse_files,
    fuse_images,
    load_fusion_network,
    pad_to_multiple,
)
from learnable_fusion_loss.datasets import load_image, rgb_to_ycrcb
from learnable_fusion_loss.metrics import fusion_metrics
from projects.tdfusion.tdfusion import ReFusionNet

REPO = Path(__file__).resolve().parents[1]
FUSE = REPO / "tools" / "fuse.py"
EVALUATE = REPO / "tools" / "evaluate.py"
TINY = dict(dim=8, num_blocks=1, heads=2)

# Small real pairs: TNO stored as equal-channel RGB PNG (grey), RoadScene IR grey /
# VIS colour JPEG. Output names keep the pair ids.
GOOD = {
    "07": ("tno", "07.png", "07.png"),
    "19": ("tno", "19.png", "19.png"),
    "FLIR_06974": ("roadscene", "FLIR_06974.jpg", "FLIR_06974.jpg"),
    "FLIR_04722": ("roadscene", "FLIR_04722.jpg", "FLIR_04722.jpg"),
}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _hashes(*folders: Path) -> dict[str, str]:
    return {str(p): _sha(p) for folder in folders for p in sorted(folder.iterdir()) if p.is_file()}


def _run(script: Path, *args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(script), *map(str, args)],
        capture_output=True, text=True, timeout=600, cwd=REPO,
    )


@pytest.fixture(scope="module")
def workspace(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("fuse_cli")
    ir, vi = root / "ir", root / "vi"
    ir.mkdir()
    vi.mkdir()
    for stem, (dataset, ir_name, vi_name) in GOOD.items():
        shutil.copy(data_root / dataset / "test" / "ir" / ir_name, ir / ir_name)
        shutil.copy(data_root / dataset / "test" / "vi" / vi_name, vi / vi_name)
    tno = data_root / "tno" / "test"
    # Missing partner: an IR image without a VIS image.
    shutil.copy(tno / "ir" / "20.png", ir / "orphan.png")
    # Size mismatch: 256x256 IR with a 360x270 VIS image.
    shutil.copy(tno / "ir" / "07.png", ir / "mismatch.png")
    shutil.copy(tno / "vi" / "19.png", vi / "mismatch.png")
    # Truncated PNG (first half of a real file) and a non-image with a .jpg name.
    data = (tno / "ir" / "19.png").read_bytes()
    (ir / "truncated.png").write_bytes(data[: len(data) // 2])
    shutil.copy(tno / "vi" / "19.png", vi / "truncated.png")
    shutil.copy(tno / "ir" / "19.png", ir / "garbage.png")
    (vi / "garbage.jpg").write_bytes(b"this is not a JPEG file\n" * 10)

    torch.manual_seed(0)
    checkpoint = root / "tiny_refusion.pth"
    torch.save(ReFusionNet(**TINY).state_dict(), checkpoint)
    before = _hashes(ir, vi)
    out = root / "fused"
    result = _run(FUSE, "--ir", ir, "--vi", vi, "--out", out, "--checkpoint", checkpoint,
                  "--batch-size", 2, "--device", "cpu")
    return {"root": root, "ir": ir, "vi": vi, "out": out, "checkpoint": checkpoint,
            "before": before, "result": result}  # type: ignore[dict-item]


def test_fuse_writes_good_pairs_and_reports_bad_ones(workspace: dict) -> None:
    result: subprocess.CompletedProcess[str] = workspace["result"]
    log = result.stdout + result.stderr
    assert result.returncode == 1, log  # some pairs failed
    assert "fused 4 of 8 pairs" in result.stdout, log
    assert "4 failed" in result.stdout, log
    assert "missing partner" in log and "orphan.png" in log, log
    ir_file, vi_file = workspace["ir"] / "mismatch.png", workspace["vi"] / "mismatch.png"
    assert (f"FAILED mismatch: size mismatch: IR {str(ir_file)!r} is 256x256, "
            f"VIS {str(vi_file)!r} is 360x270") in log, log
    assert "FAILED truncated: unreadable file" in log and "truncated.png" in log, log
    assert "FAILED garbage: unreadable file" in log and "garbage.jpg" in log, log
    written = sorted(p.name for p in workspace["out"].iterdir())
    assert written == sorted(f"{stem}.png" for stem in GOOD), written


def test_fused_outputs_keep_size_and_colour(workspace: dict) -> None:
    for stem, (dataset, ir_name, vi_name) in GOOD.items():
        vi_path = workspace["vi"] / vi_name
        with Image.open(workspace["out"] / f"{stem}.png") as fused, Image.open(vi_path) as source:
            assert fused.size == source.size
            # TNO: equal-channel RGB files are grey -> grey output; RoadScene VIS is colour -> RGB.
            assert fused.mode == ("RGB" if dataset == "roadscene" else "L"), (stem, fused.mode)
        if dataset == "roadscene":
            fused_ycc = rgb_to_ycrcb(load_image(workspace["out"] / f"{stem}.png")[None])
            vi_ycc = rgb_to_ycrcb(load_image(vi_path)[None])
            # The chroma is the visible image's (up to 8-bit rounding and gamut clamping):
            # at least 20x closer to it than a grey output (Cr = Cb = 1/2) would be.
            colourfulness = float((vi_ycc[:, 1:] - 0.5).abs().mean())
            chroma_error = float((fused_ycc[:, 1:] - vi_ycc[:, 1:]).abs().mean())
            assert colourfulness > 0.005, (stem, colourfulness)
            assert chroma_error < 0.05 * colourfulness, (stem, chroma_error, colourfulness)


def test_fuse_matches_in_process_inference(workspace: dict) -> None:
    net = load_fusion_network(workspace["checkpoint"])
    stem = "FLIR_06974"
    expected = fuse_files(net, workspace["ir"] / f"{stem}.jpg", workspace["vi"] / f"{stem}.jpg")
    written = load_image(workspace["out"] / f"{stem}.png", channels=3)
    assert written.shape == expected.shape
    assert float((written - expected).abs().max()) <= 0.5 / 255 + 1e-6  # 8-bit rounding only


def test_fuse_never_writes_into_an_input_folder(workspace: dict) -> None:
    for folder in (workspace["ir"], workspace["vi"]):
        result = _run(FUSE, "--ir", workspace["ir"], "--vi", workspace["vi"], "--out", folder,
                      "--checkpoint", workspace["checkpoint"])
        assert result.returncode == 2, result.stdout + result.stderr
        assert "is the input folder" in result.stderr
    # An existing output is not replaced without --overwrite.
    out = workspace["root"] / "second"
    out.mkdir()
    (out / "07.png").write_bytes(b"keep me")
    ir_only, vi_only = workspace["root"] / "ir_one", workspace["root"] / "vi_one"
    ir_only.mkdir()
    vi_only.mkdir()
    shutil.copy(workspace["ir"] / "07.png", ir_only / "07.png")
    shutil.copy(workspace["vi"] / "07.png", vi_only / "07.png")
    result = _run(FUSE, "--ir", ir_only, "--vi", vi_only, "--out", out,
                  "--checkpoint", workspace["checkpoint"])
    assert result.returncode == 1
    assert "exists (pass --overwrite to replace it)" in result.stdout + result.stderr
    assert (out / "07.png").read_bytes() == b"keep me"
    assert _hashes(workspace["ir"], workspace["vi"]) == workspace["before"]


def test_fuse_with_config_and_mismatching_checkpoint(workspace: dict) -> None:
    root = workspace["root"]
    ir_only, vi_only = root / "ir_cfg", root / "vi_cfg"
    ir_only.mkdir()
    vi_only.mkdir()
    shutil.copy(workspace["ir"] / "07.png", ir_only / "07.png")
    shutil.copy(workspace["vi"] / "07.png", vi_only / "07.png")
    good_cfg = root / "tiny_cfg.py"
    good_cfg.write_text(f"model = dict(fusion_net=dict(type='ReFusionNet', **{TINY!r}))\n")
    out = root / "fused_cfg"
    result = _run(FUSE, "--ir", ir_only, "--vi", vi_only, "--out", out,
                  "--config", good_cfg, "--checkpoint", workspace["checkpoint"])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "fused 1 of 1 pairs" in result.stdout
    assert (out / "07.png").read_bytes() == (workspace["out"] / "07.png").read_bytes()

    wide_cfg = root / "wide_cfg.py"
    wide_cfg.write_text("fusion_net = dict(type='ReFusionNet', dim=16, num_blocks=1, heads=2)\n")
    result = _run(FUSE, "--ir", ir_only, "--vi", vi_only, "--out", root / "fused_wide",
                  "--config", wide_cfg, "--checkpoint", workspace["checkpoint"])
    assert result.returncode == 2
    assert "cannot load the fusion network" in result.stderr
    assert "tiny_refusion.pth" in result.stderr
    assert not (root / "fused_wide").exists()


def test_evaluate_methods_side_by_side(workspace: dict) -> None:
    out = workspace["root"] / "eval"
    result = _run(EVALUATE, "--ir", workspace["ir"], "--vi", workspace["vi"],
                  "--fused", workspace["out"], "--fused", workspace["vi"],
                  "--names", "tiny", "vis_alone", "--convention", "both",
                  "--metrics", "EN", "SSIM", "Qabf", "VIF", "--out", out)
    log = result.stdout + result.stderr
    # The VIS folder as a "method" includes the unmatched / broken extras -> failures.
    assert result.returncode == 1, log
    assert "FAILED vis_alone/garbage: unreadable file" in log, log
    rows = list(csv.DictReader((out / "tiny.csv").open()))
    assert [r["image"] for r in rows] == sorted(f"{stem}.png" for stem in GOOD)
    assert list(rows[0]) == ["image", "EN", "SSIM_mean", "SSIM_sum", "Qabf", "VIF_mean", "VIF_sum"]
    # Values are those of fusion_metrics on the files.
    row = rows[0]
    stem = Path(row["image"]).stem
    ir_name, vi_name = GOOD[stem][1], GOOD[stem][2]
    expected = fusion_metrics(
        load_image(workspace["out"] / row["image"])[None],
        load_image(workspace["ir"] / ir_name)[None],
        load_image(workspace["vi"] / vi_name)[None],
        metrics=["EN", "SSIM", "Qabf", "VIF"], convention="sum",
    )
    assert float(row["EN"]) == pytest.approx(float(expected["EN"][0]), rel=1e-12)
    assert float(row["SSIM_sum"]) == pytest.approx(float(expected["SSIM"][0]), rel=1e-12)
    assert float(row["SSIM_mean"]) == pytest.approx(float(expected["SSIM"][0]) / 2, rel=1e-12)
    assert float(row["VIF_sum"]) == pytest.approx(float(expected["VIF"][0]), rel=1e-12)

    summary = json.loads((out / "summary.json").read_text())
    assert summary["images"] == {"tiny": 4, "vis_alone": 4}  # mismatch, truncated, garbage fail
    mean_en = sum(float(r["EN"]) for r in rows) / len(rows)
    assert summary["means"]["mean"]["tiny"]["EN"] == pytest.approx(mean_en, rel=1e-12)
    assert summary["means"]["sum"]["tiny"]["SSIM"] == pytest.approx(
        2 * summary["means"]["mean"]["tiny"]["SSIM"], rel=1e-12)
    table = (out / "summary.md").read_text()
    assert "| tiny | 4 |" in table and "| vis_alone | 4 |" in table
    assert "Convention `sum`" in table and "Convention `mean`" in table
    assert _hashes(workspace["ir"], workspace["vi"]) == workspace["before"]


def test_evaluate_reports_bad_fused_images(workspace: dict) -> None:
    fused = workspace["root"] / "fused_bad"
    fused.mkdir()
    shutil.copy(workspace["out"] / "07.png", fused / "07.png")
    shutil.copy(workspace["out"] / "07.png", fused / "19.png")  # 256x256 for a 360x270 pair
    shutil.copy(workspace["out"] / "07.png", fused / "unknown.png")  # no sources
    data = (workspace["out"] / "FLIR_06974.png").read_bytes()
    (fused / "FLIR_06974.png").write_bytes(data[: len(data) // 3])
    out = workspace["root"] / "eval_bad"
    result = _run(EVALUATE, "--ir", workspace["ir"], "--vi", workspace["vi"], "--fused", fused,
                  "--metrics", "EN", "CC", "--out", out)
    log = result.stdout + result.stderr
    assert result.returncode == 1, log
    assert "FAILED fused_bad/19: size mismatch" in log, log
    assert "FAILED fused_bad/unknown: no source image with stem 'unknown' in --ir and --vi" in log, log
    assert "FAILED fused_bad/FLIR_06974: unreadable file" in log, log
    rows = list(csv.DictReader((out / "fused_bad.csv").open()))
    assert [r["image"] for r in rows] == ["07.png"]
    assert len(json.loads((out / "summary.json").read_text())["failures"]["fused_bad"]) == 3


def test_evaluate_usage_errors(workspace: dict, tmp_path: Path) -> None:
    result = _run(EVALUATE, "--ir", workspace["ir"], "--vi", workspace["vi"], "--fused",
                  workspace["out"], "--names", "a", "b", "--out", tmp_path / "e")
    assert result.returncode == 2 and "--names gives 2 names for 1 --fused folders" in result.stderr
    result = _run(EVALUATE, "--ir", workspace["ir"], "--vi", workspace["vi"], "--fused",
                  workspace["out"], "--metrics", "FMI", "--out", tmp_path / "e")
    assert result.returncode == 2 and "unknown metric" in result.stderr


# ----------------------------------------------------------------------------- in-process helpers
class _NeedsMultipleOf8(nn.Module):
    """Averages the sources; refuses sizes that are not multiples of 8."""

    size_divisor = 8

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if a.shape[-1] % 8 or a.shape[-2] % 8:
            raise ValueError(f"size {tuple(a.shape[-2:])} is not a multiple of 8")
        return self.scale * (a + b) / 2


def test_padding_is_applied_and_cropped_back() -> None:
    net = _NeedsMultipleOf8()
    a = torch.rand(2, 1, 37, 53)
    b = torch.rand(2, 1, 37, 53)
    fused = fuse_images(net, a, b)
    assert fused.shape == (2, 1, 37, 53)
    torch.testing.assert_close(fused, (a + b) / 2)
    padded, size = pad_to_multiple(a, 8)
    assert padded.shape[-2:] == (40, 56) and size == (37, 53)
    torch.testing.assert_close(crop_to(padded, size), a)
    with pytest.raises(ValueError, match="not a multiple of 8"):
        fuse_images(net, a, b, pad_multiple=1)


def test_colour_rules() -> None:
    net = _NeedsMultipleOf8()
    g = torch.Generator().manual_seed(0)
    rgb_a = torch.rand(3, 16, 24, generator=g)
    rgb_b = torch.rand(3, 16, 24, generator=g)
    grey = torch.rand(1, 16, 24, generator=g)
    assert fuse_images(net, grey, grey).shape == (1, 16, 24)
    one = fuse_images(net, grey, rgb_b)
    assert one.shape == (3, 16, 24)
    # The colour source's chroma is kept where the result stays inside the RGB gamut
    # (1e-3: the YCrCb round trip uses OpenCV's rounded inverse constants).
    kept = rgb_to_ycrcb(one[None])[:, 1:] - rgb_to_ycrcb(rgb_b[None])[:, 1:]
    assert float(kept.abs().median()) < 1e-3
    both = rgb_to_ycrcb(fuse_images(net, rgb_a, rgb_b)[None])
    expected_chroma = fuse_chroma(rgb_to_ycrcb(rgb_a[None])[:, 1:], rgb_to_ycrcb(rgb_b[None])[:, 1:])
    assert float((both[:, 1:] - expected_chroma).abs().median()) < 1e-3
    neutral = torch.full((1, 2, 2, 2), 0.5)
    torch.testing.assert_close(fuse_chroma(neutral, neutral), neutral)
    torch.testing.assert_close(
        fuse_chroma(torch.tensor([0.9]), torch.tensor([0.6])),
        torch.tensor([(0.9 * 0.4 + 0.6 * 0.1) / 0.5]),
    )
    with pytest.raises(ValueError, match="size mismatch"):
        fuse_images(net, grey, rgb_b[:, :8])
