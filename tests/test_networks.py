"""ReFusionNet (F) and TDFusionLPN (G) against a plain NCHW reference implementation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.func import functional_call

from _reference_nets import ReferenceLPN, ReferenceReFusion, randomize_
from learnable_fusion_loss.nn import (
    RestormerBlock,
    conv3x3,
    merge_block_pair,
    restormer_block_nhwc,
)
from learnable_fusion_loss.registry import MODELS
from projects.tdfusion.tdfusion import ReFusionNet, TDFusionLPN, load_official_state_dict

@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: one intra-op thread (OpenMP fan-out only costs here, badly on a busy box)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


NETS = {"refusion": (ReFusionNet, ReferenceReFusion), "lpn": (TDFusionLPN, ReferenceLPN)}
NAMES = ("00020N.png", "00095D.png")


def _grey(path: Path) -> torch.Tensor:
    array = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64) / 255.0
    luma = array @ np.array([0.299, 0.587, 0.114])  # BT.601 Y
    return torch.from_numpy(luma).float()


@pytest.fixture(scope="module")
def msrs_pair(data_root: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Two real IR/VIS pairs cropped to 64×96 (odd offsets), ``[2, 1, 64, 96]`` each."""
    folder = data_root / "msrs_det" / "test"
    ir = [_grey(folder / "ir" / name)[201:265, 313:409] for name in NAMES]
    vi = [_grey(folder / "vi" / name)[201:265, 313:409] for name in NAMES]
    a, b = torch.stack(ir).unsqueeze(1), torch.stack(vi).unsqueeze(1)
    assert a.std() > 0.01 and b.std() > 0.01  # real content, not a blank crop
    return a, b


def _pair(kind: str, seed: int = 0, scale: float = 0.15, dtype=torch.float32, **config):
    fast_cls, ref_cls = NETS[kind]
    reference = randomize_(ref_cls(**config), seed=seed, scale=scale).to(dtype)
    fast = load_official_state_dict(fast_cls(**config).to(dtype), reference.state_dict())
    return fast, reference


