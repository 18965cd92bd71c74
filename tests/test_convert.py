"""Official TDFusion state dicts → our networks; checkpoint loading."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from _reference_nets import ReferenceLPN, ReferenceReFusion, randomize_
from projects.tdfusion.tdfusion import (
    ReFusionNet,
    TDFusionLPN,
    convert_official_state_dict,
    load_fusion_checkpoint,
    load_official_state_dict,
    official_layout,
)

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"
KEYS_FILE = REFERENCE / "tdfusion_official_state_dict_keys.json"
KINDS = {
    "refusion": ("ReFusion", ReFusionNet, ReferenceReFusion),
    "lpn": ("LPN", TDFusionLPN, ReferenceLPN),
}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: one intra-op thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def published() -> dict[str, list[tuple[str, list[int]]]]:
    if not KEYS_FILE.is_file():
        pytest.fail(f"reference key list not found: {KEYS_FILE}")
    table = json.loads(KEYS_FILE.read_text())
    return {name: [(k, shape) for k, shape in rows] for name, rows in table.items()}


def _official_dict(rows: list[tuple[str, list[int]]], seed: int = 0) -> dict[str, torch.Tensor]:
    """Random values in the published layout; each ``.conv.`` alias IS its convolution's tensor."""
    generator = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}
    for key, shape in rows:
        alias_of = key.replace(".conv.", ".")
        if ".conv." in key and alias_of in sd:
            sd[key] = sd[alias_of]
        elif "temperature" in key or "norm" in key and key.endswith("weight"):
            sd[key] = 1 + 0.3 * torch.randn(shape, generator=generator)
        elif key == "out2.weight":
            sd[key] = torch.full(shape, 0.2)
        else:
            sd[key] = 0.15 * torch.randn(shape, generator=generator)
    return sd


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_layouts_equal_published_list(kind, published):
    name, fast_cls, ref_cls = KINDS[kind]
    rows = [(k, list(s)) for k, s in published[name]]
    assert [(k, list(v.shape)) for k, v in ref_cls().state_dict().items()] == rows
    assert [(k, list(v[1])) for k, v in official_layout(fast_cls()).items()] == rows


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_convert_places_every_tensor(kind, published):
    name, fast_cls, ref_cls = KINDS[kind]
    sd = _official_dict(published[name], seed=1)
    ours = convert_official_state_dict(sd, kind=kind)
    assert all(".conv." not in k and ".body." not in k for k in ours)
    assert len(ours) == len([k for k in sd if ".conv." not in k])
    model = fast_cls()
    model.load_state_dict(ours, strict=True)
    for key, value in sd.items():
        ours_key = key.replace(".conv.", ".").replace(".body.", ".")
        torch.testing.assert_close(ours[ours_key].reshape(value.shape), value, rtol=0, atol=0)
        loaded = model.state_dict()[ours_key].reshape(value.shape)
        torch.testing.assert_close(loaded, value, rtol=0, atol=0)
    assert ours["encoder1.0.attn.temperature"].shape == (8,)

    reference = ref_cls()
    reference.load_state_dict(sd, strict=True)
    generator = torch.Generator().manual_seed(0)
    a, b = torch.rand(2, 1, 1, 24, 31, generator=generator).unbind(0)
    with torch.no_grad():
        expected = reference(a, b)
        assert expected.std() > 0.02
        torch.testing.assert_close(model(a, b), expected, atol=1e-5, rtol=0)


