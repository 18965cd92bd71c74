"""The model zoo: F and G of the CPU recipe load by name and reproduce their stored output."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from learnable_fusion_loss.apis import load_fusion_network
from learnable_fusion_loss.apis.zoo import find_zoo_entry, load_zoo_module, sha256_of, zoo_names
from learnable_fusion_loss.datasets import YoloPairedDetDataset
import projects.tdfusion.tdfusion  # noqa: F401 - registers its zoo folder and networks

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA = REPO_ROOT.parent / "shared" / "data"
NAME = "tdfusion_msrsdet_cpu"


def test_zoo_lists_the_cpu_model_and_its_files_are_small_and_intact():
    assert NAME in zoo_names()
    entry = find_zoo_entry(NAME)
    files = entry.manifest["files"]
    assert sum(f["bytes"] for f in files.values()) < 1_000_000
    for part in ("fusion_net", "generator"):
        assert sha256_of(entry.path(part)) == files[part]["sha256"]
    for key in ("config", "seed", "commit", "results", "reference"):
        assert entry.manifest.get(key) is not None, key
    assert (REPO_ROOT / entry.manifest["config"]).is_file()


@pytest.mark.skipif(not (DATA / "msrs_det").is_dir(), reason="needs ../shared/data/msrs_det")
def test_zoo_model_reproduces_its_stored_output_on_a_real_pair():
    reference = find_zoo_entry(NAME).manifest["reference"]
    dataset = YoloPairedDetDataset(root=str(DATA / "msrs_det"), split=reference["split"], pipeline=[])
    sample = dataset[dataset.ids.index(reference["pair"])]
    a, b = sample["source_a"][None], sample["source_b"][None]
    fusion_net = load_fusion_network(NAME)  # by name, through the inference API
    generator = load_zoo_module(NAME, "generator")
    with torch.no_grad():
        fused, weights = fusion_net(a, b), generator(a, b)
    pool = torch.nn.AdaptiveAvgPool2d(16)
    assert list(fused.shape[-2:]) == reference["size"]
    torch.testing.assert_close(pool(fused)[0, 0], torch.tensor(reference["fused_blocks"]),
                               atol=2e-4, rtol=0)
    torch.testing.assert_close(pool(weights[:, :1])[0, 0], torch.tensor(reference["w_ir_blocks"]),
                               atol=2e-4, rtol=0)


def test_a_changed_zoo_file_or_an_unknown_name_is_refused(tmp_path, monkeypatch):
    copy = tmp_path / "zoo" / "copied"
    shutil.copytree(find_zoo_entry(NAME).folder, copy)
    monkeypatch.setenv("LFL_ZOO_PATH", str(tmp_path / "zoo"))
    assert "copied" in zoo_names()
    load_zoo_module("copied", "generator")
    data = bytearray((copy / "generator.pth").read_bytes())
    data[-10] ^= 0xFF
    (copy / "generator.pth").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="sha256"):
        load_zoo_module("copied", "generator")
    with pytest.raises(KeyError, match=f"no zoo model named 'nothing'.*{NAME}"):
        find_zoo_entry("nothing")
    manifest = json.loads((copy / "manifest.json").read_text())
    del manifest["generator"]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(KeyError, match="no 'generator' config"):
        load_zoo_module("copied", "generator")


@pytest.mark.skipif(not (DATA / "tno").is_dir(), reason="needs ../shared/data/tno")
def test_fuse_tool_takes_a_zoo_name(tmp_path):
    ir, vi = tmp_path / "ir", tmp_path / "vi"
    ir.mkdir()
    vi.mkdir()
    for folder, source in ((ir, "ir"), (vi, "vi")):
        shutil.copy(DATA / "tno" / "test" / source / "01.png", folder / "01.png")
    done = subprocess.run(
        [sys.executable, "tools/fuse.py", "--ir", str(ir), "--vi", str(vi), "--out", str(tmp_path / "out"),
         "--checkpoint", NAME], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    from PIL import Image

    with Image.open(tmp_path / "out" / "01.png") as fused, Image.open(ir / "01.png") as source:
        assert fused.size == source.size