@pytest.mark.parametrize("kind", sorted(NETS))
@pytest.mark.parametrize("grad", [False, True], ids=["no_grad", "autograd"])
def test_matches_reference_float32(kind, grad, msrs_pair):
    fast, reference = _pair(kind, seed=3)
    a, b = msrs_pair
    with torch.no_grad():
        expected = reference(a, b)
    with torch.set_grad_enabled(grad):
        got = fast(a, b)
    assert got.shape == expected.shape == (2, 1 if kind == "refusion" else 2, 64, 96)
    assert expected.std() > 0.05  # the random weights give a non-trivial output
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind", sorted(NETS))
def test_matches_reference_default_init_and_other_configs(kind, msrs_pair):
    a, b = (t[:1, :, :37, :53] for t in msrs_pair)  # odd size, one image
    for config in ({}, dict(dim=8, num_blocks=1, heads=4, bias=True), dict(num_blocks=3, heads=2)):
        torch.manual_seed(0)
        reference = NETS[kind][1](**config)
        if config:
            randomize_(reference, seed=1, scale=0.15)
        fast = load_official_state_dict(NETS[kind][0](**config), reference.state_dict())
        with torch.no_grad():
            torch.testing.assert_close(fast(a, b), reference(a, b), atol=1e-5, rtol=0)
        torch.testing.assert_close(fast(a, b), reference(a, b), atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind", sorted(NETS))
def test_float64_matches_reference_tightly(kind):
    fast, reference = _pair(kind, seed=5, scale=0.3, dtype=torch.float64)
    generator = torch.Generator().manual_seed(0)
    a, b = torch.rand(2, 2, 1, 19, 26, generator=generator, dtype=torch.float64).unbind(0)
    expected = reference(a, b)
    for grad in (False, True):
        with torch.set_grad_enabled(grad):
            got = fast(a, b)
        assert got.dtype == torch.float64
        torch.testing.assert_close(got, expected, atol=1e-10, rtol=0)


def test_output_ranges(msrs_pair):
    a, b = msrs_pair
    fused = _pair("refusion", seed=4, scale=0.3)[0](a, b)
    assert fused.shape == a.shape and 0 <= fused.min() and fused.max() <= 1
    assert fused.std() > 0.05
    weights = _pair("lpn", seed=4, scale=0.3)[0](a, b)
    assert weights.shape == (2, 2, 64, 96) and weights.min() >= 0
    torch.testing.assert_close(weights.sum(1), torch.ones_like(weights[:, 0]))
    assert weights[:, 0].std() > 0.01  # per-pixel weights, not a constant


@pytest.mark.parametrize("kind", sorted(NETS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_double_backward(kind, dtype):
    net = _pair(kind, seed=2, dtype=dtype)[0]
    generator = torch.Generator().manual_seed(1)
    a, b = torch.rand(2, 1, 1, 12, 20, generator=generator, dtype=dtype).unbind(0)
    params = [p for p in net.parameters()]
    out = net(a, b)
    loss = (out[:, :1] - 0.5 * (a + b)).square().mean()
    grads = torch.autograd.grad(loss, params, create_graph=True)
    assert all(g.requires_grad for g in grads)
    second = torch.autograd.grad(sum(g.square().sum() for g in grads), params, allow_unused=True)
    flat = torch.cat([s.flatten() for s in second if s is not None])
    assert len([s for s in second if s is not None]) == len(params)
    assert torch.isfinite(flat).all() and flat.abs().max() > 0


def test_gradients_match_reference():
    fast, reference = _pair("refusion", seed=6, dtype=torch.float64)
    generator = torch.Generator().manual_seed(2)
    a, b = torch.rand(2, 1, 1, 11, 13, generator=generator, dtype=torch.float64).unbind(0)
    fast_grads = torch.autograd.grad(fast(a, b).square().sum(), list(fast.parameters()))
    ref_grads = dict(
        zip(
            [n for n, _ in reference.named_parameters()],
            torch.autograd.grad(reference(a, b).square().sum(), list(reference.parameters())),
            strict=True,
        )
    )
    for (name, _), grad in zip(fast.named_parameters(), fast_grads, strict=True):
        ref_name = name.replace("norm1.", "norm1.body.").replace("norm2.", "norm2.body.")
        expected = ref_grads[ref_name].reshape(grad.shape)
        torch.testing.assert_close(grad, expected, atol=1e-9, rtol=1e-7)


def test_functional_call_uses_given_weights():
    net = _pair("lpn", seed=7)[0]
    a, b = torch.rand(2, 1, 1, 9, 14).unbind(0)
    params = dict(net.named_parameters())
    torch.testing.assert_close(functional_call(net, params, (a, b)), net(a, b))
    changed = {**params, "encoder3.0.attn.temperature": params["encoder3.0.attn.temperature"] * 3}
    assert not torch.allclose(functional_call(net, changed, (a, b)), net(a, b))


def test_banded_block_equals_unbanded_for_any_band():
    torch.manual_seed(0)
    first, second = RestormerBlock(8, 2), RestormerBlock(8, 2)
    for block in (first, second):
        randomize_(block, seed=3, scale=0.3)
    weights = merge_block_pair(first.fused(), second.fused())
    x = torch.randn(2, 13, 17, 16)
    with torch.no_grad():
        expected = restormer_block_nhwc(x, weights, band_rows=None)
        for band in (1, 2, 5, 13, 64):
            torch.testing.assert_close(restormer_block_nhwc(x, weights, band_rows=band), expected,
                                       atol=1e-5, rtol=1e-5)
    # merging two blocks equals running each on its half
    with torch.no_grad():
        halves = torch.cat([first(x[..., :8]), second(x[..., 8:])], dim=-1)
    torch.testing.assert_close(expected, halves, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("bias", [False, True])
def test_banded_block_forward_mode_equals_unbanded(bias):
    """The banded JVP (primal and tangent streamed together) equals forward-mode AD of the
    unbanded block, for a merged pair (two norm groups), one block and the fusion module."""
    from dataclasses import fields, replace

    from torch.autograd import forward_ad

    from projects.tdfusion.tdfusion.refusion import AttentionFusionModule

    generator = torch.Generator().manual_seed(5)
    first, second = RestormerBlock(8, 2, bias=bias).double(), RestormerBlock(8, 2, bias=bias).double()
    fusion_module = AttentionFusionModule(8, 2, bias=bias).double()
    for seed, module in enumerate((first, second, fusion_module)):
        randomize_(module, seed=seed, scale=0.3)
    cases = {
        "pair": merge_block_pair(first.fused(), second.fused()),
        "block": first.fused(),
        "fusion module": fusion_module.fused(),
    }

    def dual(part):  # every weight gets a random tangent
        return replace(part, **{f.name: forward_ad.make_dual(
            getattr(part, f.name).detach(),
            torch.randn(getattr(part, f.name).shape, generator=generator, dtype=torch.float64))
            for f in fields(part) if isinstance(getattr(part, f.name), torch.Tensor)})

    for name, weights in cases.items():
        channels = weights.attn.proj_weight.shape[0]
        x = torch.randn(2, 13, 17, channels, generator=generator, dtype=torch.float64)
        x_t = torch.randn(x.shape, generator=generator, dtype=torch.float64)
        with torch.no_grad(), forward_ad.dual_level():
            dual_weights = replace(weights, attn=dual(weights.attn), ffn=dual(weights.ffn))
            results = {}
            for band in (None, 1, 5, 13, 64):
                out = restormer_block_nhwc(forward_ad.make_dual(x, x_t), dual_weights, band_rows=band)
                primal, tangent = forward_ad.unpack_dual(out)
                assert tangent is not None, (name, band)
                results[band] = primal.clone(), tangent.clone()
        expected = results.pop(None)
        assert expected[1].abs().max() > 0
        for band, (primal, tangent) in results.items():
            torch.testing.assert_close(primal, expected[0], atol=1e-12, rtol=1e-12, msg=f"{name} {band}")
            torch.testing.assert_close(tangent, expected[1], atol=1e-12, rtol=1e-12, msg=f"{name} {band}")


def _with_and_without_onednn(monkeypatch, fn):
    """``fn(expect_onednn)`` with the 1×1 convolutions on oneDNN, then on ``F.linear``/``addmm``."""
    from learnable_fusion_loss.nn import ops as layers  # where _ONEDNN_LINEAR is read

    if not layers._ONEDNN_LINEAR:
        pytest.skip("this torch build has no oneDNN linear (torch.ops.mkldnn._linear_pointwise)")
    onednn = fn(True)
    monkeypatch.setattr(layers, "_ONEDNN_LINEAR", False)
    native = fn(False)
    monkeypatch.setattr(layers, "_ONEDNN_LINEAR", True)
    return onednn, native


def test_onednn_linear_equals_native_to_second_order(monkeypatch):
    """float32 CPU 1×1 convolutions run on oneDNN (an autograd.Function); values, gradients
    and second-order terms equal F.linear/addmm's, and forward-mode tangents take the
    native path."""
    from torch.autograd import forward_ad

    from learnable_fusion_loss.nn import linear

    generator = torch.Generator().manual_seed(0)
    x, residual = torch.randn(2, 5, 7, 8, generator=generator), torch.randn(2, 5, 7, 12, generator=generator)
    weight, bias = torch.randn(12, 8, generator=generator), torch.randn(12, generator=generator)
    probe = torch.randn(2, 5, 7, 8, generator=generator)

    def run(expect_onednn: bool) -> list[torch.Tensor]:
        leaves = [t.clone().requires_grad_() for t in (x, weight, bias, residual)]
        y = linear(*leaves)
        assert ("OneDNN" in type(y.grad_fn).__name__) == expect_onednn
        grads = torch.autograd.grad(y.square().sum(), leaves, create_graph=True)
        second = torch.autograd.grad((grads[0] * probe).sum(), leaves[:2])  # through the backward
        with torch.no_grad(), forward_ad.dual_level():
            tangent = forward_ad.unpack_dual(linear(forward_ad.make_dual(x, probe), weight)).tangent
        return [y.detach(), *[g.detach() for g in grads], *second, tangent]

    onednn, native = _with_and_without_onednn(monkeypatch, run)
    torch.testing.assert_close(onednn[-1], probe @ weight.t())
    for got, expected in zip(onednn, native, strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_onednn_path_keeps_the_meta_hypergradient(monkeypatch):
    """The float32 meta step (unrolled and forward mode) gives the same hypergradient with
    F's and G's 1×1 convolutions on oneDNN as on F.linear/addmm."""

    def hypergradients(_: bool) -> dict[str, torch.Tensor]:
        out = {}
        for mode in ("unrolled", "forward"):
            torch.manual_seed(3)
            config = dict(dim=8, num_blocks=1, heads=4)
            grads = _meta_hypergradient(ReFusionNet(**config), TDFusionLPN(**config), mode=mode,
                                        dtype=torch.float32)
            out[mode] = torch.cat([g.flatten() for g in grads.values()])
        return out

    onednn, native = _with_and_without_onednn(monkeypatch, hypergradients)
    for mode in onednn:
        scale = native[mode].abs().max()
        assert scale > 0
        assert (onednn[mode] - native[mode]).abs().max() <= 1e-4 * scale, mode


def test_registry_and_parameter_counts():
    fusion = MODELS.build(dict(type="ReFusionNet"))
    lpn = MODELS.build(dict(type="TDFusionLPN", heads=[8, 8, 8]))
    assert isinstance(fusion, ReFusionNet) and isinstance(lpn, TDFusionLPN)
    assert sum(p.numel() for p in fusion.parameters()) == 59_856  # public ReFusion()
    assert sum(p.numel() for p in lpn.parameters()) == 44_529  # public LPN()


def test_bad_inputs_are_refused():
    net = ReFusionNet(dim=8, num_blocks=1, heads=4)
    with pytest.raises(ValueError, match="a must have 1 channel"):
        net(torch.rand(1, 3, 8, 8), torch.rand(1, 1, 8, 8))
    with pytest.raises(ValueError, match="shape mismatch"):
        net(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 9))
    with pytest.raises(ValueError, match="heads"):
        TDFusionLPN(dim=10, heads=4)


def _meta_hypergradient(fusion_net, generator, seed: int = 0, mode: str = "unrolled",
                        dtype: torch.dtype = torch.float64) -> dict[str, torch.Tensor]:
    """∂L_t/∂φ of one meta step with these F and G (a small smooth task in ``dtype``)."""
    from torch import nn

    from learnable_fusion_loss import FusionBatch, LearnableFusionLoss, MetaLossLearner
    from learnable_fusion_loss.tasks import ModuleTask

    torch.manual_seed(seed)
    task_net = nn.Conv2d(1, 2, 3, padding=1).to(dtype)
    task = ModuleTask(task_net, nn.functional.mse_loss, torch.optim.SGD(task_net.parameters(), lr=0.1))
    learner = MetaLossLearner(
        fusion_net, LearnableFusionLoss(generator), task,
        fusion_optimizer=torch.optim.SGD(fusion_net.parameters(), lr=0.5), hypergradient=mode,
    )
    g = torch.Generator().manual_seed(seed + 1)

    def batch() -> FusionBatch:
        a, b = torch.rand(2, 2, 1, 12, 16, generator=g, dtype=dtype).unbind(0)
        return FusionBatch(a=a, b=b, target=torch.randn(2, 2, 12, 16, generator=g, dtype=dtype))

    grads = learner.hypergradient(batch(), batch()).grads
    return {name: grad for (name, _), grad in zip(generator.named_parameters(), grads, strict=True)}


def test_hypergradient_of_fast_networks_equals_reference_and_checkpointing():
    """The meta step through the fast F and G equals the one through the plain NCHW nets;
    activation checkpointing on F and the forward-mode hypergradient change nothing."""
    config = dict(dim=8, num_blocks=1, heads=4)
    fast_f, reference_f = _pair("refusion", seed=8, scale=0.3, dtype=torch.float64, **config)
    fast_g, reference_g = _pair("lpn", seed=9, scale=0.3, dtype=torch.float64, **config)
    expected = _meta_hypergradient(reference_f, reference_g)
    got = _meta_hypergradient(fast_f, fast_g)
    checkpointed_f = load_official_state_dict(
        ReFusionNet(**config, checkpoint_activations=True).double(), reference_f.state_dict()
    )
    got_checkpointed = _meta_hypergradient(checkpointed_f, fast_g)
    got_forward = _meta_hypergradient(fast_f, fast_g, mode="forward")
    assert max(g.abs().max() for g in got.values()) > 0
    for name, grad in got.items():
        ref_name = name.replace("norm1.", "norm1.body.").replace("norm2.", "norm2.body.")
        torch.testing.assert_close(grad, expected[ref_name].reshape(grad.shape), atol=1e-10, rtol=1e-7)
        torch.testing.assert_close(got_checkpointed[name], grad, atol=1e-12, rtol=1e-10)
        torch.testing.assert_close(got_forward[name], grad, atol=1e-12, rtol=1e-10)


def test_activation_checkpointing_saves_memory_and_keeps_the_output():
    net = _pair("refusion", seed=2)[0]
    checkpointed = ReFusionNet(checkpoint_activations=True)
    checkpointed.load_state_dict(net.state_dict())
    a, b = torch.rand(2, 1, 1, 48, 64).unbind(0)

    def saved_bytes(model) -> tuple[int, torch.Tensor]:
        total = 0

        def pack(t):
            nonlocal total
            total += t.numel() * t.element_size()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = model(a, b)
        return total, out

    plain_bytes, plain_out = saved_bytes(net)
    ckpt_bytes, ckpt_out = saved_bytes(checkpointed)
    torch.testing.assert_close(ckpt_out, plain_out, atol=0, rtol=0)
    assert ckpt_bytes < 0.5 * plain_bytes, (ckpt_bytes, plain_bytes)


@pytest.mark.parametrize("groups, cin, cout", [(1, 4, 3), (2, 4, 6), (5, 5, 5)])
def test_conv3x3_equals_conv2d_to_second_order(groups, cin, cout):
    generator = torch.Generator().manual_seed(groups)
    x = torch.randn(2, cin, 7, 9, generator=generator, dtype=torch.float64, requires_grad=True)
    w = torch.randn(cout, cin // groups, 3, 3, generator=generator, dtype=torch.float64,
                    requires_grad=True)
    bias = torch.randn(cout, generator=generator, dtype=torch.float64, requires_grad=True)

    def conv(x, w, bias):
        return conv3x3(x, w, bias, groups)

    torch.testing.assert_close(conv(x, w, bias), torch.nn.functional.conv2d(x, w, bias, padding=1, groups=groups))
    assert torch.autograd.gradcheck(conv, (x, w, bias))
    assert torch.autograd.gradgradcheck(conv, (x, w, bias))


def test_conv3x3_second_order_pass_skips_unwanted_weight_terms():
    """The hypergradient through two stacked depthwise convolutions runs no convolution with
    an image-sized kernel (PyTorch's own double backward runs one per channel)."""
    channels, size = 6, 24
    generator = torch.Generator().manual_seed(0)
    x0 = torch.rand(2, channels, size, size, generator=generator)
    w1, w2 = (torch.randn(channels, 1, 3, 3, generator=generator).mul(0.3).requires_grad_()
              for _ in range(2))
    phi = torch.rand(1, channels, 1, 1, generator=generator, requires_grad=True)

    def image_sized_kernels(conv) -> int:
        def net(w1, w2):
            return conv(conv(x0, w1).tanh(), w2)

        g1, g2 = torch.autograd.grad((net(w1, w2) - phi).square().mean(), (w1, w2), create_graph=True)
        outer = net(w1 - 0.1 * g1, w2 - 0.1 * g2).square().mean()
        with torch.profiler.profile(record_shapes=True) as prof:
            (grad,) = torch.autograd.grad(outer, phi)
        assert grad.abs().max() > 0
        return sum(1 for event in prof.events() if event.name == "aten::convolution"
                   and event.input_shapes and event.input_shapes[1][-2:] == [size, size])

    native = image_sized_kernels(
        lambda x, w: torch.nn.functional.conv2d(x, w, padding=1, groups=channels))
    assert native > 0  # the waste this convolution exists to avoid (if torch fixes it, drop conv3x3)
    assert image_sized_kernels(lambda x, w: conv3x3(x, w, groups=channels)) == 0
