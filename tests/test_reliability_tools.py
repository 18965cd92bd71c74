"""The reliability catalogue, continued: tools/fuse.py and tools/evaluate.py (issue 14).

Items 5, 6, 7, 9, 10 and the file messages of item 11, one test each (several
asserting on one shared run of a tool). The tools run in a subprocess as a user
runs them, except where a fault (out of memory, a read-only file system) is
injected in-process with ``monkeypatch``. A small random ReFusionNet and real TNO
pairs keep every run to a few seconds.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from types import ModuleType

import pytest
import torch
from PIL import Image

from learnable_fusion_loss.datasets import find_pairs
from projects.tdfusion.tdfusion import ReFusionNet

from _scripts import load_script

REPO = Path(__file__).resolve().parents[1]
FUSE = REPO / "tools" / "fuse.py"
EVALUATE = REPO / "tools" / "evaluate.py"


def _run(script: Path, *args: object, umask: int | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(script), *map(str, args)], capture_output=True, text=True,
        timeout=600, cwd=REPO, env=dict(os.environ, OMP_NUM_THREADS="1"),
        preexec_fn=(lambda: os.umask(umask)) if umask is not None else None,
    )


def _log(done: subprocess.CompletedProcess) -> str:
    return f"exit {done.returncode}\n--- stdout\n{done.stdout[-3000:]}\n--- stderr\n{done.stderr[-3000:]}"


def _last_error(done: subprocess.CompletedProcess) -> str:
    lines = done.stderr.strip().splitlines()
    return lines[-1] if lines else ""


def _tool_module(path: Path) -> ModuleType:
    """A tool imported in-process, so a fault can be injected into it."""
    return load_script(path)


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG that claims ``width x height`` (8-bit grey) with a few bytes of data: a "bomb"."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                     + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def root(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ir/, vi/: pairs 07 and 19 of TNO; checkpoint.pth: a small random ReFusionNet."""
    base = tmp_path_factory.mktemp("reliability_tools")
    for source in ("ir", "vi"):
        (base / source).mkdir()
        for name in ("07.png", "19.png"):
            shutil.copy(data_root / "tno" / "test" / source / name, base / source / name)
    torch.manual_seed(0)
    torch.save(ReFusionNet(dim=8, num_blocks=1, heads=2).state_dict(), base / "checkpoint.pth")
    return base


@pytest.fixture(scope="module")
def bad_fuse_run(root: Path) -> dict:
    """fuse.py on a folder pair holding, before the good pair 07, a 400 Mpx "bomb", a
    broken symbolic link and a size mismatch."""
    ir, vi = root / "bad_ir", root / "bad_vi"
    ir.mkdir()
    vi.mkdir()
    for folder in (ir, vi):
        _png_header_only(folder / "00bomb.png", 20000, 20000)
    shutil.copy(root / "ir" / "07.png", ir / "07.png")
    shutil.copy(root / "vi" / "07.png", vi / "07.png")
    shutil.copy(root / "ir" / "07.png", ir / "01link.png")
    (vi / "01link.png").symlink_to(root / "no_such_file.png")
    shutil.copy(root / "ir" / "07.png", ir / "02size.png")  # 256x256 with a 360x270 VIS
    shutil.copy(root / "vi" / "19.png", vi / "02size.png")
    out = root / "bad_out"
    done = _run(FUSE, "--ir", ir, "--vi", vi, "--out", out, "--checkpoint", root / "checkpoint.pth")
    return {"ir": ir, "vi": vi, "out": out, "done": done}


# ------------------------------------------------------------------ item 5

