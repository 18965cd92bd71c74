"""TIMFusion's operations, cells, networks, padding, colour pipeline and genotypes.

Parameter counts (C = 48; bias-free convolutions inside the cells, affine BN,
single-slope PReLU, biased reflect-padded ``ConvLayer`` convolutions in stems/heads;
blur-pool filters are buffers). ``C² = 2304``.

Ops: ``Residualblocks_3_1 = 9C + 9C + C² + 2C + 1 = C² + 20C + 1``;
``DilConv_3_2 = 9C + C² + 2C``; ``Denseblocks_3_1 = 9C + 18C + 27C + 1``;
``ECAattention_3 = 3 + 9C² + 1``; ``SPAattention_3 = 18``; a cell's ReLU-1×1-BN
``C² + 2C = 2400``.

Stage 1 (994,917):
  stem ``(2·9·96 + 96) + 1 + (96·9·48 + 48) + 1 = 43,346``;
  Cell_Fusion 912,544 = preprocess 2,400 + down×2 ``14C² + 2 = 32,258`` + down×4
  ``32,258 + 129,026`` + up×2 ``11(2C)² + 2 = 101,378`` + up×4 ``405,506 + 101,378``
  + SKFF ``48·6 + 1 + 3·6·48 = 1,153`` + chains at C/2C/4C ``6,097 + 21,409 + 79,681``;
  Cell_Chain2(Dense_3_1, DilConv_3_2) ``2,400 + 2,593 + 2,832 = 7,825``;
  head ``(48·9·48 + 48) + 1 + (48·9·24 + 24) + 25 = 31,202``.
IVIF stage 2 (237,308): two stems with BN ``2 × 43,442``; first branch 2 × Cell(ECA_3,
  SPA_3) ``2 × 23,158``; second branch 2 × Cell(SPA_3, DilConv_3_2) ``2 × 5,250``; two
  auxiliary heads ``2 × 31,202``; mask 1×1 (3→1, no bias) 3; head4 (no PReLU) 31,201.
Light (127,358): stem 43,346 + 2 × Cell(Res_3_1, ECA_3) ``2 × 26,405`` + head 31,202.
All three equal the notes' analytic figures; the mask conv's missing bias is what
makes IVIF stage 2 come to 237,308 (with a bias: 237,309).
"""

from __future__ import annotations

import pytest
import torch

from projects.timfusion.timfusion import (
    GENOTYPES,
    CellChain2,
    CellFusion,
    TIMFusionIVIF,
    TIMFusionLight,
    TIMFusionMedical,
    TIMFusionRefineIVIF,
    TIMFusionRefineMedical,
    TIMFusionStage1,
    genotype,
    genotype_names,
    make_op,
    pad_to_multiple,
    resolve_genotype,
)
from projects.timfusion.timfusion.cells import SKFF, BlurPool, DownSample, UpSample
from projects.timfusion.timfusion.pipeline import fuse_colour, fuse_grey, merge_luma, split_luma

torch.set_num_threads(1)
SMALL = 8  # channels of the small nets the forward tests run


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- operations and cells
OP_NAMES = [
    "Residualblocks_3_1", "Residualblocks_3_2", "Residualblocks_5_1", "Residualblocks_5_2",
    "Residualblocks_7_1", "Denseblocks_3_1", "Denseblocks_5_1", "Denseblocks_3_2",
    "DilConv_3_2", "DilConv_5_2", "DilConv_3_1", "SepConv_3_1",
    "ECAattention_3", "ECAattention_5", "SPAattention_3", "SPAattention_7",
]


@pytest.mark.parametrize("name", OP_NAMES)
def test_every_operation_keeps_the_shape(name):
    op = make_op(name, SMALL)
    for shape in [(2, SMALL, 9, 13), (1, SMALL, 4, 4)]:
        assert op(rand(*shape)).shape == shape


def test_sepconv_second_number_is_a_stride():
    assert make_op("SepConv_3_2", SMALL)(rand(1, SMALL, 8, 8)).shape == (1, SMALL, 4, 4)


@pytest.mark.parametrize("name", ["Zero_3_1", "Residualblocks_3", "SPAattention_3_1", "DilConv_4_1", "Dense_3_1"])
def test_a_bad_op_name_is_refused(name):
    with pytest.raises(ValueError, match="unknown operation|no padding known"):
        make_op(name, SMALL)


