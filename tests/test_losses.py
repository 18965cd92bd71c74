"""Loss terms against hand-computed values and an independent loop implementation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from learnable_fusion_loss.generators import ConstantWeights, ConvWeightGenerator
from learnable_fusion_loss.losses import (
    LearnableFusionLoss,
    fusion_loss,
    gradient_loss,
    intensity_loss,
    sobel,
)

SOBEL_X = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=np.float64)
SOBEL_Y = SOBEL_X.T


def _sobel_loops(img: np.ndarray, padding: str) -> tuple[np.ndarray, np.ndarray]:
    """Sobel by explicit loops (cross-correlation, as conv2d), zero or edge padding."""
    mode = "constant" if padding == "zeros" else "edge"
    padded = np.pad(img, 1, mode=mode)
    gx, gy = np.zeros_like(img), np.zeros_like(img)
    for i in range(img.shape[0]):
        for j in range(img.shape[1]):
            window = padded[i : i + 3, j : j + 3]
            gx[i, j] = (window * SOBEL_X).sum()
            gy[i, j] = (window * SOBEL_Y).sum()
    return gx, gy


def _t(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(x)[None, None]


def test_intensity_hand_computed():
    fused = _t(np.array([[0.0, 1.0]]))
    a = _t(np.array([[1.0, 1.0]]))
    b = _t(np.array([[0.0, 0.0]]))
    w = torch.tensor([[[[0.25, 0.5]], [[0.75, 0.5]]]], dtype=torch.float64)
    # paper: pixel 1: 0.25·1 + 0.75·0, pixel 2: 0.5·0 + 0.5·1 → mean(0.25, 0.5)
    assert intensity_loss(fused, a, b, weight_maps=w).item() == pytest.approx(0.375, abs=1e-15)
    # official: mean((w_a(a-f))²) + mean((w_b(b-f))²) = mean(1/16, 0) + mean(0, 1/4)
    official = intensity_loss(fused, a, b, weight_maps=w, form="public").item()
    assert official == pytest.approx(0.03125 + 0.125, abs=1e-15)


def test_sobel_hand_computed_delta():
    img = np.zeros((3, 3))
    img[1, 1] = 1.0
    grads = sobel(_t(img)).numpy()[0, 0]
    # correlation with a centred delta gives the flipped kernel
    np.testing.assert_array_equal(grads[0], SOBEL_X[::-1, ::-1])
    np.testing.assert_array_equal(grads[1], SOBEL_Y[::-1, ::-1])


@pytest.mark.parametrize("padding", ["zeros", "replicate"])
def test_terms_match_loop_reference(padding: str):
    rng = np.random.default_rng(0)
    f, a, b = (rng.random((5, 6)) for _ in range(3))
    wa = rng.random((5, 6))
    w = np.stack([wa, 1 - wa])

    gf, ga, gb = (_sobel_loops(x, padding) for x in (f, a, b))
    # paper magnitude form: | |∇f| − max(|∇a|, |∇b|) |, |∇| = |gx| + |gy|
    mag = lambda g: np.abs(g[0]) + np.abs(g[1])  # noqa: E731
    expected_mag = np.abs(mag(gf) - np.maximum(mag(ga), mag(gb))).mean()
    # public per-axis form: per axis pick the source derivative of larger |.| (ties → a)
    expected_axis = 0.0
    for d in range(2):
        target = np.where(np.abs(ga[d]) >= np.abs(gb[d]), ga[d], gb[d])
        expected_axis += np.abs(gf[d] - target).mean()
    expected_paper = (wa * (f - a) ** 2 + (1 - wa) * (f - b) ** 2).mean()
    expected_official = ((wa * (a - f)) ** 2).mean() + (((1 - wa) * (b - f)) ** 2).mean()

    tw = torch.from_numpy(w)[None]
    F, A, B = _t(f), _t(a), _t(b)
    kw = dict(padding=padding)
    assert gradient_loss(F, A, B, form="paper", **kw).item() == pytest.approx(expected_mag, rel=1e-12)
    assert gradient_loss(F, A, B, form="public", **kw).item() == pytest.approx(expected_axis, rel=1e-12)
    assert intensity_loss(F, A, B, weight_maps=tw).item() == pytest.approx(expected_paper, rel=1e-12)
    assert intensity_loss(F, A, B, weight_maps=tw, form="public").item() == pytest.approx(
        expected_official, rel=1e-12
    )
    total = fusion_loss(F, A, B, weight_maps=tw, alpha=0.7, padding=padding)
    assert total["loss"].item() == pytest.approx(expected_paper + 0.7 * expected_mag, rel=1e-12)


def test_axis_form_tie_goes_to_first_source():
    a = _t(np.array([[0.0, 1.0, 0.0]]))
    b = -a  # |∂x| equal everywhere, signs opposite: the first source wins
    fused = a.clone()
    assert gradient_loss(fused, a, b, form="public").item() == 0.0
    assert gradient_loss(b.clone(), a, b, form="public").item() > 0.0


def test_generated_weights_sum_to_one():
    torch.manual_seed(0)
    a, b = torch.rand(2, 1, 9, 11), torch.rand(2, 1, 9, 11)
    for generator in (ConvWeightGenerator(), ConstantWeights()):
        weights = generator(a, b)
        assert weights.shape == (2, 2, 9, 11)
        torch.testing.assert_close(weights.sum(dim=1), torch.ones(2, 9, 11))
        assert bool((weights >= 0).all())
    assert torch.all(ConstantWeights()(a, b) == 0.5)
    torch.testing.assert_close(ConstantWeights((1.0, 3.0))(a, b)[:, 1], torch.full((2, 9, 11), 0.75))


def test_learnable_fusion_loss_returns_terms_and_weights():
    torch.manual_seed(0)
    loss = LearnableFusionLoss(ConvWeightGenerator(), alpha=1.0)
    a, b, f = (torch.rand(1, 1, 8, 8) for _ in range(3))
    out = loss(f, a, b)
    assert set(out.terms) == {"loss", "loss_int", "loss_grad"}
    assert out.loss_params.shape == (1, 2, 8, 8)
    torch.testing.assert_close(out.loss, out.terms["loss_int"] + out.terms["loss_grad"])
    out.loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in loss.generator.parameters())
    frozen = loss(f, a, b, detach_params=True)
    assert not frozen.loss_params.requires_grad


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((torch.rand(1, 1, 4, 4), torch.rand(1, 1, 4, 5), torch.rand(1, 1, 4, 4)), r"a=\(1, 1, 4, 5\)"),
        ((torch.rand(1, 1, 4, 4), torch.rand(1, 1, 4, 4), torch.rand(1, 3, 4, 4)), r"b must have 1 channel"),
        ((torch.rand(1, 2, 4, 4), torch.rand(1, 1, 4, 4), torch.rand(1, 1, 4, 4)), r"fused must have 1"),
        ((torch.rand(1, 4, 4), torch.rand(1, 1, 4, 4), torch.rand(1, 1, 4, 4)), r"fused must have shape"),
    ],
)
def test_bad_input_names_the_argument(args, match):
    loss = LearnableFusionLoss(ConstantWeights())
    with pytest.raises(ValueError, match=match):
        loss(*args)


def test_non_finite_input_names_the_argument():
    loss = LearnableFusionLoss(ConstantWeights())
    a = torch.rand(1, 1, 4, 4)
    bad = a.clone()
    bad[0, 0, 1, 1] = float("nan")
    with pytest.raises(ValueError, match="b contains NaN or Inf"):
        loss(a.clone(), a, bad)
    with pytest.raises(ValueError, match=r"weight_maps must have shape"):
        intensity_loss(a, a, a, weight_maps=torch.rand(1, 3, 4, 4))
    with pytest.raises(ValueError, match="alpha"):
        LearnableFusionLoss(ConstantWeights(), alpha=-1)


@pytest.mark.parametrize("padding", ["reflect", "circular", "Zeros", "", None, 1])
def test_bad_padding_is_refused_when_the_loss_is_built(padding):
    # Before: LearnableFusionLoss stored any padding and only sobel() refused it, at
    # the first forward; with alpha=0 it was never refused at all.
    message = r"padding must be one of \('zeros', 'replicate'\), got "
    for alpha in (1.0, 0.0):
        with pytest.raises(ValueError, match=message):
            LearnableFusionLoss(ConstantWeights(), alpha=alpha, padding=padding)
    a = torch.rand(1, 1, 6, 6)
    weights = torch.full((1, 2, 6, 6), 0.5)
    with pytest.raises(ValueError, match=message):  # the term skips the gradient, not the check
        fusion_loss(a, a, a, weight_maps=weights, alpha=0.0, padding=padding)
    with pytest.raises(ValueError, match=message):
        gradient_loss(a, a, a, padding=padding)


def test_every_listed_padding_is_supported():
    from learnable_fusion_loss.losses.terms import PADDINGS

    assert PADDINGS == ("zeros", "replicate")
    image = torch.rand(1, 1, 6, 6)
    for padding in PADDINGS:  # the list the error names is the list that works
        loss = LearnableFusionLoss(ConstantWeights(), padding=padding)
        assert loss.padding == padding and f"padding={padding!r}" in loss.extra_repr()
        assert torch.isfinite(loss(image, image, image.flip(-1)).loss)
        assert sobel(image, padding).shape == (1, 1, 2, 6, 6)


def test_the_default_generator_is_never_silently_missing(monkeypatch):
    # generators/__init__.py used to swallow a ModuleNotFoundError of tdfusion_lpn and
    # export a package without TDFusionLPN; a broken install must fail loudly instead.
    # TDFusionLPN now lives in the TDFusion project's package (projects.tdfusion.tdfusion.lpn).
    import importlib
    import sys

    import projects.tdfusion.tdfusion  # noqa: F401 - the package whose import must fail below

    monkeypatch.setitem(sys.modules, "projects.tdfusion.tdfusion.lpn", None)
    monkeypatch.delitem(sys.modules, "projects.tdfusion.tdfusion")
    with pytest.raises(ModuleNotFoundError, match="lpn"):
        importlib.import_module("projects.tdfusion.tdfusion")


@pytest.mark.parametrize("argument, old, new", [
    ("intensity_form", "official", "public"),
    ("gradient_form", "axis", "public"),
    ("gradient_form", "magnitude", "paper"),
])
def test_renamed_forms_fail_naming_the_new_name(argument: str, old: str, new: str) -> None:
    from learnable_fusion_loss.generators import ConstantWeights
    from learnable_fusion_loss.losses import LearnableFusionLoss

    with pytest.raises(ValueError, match=f"{argument} '{old}' was renamed '{new}'"):
        LearnableFusionLoss(ConstantWeights(), **{argument: old})
    a = torch.rand(1, 1, 4, 4)
    with pytest.raises(ValueError, match=f"{argument} '{old}' was renamed '{new}'"):
        fusion_loss(a, a, a, weight_maps=torch.full((1, 2, 4, 4), 0.5), **{argument: old})