def _read_only_mkdir(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """``Path.mkdir`` fails on ``folder`` as on a read-only file system (EROFS)."""
    real_mkdir = Path.mkdir

    def read_only(self: Path, *args, **kwargs):
        if self == folder:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", read_only)

def test_fuse_fails_a_too_large_image_per_file(bad_fuse_run: dict):
    """PIL's DecompressionBombError used to stop fuse.py with a traceback before pair 07."""
    done = bad_fuse_run["done"]
    assert done.returncode == 1, _log(done)
    bomb = bad_fuse_run["ir"] / "00bomb.png"
    log = done.stdout + done.stderr  # FAILED lines go through the progress bar
    assert f"FAILED 00bomb: unreadable file: cannot read image {str(bomb)!r}: too large" in log
    assert "Traceback" not in log, _log(done)
    assert sorted(p.name for p in bad_fuse_run["out"].iterdir()) == ["07.png"]
    assert "fused 1 of 4 pairs" in done.stdout, _log(done)


def _two_methods(root: Path) -> tuple[Path, Path]:
    first, second = root / "method_a", root / "method_b"
    for folder in (first, second):
        if not folder.exists():
            shutil.copytree(root / "vi", folder)
    return first, second


def test_evaluate_survives_out_of_memory_on_one_image(root: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch):
    """An error inside the metrics of one image (here MemoryError) used to lose every result."""
    evaluate = _tool_module(EVALUATE)
    real = evaluate.fusion_metrics
    calls = []

    def fails_once(fused, a, b, **kwargs):
        calls.append(tuple(fused.shape))
        if len(calls) == 1:
            raise MemoryError("injected: out of memory")
        return real(fused, a, b, **kwargs)

    monkeypatch.setattr(evaluate, "fusion_metrics", fails_once)
    first, second = _two_methods(root)
    out = tmp_path / "eval"
    status = evaluate.main(["--ir", str(root / "ir"), "--vi", str(root / "vi"), "--fused", str(first),
                            str(second), "--metrics", "EN", "SD", "--out", str(out)])
    assert status == 1
    summary = json.loads((out / "summary.json").read_text())
    assert summary["images"] == {"method_a": 1, "method_b": 2}
    (failure,) = summary["failures"]["method_a"]
    assert failure.startswith("07: metrics failed on ") and "MemoryError" in failure, failure
    assert str(first / "07.png") in failure


def test_evaluate_checks_out_before_computing(root: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch, capsys):
    """An --out that cannot be created used to be found only after every metric was computed."""
    evaluate = _tool_module(EVALUATE)
    calls = []
    monkeypatch.setattr(evaluate, "fusion_metrics", lambda *a, **k: calls.append(a))
    out = tmp_path / "readonly" / "eval"
    _read_only_mkdir(monkeypatch, out)
    status = evaluate.main(["--ir", str(root / "ir"), "--vi", str(root / "vi"),
                            "--fused", str(root / "vi"), "--out", str(out)])
    assert status == 2 and calls == []
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error == f"error: cannot create --out folder {str(out)!r}: Read-only file system", error


# ------------------------------------------------------------------ item 6
def test_undefined_values_are_reported_and_left_out_of_the_mean(root: Path, tmp_path: Path):
    """A constant fused image makes its CC nan, which made the method's mean nan (null)."""
    fused = tmp_path / "fused"
    fused.mkdir()
    Image.new("L", (256, 256), 128).save(fused / "07.png")  # constant: CC is 0/0
    shutil.copy(root / "vi" / "19.png", fused / "19.png")
    out = tmp_path / "eval"
    done = _run(EVALUATE, "--ir", root / "ir", "--vi", root / "vi", "--fused", fused,
                "--metrics", "EN", "CC", "--out", out)
    assert done.returncode == 0, _log(done)
    assert "undefined fused/07.png: CC = nan (left out of the mean)" in done.stderr, _log(done)
    summary = json.loads((out / "summary.json").read_text())
    rows = (out / "fused.csv").read_text().splitlines()
    cc_19 = float(next(r for r in rows if r.startswith("19.png")).split(",")[2])
    assert summary["means"]["mean"]["fused"]["CC"] == pytest.approx(cc_19, rel=1e-12)
    assert summary["defined"]["fused"] == {"EN": 2, "CC": 1}
    assert summary["undefined"]["fused"] == {"07.png": {"CC": None}}
    assert f"| fused | 2 | {summary['means']['mean']['fused']['EN']:.4f} | {cc_19:.4f} (1/2) |" in (
        out / "summary.md").read_text()


def test_nothing_to_do_is_an_error(root: Path, tmp_path: Path):
    """An empty --fused folder, or empty fuse.py inputs, used to exit 0 (a nan table, "0 of 0")."""
    empty_a, empty_b = tmp_path / "empty_a", tmp_path / "empty_b"
    empty_a.mkdir()
    empty_b.mkdir()
    done = _run(EVALUATE, "--ir", root / "ir", "--vi", root / "vi", "--fused", empty_a,
                "--out", tmp_path / "eval")
    assert done.returncode == 2, _log(done)
    assert _last_error(done) == f"error: nothing to evaluate: --fused {str(empty_a)!r} hold(s) no image files"
    assert not (tmp_path / "eval").exists()
    done = _run(FUSE, "--ir", empty_a, "--vi", empty_b, "--out", tmp_path / "fused",
                "--checkpoint", root / "checkpoint.pth")
    assert done.returncode == 2, _log(done)
    assert _last_error(done).startswith("error: nothing to fuse: ") and str(empty_a) in done.stderr


# ------------------------------------------------------------------ item 7
def test_evaluate_protects_its_outputs_and_its_sources(root: Path, tmp_path: Path):
    """evaluate.py used to overwrite its outputs silently and accept --out equal to a source."""
    out = tmp_path / "eval"
    args = ["--ir", root / "ir", "--vi", root / "vi", "--fused", root / "vi", "--metrics", "EN"]
    assert _run(EVALUATE, *args, "--out", out).returncode == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    done = _run(EVALUATE, *args, "--out", out)
    assert done.returncode == 2, _log(done)
    assert "already holds vi.csv, summary.md, summary.json (pass --overwrite" in _last_error(done)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert _run(EVALUATE, *args, "--out", out, "--overwrite").returncode == 0
    for source in ("ir", "vi"):
        sources = {p.name: p.read_bytes() for p in (root / source).iterdir()}
        done = _run(EVALUATE, *args, "--out", root / source, "--overwrite")
        assert done.returncode == 2, _log(done)
        assert "is the input folder" in _last_error(done) and f"(--{source})" in _last_error(done)
        assert {p.name: p.read_bytes() for p in (root / source).iterdir()} == sources


# ------------------------------------------------------------------ item 9
@pytest.mark.parametrize("tool", ["fuse", "evaluate"])
def test_out_that_is_a_file_is_a_usage_error(tool: str, root: Path, tmp_path: Path):
    """An --out that is an existing file gave a traceback and exit 1."""
    out = tmp_path / "results.txt"
    out.write_text("keep")
    if tool == "fuse":
        done = _run(FUSE, "--ir", root / "ir", "--vi", root / "vi", "--out", out,
                    "--checkpoint", root / "checkpoint.pth")
    else:
        done = _run(EVALUATE, "--ir", root / "ir", "--vi", root / "vi", "--fused", root / "vi",
                    "--out", out)
    assert done.returncode == 2, _log(done)
    assert _last_error(done) == f"error: --out {str(out)!r} exists and is not a folder"
    assert "Traceback" not in done.stderr and out.read_text() == "keep"


def test_fuse_out_on_a_read_only_file_system(root: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch, capsys):
    """A new --out folder on a read-only file system gave a traceback and exit 1."""
    fuse = _tool_module(FUSE)
    out = tmp_path / "mnt" / "fused"
    _read_only_mkdir(monkeypatch, out)
    status = fuse.main(["--ir", str(root / "ir"), "--vi", str(root / "vi"), "--out", str(out),
                        "--checkpoint", str(root / "checkpoint.pth")])
    assert status == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error == f"error: cannot create --out folder {str(out)!r}: Read-only file system", error


# ------------------------------------------------------------------ item 10
def test_outputs_get_the_mode_of_a_plain_file(root: Path, tmp_path: Path):
    """Fused PNGs and evaluate's files were 0600 (mkstemp's mode, never widened)."""
    fused, out = tmp_path / "fused", tmp_path / "eval"
    done = _run(FUSE, "--ir", root / "ir", "--vi", root / "vi", "--out", fused,
                "--checkpoint", root / "checkpoint.pth", umask=0o022)
    assert done.returncode == 0, _log(done)
    done = _run(EVALUATE, "--ir", root / "ir", "--vi", root / "vi", "--fused", fused,
                "--metrics", "EN", "--out", out, umask=0o022)
    assert done.returncode == 0, _log(done)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for folder in (fused, out) for p in folder.iterdir()}
    assert sorted(modes) == ["07.png", "19.png", "fused.csv", "summary.json", "summary.md"]
    assert set(modes.values()) == {0o644}, {k: oct(v) for k, v in modes.items()}