@pytest.mark.parametrize("ops", [g.normal for g in GENOTYPES.values()])
def test_cell_chain2_keeps_the_shape(ops):
    assert CellChain2(ops, SMALL)(rand(2, SMALL, 7, 10)).shape == (2, SMALL, 7, 10)


@pytest.mark.parametrize("size", [(4, 4), (8, 12), (16, 8)])
def test_cell_fusion_keeps_the_shape(size):
    cell = CellFusion(genotype("fusion_M").chain_fusion, SMALL)
    assert cell(rand(2, SMALL, *size)).shape == (2, SMALL, *size)


def test_cell_fusion_refuses_sides_not_divisible_by_4():
    with pytest.raises(ValueError, match="multiples of 4"):
        CellFusion(genotype("fusion_M").chain_fusion, SMALL)(rand(1, SMALL, 6, 8))


def test_samplers_and_skff_shapes():
    x = rand(1, SMALL, 8, 12)
    assert DownSample(SMALL, 2)(x).shape == (1, 2 * SMALL, 4, 6)
    assert DownSample(SMALL, 4)(x).shape == (1, 4 * SMALL, 2, 3)
    assert UpSample(4 * SMALL, 4)(rand(1, 4 * SMALL, 2, 3)).shape == (1, SMALL, 8, 12)
    assert UpSample(2 * SMALL, 2)(rand(1, 2 * SMALL, 4, 6)).shape == (1, SMALL, 8, 12)
    assert SKFF(SMALL)([x, x, x]).shape == x.shape
    blur = BlurPool(SMALL)
    assert count(blur) == 0 and torch.allclose(blur(torch.ones(1, SMALL, 8, 8)), torch.ones(1, SMALL, 4, 4))


# ---------------------------------------------------------------- parameter counts
def test_stage1_parameter_count_matches_the_notes():
    net = TIMFusionStage1()
    assert count(net) == 994_917
    assert (count(net.stem), count(net.cells[0]), count(net.cells[1]), count(net.head)) == (
        43_346, 912_544, 7_825, 31_202)


def test_ivif_stage2_parameter_count_matches_the_notes():
    net = TIMFusionRefineIVIF()
    assert count(net) == 237_308
    assert (count(net.first), count(net.second)) == (43_442 + 2 * 23_158, 43_442 + 2 * 5_250)
    assert (count(net.head_first), count(net.head_second), count(net.mask_conv), count(net.head)) == (
        31_202, 31_202, 3, 31_201)
    assert count(TIMFusionIVIF()) == 994_917 + 237_308


def test_light_parameter_count_matches_the_notes():
    net = TIMFusionLight()
    assert count(net) == 127_358
    assert [count(c) for c in net.cells] == [26_405, 26_405]


# ---------------------------------------------------------------- padding
SIZES = [(1, 1), (1, 6), (2, 3), (3, 3), (4, 4), (5, 7), (6, 2), (37, 53), (40, 41)]


@pytest.mark.parametrize("size", SIZES)
def test_padding_round_trips_any_size(size):
    x = rand(2, 3, *size)
    padded, pad = pad_to_multiple(x, 4)
    h, w = padded.shape[-2:]
    assert h % 4 == 0 and w % 4 == 0 and 0 <= h - size[0] < 4 and 0 <= w - size[1] < 4
    assert torch.equal(pad.crop(padded), x)


def test_padding_reflects_at_the_bottom_and_right():
    x = rand(1, 1, 5, 6)
    padded, _ = pad_to_multiple(x, 4)  # 5 → 8 (3 rows), 6 → 8 (2 columns)
    assert torch.equal(padded[..., 5:, :6], x.flip(-2)[..., 1:4, :])  # rows 3, 2, 1
    assert torch.equal(padded[..., :5, 6:], x.flip(-1)[..., :, 1:3])  # columns 4, 3


