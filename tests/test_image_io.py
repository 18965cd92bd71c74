"""Image I/O: load_image modes and bit depths, YCrCb against OpenCV, atomic save, pairing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from learnable_fusion_loss.datasets.io import (
    ImageReadError,
    find_pairs,
    load_image,
    rgb_to_luma,
    rgb_to_ycrcb,
    save_image,
    ycrcb_to_rgb,
)

RNG = np.random.default_rng(0)


def _rand_u8(*shape: int) -> np.ndarray:
    return RNG.integers(0, 256, size=shape, dtype=np.uint8)


# ----------------------------------------------------------------------------- load_image


def test_grey_png_loads_one_channel_exact(tmp_path: Path) -> None:
    arr = _rand_u8(7, 9)
    Image.fromarray(arr).save(tmp_path / "g.png")
    x = load_image(tmp_path / "g.png")
    assert x.shape == (1, 7, 9) and x.dtype == torch.float32
    assert torch.equal(x[0], torch.from_numpy(arr).float() / 255)


def test_rgb_with_equal_channels_becomes_one_channel(tmp_path: Path) -> None:
    grey = _rand_u8(6, 5)
    Image.fromarray(np.stack([grey] * 3, -1)).save(tmp_path / "eq.png")
    x = load_image(tmp_path / "eq.png")
    assert x.shape == (1, 6, 5)
    assert torch.equal(x[0], torch.from_numpy(grey).float() / 255)


def test_colour_png_keeps_three_channels(tmp_path: Path) -> None:
    arr = _rand_u8(6, 5, 3)
    Image.fromarray(arr).save(tmp_path / "c.png")
    x = load_image(tmp_path / "c.png")
    assert x.shape == (3, 6, 5)
    assert torch.equal(x, torch.from_numpy(arr).permute(2, 0, 1).float() / 255)


def test_forced_channels(tmp_path: Path) -> None:
    arr = _rand_u8(4, 4, 3)
    Image.fromarray(arr).save(tmp_path / "c.png")
    grey = load_image(tmp_path / "c.png", channels=1)
    expected = rgb_to_luma(load_image(tmp_path / "c.png")[None])[0]
    assert grey.shape == (1, 4, 4)
    torch.testing.assert_close(grey, expected, atol=1e-6, rtol=0)
    Image.fromarray(arr[..., 0]).save(tmp_path / "g.png")
    rgb = load_image(tmp_path / "g.png", channels=3)
    assert rgb.shape == (3, 4, 4) and torch.equal(rgb[0], rgb[2])
    with pytest.raises(ValueError, match="channels"):
        load_image(tmp_path / "g.png", channels=2)


def test_16bit_grey_png_scaled_by_65535(tmp_path: Path) -> None:
    arr = np.array([[0, 255, 1000], [30000, 65534, 65535]], dtype=np.uint16)
    Image.fromarray(arr).save(tmp_path / "ir16.png")
    with Image.open(tmp_path / "ir16.png") as img:
        assert img.mode.startswith("I")  # really stored as 16-bit
    x = load_image(tmp_path / "ir16.png")
    assert x.shape == (1, 2, 3)
    torch.testing.assert_close(
        x[0], torch.from_numpy(arr.astype(np.float32) / 65535), atol=1e-7, rtol=0
    )
    assert x.max() == 1.0 and 0.0 < x[0, 0, 1] < 0.01  # 255 is not "white" in 16 bit


def test_16bit_colour_png_keeps_precision(tmp_path: Path) -> None:
    cv2 = pytest.importorskip("cv2")
    rgb = np.zeros((2, 2, 3), dtype=np.uint16)
    rgb[0, 0] = (65535, 1000, 3)
    rgb[1, 1] = (257, 40000, 65535)
    assert cv2.imwrite(str(tmp_path / "c16.png"), rgb[..., ::-1].copy())  # cv2 wants BGR
    x = load_image(tmp_path / "c16.png")
    assert x.shape == (3, 2, 2)
    torch.testing.assert_close(
        x, torch.from_numpy(rgb.astype(np.float32) / 65535).permute(2, 0, 1), atol=1e-7, rtol=0
    )


def test_rgba_drops_alpha(tmp_path: Path) -> None:
    arr = _rand_u8(5, 5, 4)
    arr[..., 3] = 0  # fully transparent: must not turn the image black
    Image.fromarray(arr).save(tmp_path / "a.png")
    x = load_image(tmp_path / "a.png")
    assert x.shape == (3, 5, 5)
    assert torch.equal(x, torch.from_numpy(arr[..., :3]).permute(2, 0, 1).float() / 255)


def test_palette_and_la_modes(tmp_path: Path) -> None:
    arr = _rand_u8(6, 6, 3)
    pal = Image.fromarray(arr).quantize(colors=8)
    pal.save(tmp_path / "p.png")
    x = load_image(tmp_path / "p.png")
    expected = np.array(pal.convert("RGB"))
    assert x.shape == (3, 6, 6)
    assert torch.equal(x, torch.from_numpy(expected).permute(2, 0, 1).float() / 255)

    lum = _rand_u8(4, 4)
    Image.merge("LA", [Image.fromarray(lum), Image.fromarray(np.zeros((4, 4), np.uint8))]).save(
        tmp_path / "la.png"
    )
    with Image.open(tmp_path / "la.png") as img:
        assert img.mode == "LA"
    y = load_image(tmp_path / "la.png")
    assert y.shape == (1, 4, 4)
    assert torch.equal(y[0], torch.from_numpy(lum).float() / 255)


def test_truncated_png_raises_with_file_name(tmp_path: Path) -> None:
    Image.fromarray(_rand_u8(64, 64, 3)).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match="cut.png") as info:
        load_image(tmp_path / "cut.png")
    assert info.value.path == tmp_path / "cut.png"
    assert isinstance(info.value, ValueError)


def test_not_an_image_and_missing_file(tmp_path: Path) -> None:
    (tmp_path / "junk.png").write_bytes(b"this is not a png")
    with pytest.raises(ImageReadError, match=r"junk\.png.*not a recognised image"):
        load_image(tmp_path / "junk.png")
    with pytest.raises(FileNotFoundError, match="nope.png"):
        load_image(tmp_path / "nope.png")


def test_real_files_channel_rule(data_root: Path) -> None:
    tno_ir = load_image(data_root / "tno" / "test" / "ir" / "01.png")
    assert tno_ir.shape[0] == 1  # stored as RGB with equal channels
    msrs_vi = load_image(next((data_root / "msrs_det" / "train" / "vi").glob("*.png")))
    assert msrs_vi.shape == (3, 480, 640)
    rs_vi = load_image(next((data_root / "roadscene" / "test" / "vi").glob("*.jpg")))
    assert rs_vi.shape[0] == 3 and 0.0 <= float(rs_vi.min()) and float(rs_vi.max()) <= 1.0


# ----------------------------------------------------------------------------- colour


def test_ycrcb_matches_opencv_float() -> None:
    cv2 = pytest.importorskip("cv2")
    rgb = torch.rand(2, 3, 5, 7, generator=torch.Generator().manual_seed(1))
    ycrcb = rgb_to_ycrcb(rgb)
    for i in range(2):
        bgr = rgb[i].permute(1, 2, 0).numpy()[..., ::-1].copy()
        ref = cv2.cvtColor(bgr, cv2.COLOR_BGR2YCrCb)
        np.testing.assert_allclose(ycrcb[i].permute(1, 2, 0).numpy(), ref, atol=1e-5)
        back = cv2.cvtColor(ref, cv2.COLOR_YCrCb2BGR)[..., ::-1]
        np.testing.assert_allclose(
            ycrcb_to_rgb(ycrcb)[i].permute(1, 2, 0).numpy(), np.clip(back, 0, 1), atol=1e-5
        )


def test_ycrcb_matches_opencv_uint8_within_rounding() -> None:
    cv2 = pytest.importorskip("cv2")
    u8 = _rand_u8(16, 16, 3)
    ref = cv2.cvtColor(u8[..., ::-1].copy(), cv2.COLOR_BGR2YCrCb).astype(np.float32) / 255
    ours = rgb_to_ycrcb(torch.from_numpy(u8).permute(2, 0, 1)[None].float() / 255)[0].permute(
        1, 2, 0
    )
    assert np.abs(ours.numpy() - ref).max() <= 1.5 / 255  # OpenCV rounds its 8-bit output


def test_ycrcb_round_trip_and_ranges() -> None:
    rgb = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    ycrcb = rgb_to_ycrcb(rgb)
    assert float(ycrcb.min()) >= 0.0 and float(ycrcb.max()) <= 1.0
    torch.testing.assert_close(ycrcb_to_rgb(ycrcb), rgb, atol=1e-3, rtol=0)
    grey = torch.full((1, 3, 2, 2), 0.3)
    torch.testing.assert_close(
        rgb_to_ycrcb(grey)[:, 1:], torch.full((1, 2, 2, 2), 0.5), atol=1e-6, rtol=0
    )
    out = ycrcb_to_rgb(torch.tensor([1.0, 1.0, 0.0]).view(1, 3, 1, 1))
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0  # clamped
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        rgb_to_ycrcb(torch.rand(1, 1, 4, 4))


# ----------------------------------------------------------------------------- save_image


def test_save_round_trip_grey_and_rgb(tmp_path: Path) -> None:
    grey = torch.from_numpy(_rand_u8(1, 5, 6)).float() / 255
    rgb = torch.from_numpy(_rand_u8(3, 5, 6)).float() / 255
    save_image(tmp_path / "g.png", grey)
    save_image(tmp_path / "out" / "c.png", rgb)  # parent created
    assert torch.equal(load_image(tmp_path / "g.png"), grey)
    assert torch.equal(load_image(tmp_path / "out" / "c.png", channels=3), rgb)
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["c.png", "g.png"]


def test_save_clamps_and_rejects_bad_input(tmp_path: Path) -> None:
    save_image(tmp_path / "clamp.png", torch.tensor([[[-0.2, 1.3]]]))
    assert load_image(tmp_path / "clamp.png").flatten().tolist() == [0.0, 1.0]
    with pytest.raises(ValueError, match="NaN"):
        save_image(tmp_path / "nan.png", torch.tensor([[[float("nan")]]]))
    with pytest.raises(ValueError, match=r"\.png"):
        save_image(tmp_path / "x.jpg", torch.zeros(1, 2, 2))
    with pytest.raises(ValueError, match="C in"):
        save_image(tmp_path / "two.png", torch.zeros(2, 2, 2))


def test_save_never_overwrites_unless_asked(tmp_path: Path) -> None:
    target = tmp_path / "input.png"
    save_image(target, torch.zeros(1, 2, 2))
    with pytest.raises(FileExistsError, match="input.png"):
        save_image(target, torch.ones(1, 2, 2))
    assert float(load_image(target).max()) == 0.0
    save_image(target, torch.ones(1, 2, 2), overwrite=True)
    assert float(load_image(target).min()) == 1.0


def test_save_is_atomic_on_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "keep.png"
    save_image(target, torch.zeros(1, 2, 2))
    before = target.read_bytes()

    def broken_save(self: Image.Image, fp: object, *args: object, **kwargs: object) -> None:
        fp.write(b"partial")  # type: ignore[attr-defined]
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_image(target, torch.ones(1, 2, 2), overwrite=True)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["keep.png"]  # temp file removed


# ----------------------------------------------------------------------------- find_pairs


def test_find_pairs_by_stem_any_extension(tmp_path: Path) -> None:
    a, b = tmp_path / "ir", tmp_path / "vi"
    a.mkdir()
    b.mkdir()
    for stem in ("01", "02", "03"):
        Image.fromarray(_rand_u8(2, 2)).save(a / f"{stem}.png")
    for stem in ("01", "02", "04"):
        Image.fromarray(_rand_u8(2, 2, 3)).save(b / f"{stem}.jpg")
    (a / "notes.txt").write_text("not an image")
    pairs, problems = find_pairs(a, b)
    assert [p[0] for p in pairs] == ["01", "02"]
    assert pairs[0][1] == a / "01.png" and pairs[0][2] == b / "01.jpg"
    assert len(problems) == 2
    assert any("03.png" in p and "missing partner" in p for p in problems)
    assert any("04.jpg" in p and "missing partner" in p for p in problems)


def test_find_pairs_ambiguous_stem_and_missing_dir(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    for folder in (a, b):
        Image.fromarray(_rand_u8(2, 2)).save(folder / "x.png")
    Image.fromarray(_rand_u8(2, 2)).save(a / "x.bmp")
    pairs, problems = find_pairs(a, b)
    assert pairs == []
    assert len(problems) == 1 and "ambiguous" in problems[0] and "x.bmp" in problems[0]
    with pytest.raises(FileNotFoundError, match="missing_dir"):
        find_pairs(a, tmp_path / "missing_dir")