# ------------------------------------------------------------------ item 11 (files)
def test_size_mismatch_names_the_ir_and_the_vis_file(bad_fuse_run: dict):
    """Both files of a pair share their name: the message gave "02size.png" twice."""
    ir, vi = bad_fuse_run["ir"] / "02size.png", bad_fuse_run["vi"] / "02size.png"
    assert (f"FAILED 02size: size mismatch: IR {str(ir)!r} is 256x256, "
            f"VIS {str(vi)!r} is 360x270 (W x H)") in bad_fuse_run["done"].stdout


def test_a_dangling_symlink_is_reported_as_such(bad_fuse_run: dict):
    """The link's partner used to be reported as a "missing partner"."""
    link = bad_fuse_run["vi"] / "01link.png"
    log = bad_fuse_run["done"].stdout + bad_fuse_run["done"].stderr
    assert f"broken symbolic link: {str(link)!r} points to" in log, log
    assert "missing partner" not in log, log
    pairs, problems = find_pairs(bad_fuse_run["ir"], bad_fuse_run["vi"])
    assert [stem for stem, _, _ in pairs] == ["00bomb", "02size", "07"]
    assert problems == [f"broken symbolic link: {str(link)!r} points to "
                        f"{os.readlink(link)!r}, which does not exist"]