@pytest.mark.parametrize("size", [(1, 1), (5, 7), (37, 53)])
def test_the_two_stage_models_keep_the_input_size(size):
    a, b = rand(1, 1, *size, seed=1), rand(1, 1, *size, seed=2)
    for net in (TIMFusionIVIF(channels=SMALL), TIMFusionMedical("pet", channels=SMALL),
                TIMFusionStage1(channels=SMALL)):
        # eval: in train mode BN refuses one value per channel (batch 1 at H/4 = 1)
        assert net.eval()(a, b).shape == (1, 1, *size)


def test_the_light_model_keeps_the_input_size():
    net = TIMFusionLight(channels=SMALL)
    for size in [(2, 2), (5, 7), (37, 53)]:
        assert net(rand(1, 1, *size), rand(1, 1, *size, seed=3)).shape == (1, 1, *size)


def test_stage1_pads_then_crops():
    net = TIMFusionStage1(channels=SMALL).eval()
    a, b = rand(1, 1, 9, 14, seed=1), rand(1, 1, 9, 14, seed=2)
    padded, pad = pad_to_multiple(torch.cat([a, b], 1))
    with torch.no_grad():
        assert torch.equal(net(a, b), pad.crop(net.features(padded[:, :1], padded[:, 1:])))


# ---------------------------------------------------------------- the two-stage models
def test_ivif_aux_outputs_follow_the_released_orders():
    net = TIMFusionIVIF(channels=SMALL).eval()
    ir, vis = rand(1, 1, 8, 12, seed=1), rand(1, 1, 8, 12, seed=2)
    with torch.no_grad():
        out = net.forward_with_aux(ir, vis)
        f1 = net.stage1.features(ir, vis)  # released model_1(IR, VIS)
        assert torch.equal(out["stage1"], f1)
        released = net.stage2.forward_with_aux(vis, ir, f1)  # released model_2(VIS, IR, f1)
        assert torch.equal(out["fused"], released["fused"]) and torch.equal(out["fused"], net(ir, vis))
        assert torch.equal(out["aux_b"], released["aux_first"]) and torch.equal(out["aux_a"], released["aux_second"])
        assert torch.equal(out["mask"], released["mask"])
    assert out["mask"].min() > 0 and out["mask"].max() < 1 and out["aux_a"].abs().max() <= 1
    assert net.stage2.first.genotype == genotype("fusion_vis_proposed")


def test_medical_output_is_tanh_and_presets_pick_the_released_order():
    a, b = rand(1, 1, 8, 8, seed=1), rand(1, 1, 8, 8, seed=2)
    for task, first in [("ct", "a"), ("pet", "b"), ("spect", "a")]:
        net = TIMFusionMedical(task, channels=SMALL)
        assert net.stage2_first == first and net(a, b).abs().max() <= 1
    assert sorted(TIMFusionMedical("ct", channels=SMALL, aux_heads=False).forward_with_aux(a, b)) == ["fused", "stage1"]
    with pytest.raises(ValueError, match="valid: ct, pet, spect"):
        TIMFusionMedical("mri_x")
    with pytest.raises(ValueError, match="stage2_first must be 'a' or 'b'"):
        TIMFusionIVIF(channels=SMALL, stage2_first="vis")


# ---------------------------------------------------------------- colour pipeline
@pytest.mark.parametrize("space", ["yuv", "ycbcr"])
@pytest.mark.parametrize("quantize", [False, True])
def test_colour_medical_fusion_keeps_the_chroma(space, quantize):
    net = TIMFusionMedical("pet", channels=SMALL)
    mri, pet = rand(1, 1, 9, 11, seed=1), rand(1, 3, 9, 11, seed=2)
    out = fuse_colour(net, mri, pet, space=space, quantize=quantize, clamp=False)
    y_out, chroma_out = split_luma(out, space)
    y_src, chroma_src = split_luma(pet, space)
    assert torch.allclose(chroma_out, chroma_src, atol=1e-5)
    expected_y = fuse_grey(net, mri, y_src)
    expected_y = torch.floor(expected_y * 255) / 255 if quantize else expected_y
    assert torch.allclose(y_out, expected_y, atol=1e-5)
    assert net.training  # fuse_grey restores the mode