def _expect_error(sd, kind, *fragments):
    with pytest.raises(ValueError) as info:
        convert_official_state_dict(sd, kind=kind)
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)
    model = KINDS[kind][1]()
    with pytest.raises(ValueError):
        load_official_state_dict(model, sd)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_mismatched_dicts_are_refused(kind, published):
    name = KINDS[kind][0]
    good = _official_dict(published[name])
    victim = "encoder2.1.ffn.dwconv.weight"

    missing = {k: v for k, v in good.items() if k != victim}
    _expect_error(missing, kind, "missing", victim)
    missing_alias = {k: v for k, v in good.items() if k != "encoder2.1.ffn.dwconv.conv.weight"}
    _expect_error(missing_alias, kind, "missing", "encoder2.1.ffn.dwconv.conv.weight")
    extra = {**good, "encoder2.1.ffn.extra.weight": torch.zeros(3)}
    _expect_error(extra, kind, "unexpected", "encoder2.1.ffn.extra.weight")
    wrong = {**good, "encoder1.0.norm2.body.bias": torch.zeros(17)}
    _expect_error(wrong, kind, "wrong shape", "encoder1.0.norm2.body.bias", "(16,)", "(17,)")
    stem = "project_in_1.weight" if kind == "refusion" else "patch_embed1.weight"
    wrong_stem = {**good, stem: torch.zeros(17, *good[stem].shape[1:])}  # blamed on itself
    _expect_error(wrong_stem, kind, "wrong shape", stem, "(17,", "width is 16")
    differ = dict(good)
    differ["encoder1.1.attn.qkv.conv.weight"] = good["encoder1.1.attn.qkv.weight"] + 1e-3
    _expect_error(differ, kind, "alias", "encoder1.1.attn.qkv.conv.weight")
    with pytest.raises(ValueError, match="kind"):
        convert_official_state_dict(good, kind="yolo")  # type: ignore[arg-type]


def test_wrong_network_is_refused(published):
    lpn_dict = _official_dict(published["LPN"])
    with pytest.raises(ValueError, match="project_in_1.weight"):
        convert_official_state_dict(lpn_dict, kind="refusion")
    with pytest.raises(ValueError, match="missing keys"):
        load_official_state_dict(ReFusionNet(), lpn_dict)
    with pytest.raises(TypeError):
        load_official_state_dict(torch.nn.Linear(2, 2), lpn_dict)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_non_default_config_is_inferred(kind):
    config = dict(dim=8, num_blocks=1, heads=4, ffn_expansion_factor=1.5, bias=True)
    _, fast_cls, ref_cls = KINDS[kind]
    reference = randomize_(ref_cls(**config), seed=2, scale=0.2)
    ours = convert_official_state_dict(reference.state_dict(), kind=kind)
    model = fast_cls(**config)
    model.load_state_dict(ours, strict=True)
    a, b = torch.rand(2, 1, 1, 10, 12).unbind(0)
    with torch.no_grad():
        torch.testing.assert_close(model(a, b), reference(a, b), atol=1e-5, rtol=0)


def test_load_fusion_checkpoint_formats(tmp_path, published):
    official = _official_dict(published["ReFusion"], seed=3)
    expected_net = load_official_state_dict(ReFusionNet(), official)
    ours = expected_net.state_dict()
    a, b = torch.rand(2, 1, 1, 16, 20).unbind(0)
    with torch.no_grad():
        expected = expected_net(a, b)

    lpn_keys = {f"loss.generator.{k}": v for k, v in TDFusionLPN().state_dict().items()}
    files = {
        "plain.pth": ours,
        "wrapped.pth": {"state_dict": ours, "meta": {"epoch": 3}},
        "mmengine.pth": {
            "meta": {"iter": 10},
            "state_dict": {**{f"fusion_net.{k}": v for k, v in ours.items()}, **lpn_keys},
        },
        "official.pth": official,  # aliases share storage, as in the release files
        "official_wrapped.pth": {"state_dict": {f"module.{k}": v for k, v in official.items()}},
    }
    for filename, content in files.items():
        torch.save(content, tmp_path / filename)
        net = load_fusion_checkpoint(tmp_path / filename)
        assert isinstance(net, ReFusionNet), filename
        with torch.no_grad():
            torch.testing.assert_close(net(a, b), expected, atol=0, rtol=0, msg=filename)
    given = ReFusionNet()
    assert load_fusion_checkpoint(tmp_path / "mmengine.pth", model=given) is given

    # errors that name the problem
    torch.save({"state_dict": lpn_keys}, tmp_path / "lpn_only.pth")
    with pytest.raises(ValueError, match="no ReFusion weights"):
        load_fusion_checkpoint(tmp_path / "lpn_only.pth")
    broken = {k: v for k, v in ours.items() if k != "decoder.1.attn.temperature"}
    torch.save(broken, tmp_path / "broken.pth")
    with pytest.raises(ValueError, match="decoder.1.attn.temperature"):
        load_fusion_checkpoint(tmp_path / "broken.pth")
    with pytest.raises(ValueError, match="wrong shapes"):
        load_fusion_checkpoint(tmp_path / "plain.pth", model=ReFusionNet(dim=8, heads=4))
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pth"):
        load_fusion_checkpoint(tmp_path / "junk.pth")