def test_yuv_is_opencvs():
    cv2 = pytest.importorskip("cv2")
    import numpy as np

    rgb = rand(1, 3, 5, 6)
    bgr = rgb[0].flip(0).permute(1, 2, 0).numpy().astype(np.float32).copy()
    yuv = torch.from_numpy(cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV)).permute(2, 0, 1)[None]
    y, chroma = split_luma(rgb, "yuv")
    assert torch.allclose(y, yuv[:, :1], atol=1e-5) and torch.allclose(chroma + 0.5, yuv[:, 1:], atol=1e-5)
    ycrcb = torch.from_numpy(cv2.cvtColor(bgr, cv2.COLOR_BGR2YCrCb)).permute(2, 0, 1)[None]
    _, cbcr = split_luma(rgb, "ycbcr")
    assert torch.allclose(cbcr, ycrcb[:, [2, 1]], atol=1e-5)
    assert torch.allclose(merge_luma(y, chroma, "yuv"), rgb, atol=1e-6)


def test_fuse_grey_with_batch_statistics_restores_the_bn_buffers():
    net = TIMFusionIVIF(channels=SMALL).eval()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    ir, vis = rand(2, 1, 8, 8, seed=1), rand(2, 1, 8, 8, seed=2)
    quirk = fuse_grey(net, ir, vis, stage2_batch_stats=True)
    plain = fuse_grey(net, ir, vis)
    assert not torch.allclose(quirk, plain) and not net.training
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


# ---------------------------------------------------------------- genotypes
def test_a_bad_genotype_name_is_refused_with_the_valid_names():
    valid = ", ".join(sorted(GENOTYPES))
    with pytest.raises(ValueError) as info:
        genotype("fusion_nope")
    assert str(info.value) == f"unknown genotype 'fusion_nope'; valid names: {valid}"
    for build in (lambda: TIMFusionStage1("fusion_nope"), lambda: TIMFusionIVIF(first_genotype="fusion_nope"),
                  lambda: resolve_genotype("fusion_nope")):
        with pytest.raises(ValueError, match="valid names: fusion_M, fusion_ct, fusion_ir_proposed"):
            build()


def test_the_released_genotypes_are_all_there():
    assert genotype_names() == sorted([
        "fusion_M", "fusion_ir_proposed", "fusion_vis_proposed", "fusion_mri", "fusion_ct",
        "fusion_mri_pet", "fusion_pet", "fusion_mri_spect", "fusion_spect", "fusion_light"])
    assert genotype("fusion_M").chain_fusion == ("Residualblocks_3_1", "DilConv_3_2")


@pytest.mark.parametrize("name", sorted(GENOTYPES))
def test_every_released_genotype_builds_and_runs(name):
    g = genotype(name)
    x = rand(1, 1, 8, 8)
    if g.chain_fusion is not None:
        assert TIMFusionStage1(name, channels=SMALL)(x, x).shape == x.shape
    assert TIMFusionStage1(name, channels=SMALL, cells=["chain", "chain"], pad_multiple=1)(x, x).shape == x.shape
    for refine in (TIMFusionRefineIVIF(name, name, channels=SMALL), TIMFusionRefineMedical(name, name, channels=SMALL)):
        assert refine(x, x, x).shape == x.shape


def test_explicit_genotypes_and_bad_structures():
    explicit = dict(normal=["SPAattention_3", "DilConv_3_2"])
    assert TIMFusionRefineIVIF(first_genotype=explicit).first.genotype == genotype("fusion_ir_proposed")
    with pytest.raises(ValueError, match="two ops"):
        resolve_genotype(["SPAattention_3"])
    with pytest.raises(ValueError, match="unknown operation"):
        resolve_genotype(["SPAattention_3", "skip_connect"])
    with pytest.raises(ValueError, match="no 'chain_fusion' ops"):
        TIMFusionStage1("fusion_light")


# ---------------------------------------------------------------- gradients
def test_gradients_flow_twice_and_forward_mode():
    net = TIMFusionIVIF(channels=4)
    params = [p for p in net.parameters()]
    a, b = rand(2, 1, 8, 8, seed=1), rand(2, 1, 8, 8, seed=2)
    out = net.forward_with_aux(a, b)
    loss = out["fused"].square().mean() + out["aux_a"].mean() + out["aux_b"].mean()
    grads = torch.autograd.grad(loss, params, create_graph=True)
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(int(g.abs().sum() > 0) for g in grads) >= 0.9 * len(grads)
    second = torch.autograd.grad(sum(g.square().sum() for g in grads), params, allow_unused=True)
    assert sum(int(s is not None and s.abs().sum() > 0) for s in second) >= 0.5 * len(params)
    # forward-mode AD with respect to the weights, as the library's 'forward' hypergradient
    # runs it (dual tensors through functional_call), in train mode (BN batch statistics)
    from torch.autograd import forward_ad

    from learnable_fusion_loss.meta.inner import bind_weights

    named, bind = bind_weights(net)
    with torch.no_grad(), forward_ad.dual_level():
        duals = {n: forward_ad.make_dual(p.detach(), torch.ones_like(p)) for n, p in named.items()}
        fused, tangent = forward_ad.unpack_dual(bind(duals)(a, b))
    assert tangent.shape == a.shape and torch.isfinite(tangent).all() and tangent.abs().sum() > 0


# ---------------------------------------------------------------- the config
def test_the_model_config_builds_every_net():
    from mmengine.config import Config

    from learnable_fusion_loss.registry import MODELS

    cfg = Config.fromfile("projects/timfusion/configs/_base_/models/timfusion_networks.py")
    counts = {name: count(MODELS.build(dict(model))) for name, model in cfg.timfusion_networks.items()}
    assert counts["stage1"] == 994_917 and counts["ivif_stage2"] == 237_308 and counts["light"] == 127_358
    assert counts["ivif"] == 1_232_225 and set(counts) >= {"medical_ct", "medical_pet", "medical_spect"}


@pytest.mark.parametrize("hypergradient", ["unrolled", "forward"])
def test_the_library_learner_takes_timfusion_as_f(hypergradient):
    """One meta step of the library's learner with the two-stage IVIF model as F."""
    from learnable_fusion_loss.generators import ConvWeightGenerator
    from learnable_fusion_loss.losses import LearnableFusionLoss
    from learnable_fusion_loss.meta import FusionBatch, MetaLossLearner

    torch.manual_seed(0)
    fusion = TIMFusionIVIF(channels=4)
    loss = LearnableFusionLoss(ConvWeightGenerator(hidden=4, depth=1))
    learner = MetaLossLearner(fusion, loss, task=lambda fused, target: torch.nn.functional.mse_loss(fused, target),
                              fusion_optimizer=torch.optim.SGD(fusion.parameters(), lr=0.1),
                              hypergradient=hypergradient)
    before = [p.detach().clone() for p in learner.generator.parameters()]
    batches = [FusionBatch(a=rand(2, 1, 8, 8, seed=s), b=rand(2, 1, 8, 8, seed=s + 1),
                           target=rand(2, 1, 8, 8, seed=s + 2)) for s in (0, 10)]
    stats = learner.meta_step(*batches)
    assert all(torch.isfinite(torch.as_tensor(v)).all() for v in stats.values())
    assert any(not torch.equal(p, q) for p, q in zip(before, learner.generator.parameters()))


def _macs_per_pixel(net: torch.nn.Module, *inputs: torch.Tensor) -> float:
    total = [0]

    def hook(module, args, output):
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Conv1d)):
            total[0] += output.numel() * module.weight[0].numel()
        elif isinstance(module, torch.nn.ConvTranspose2d):
            total[0] += args[0].numel() * module.weight.shape[1] * module.weight[0, 0].numel()

    handles = [m.register_forward_hook(hook) for m in net.modules()]
    with torch.no_grad():
        net.eval()(*inputs)
    for h in handles:
        h.remove()
    return total[0] / inputs[0][0, 0].numel()


def test_macs_per_pixel_match_the_notes():
    """Convolution MACs per pixel, against the notes' ≈0.27 M / 0.24 M / 0.13 M / 0.51 M."""
    x = rand(1, 1, 32, 32)
    assert _macs_per_pixel(TIMFusionStage1(), x, x) == pytest.approx(0.27e6, rel=0.02)
    assert _macs_per_pixel(TIMFusionRefineIVIF(), x, x, x) == pytest.approx(0.24e6, rel=0.02)
    assert _macs_per_pixel(TIMFusionLight(), x, x) == pytest.approx(0.13e6, rel=0.03)
    assert _macs_per_pixel(TIMFusionIVIF(), x, x) == pytest.approx(0.51e6, rel=0.02)
