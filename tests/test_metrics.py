"""Fusion metrics: exactness against an independent numpy/sewar/skimage/sklearn reference
on real pairs, conventions, batching, input checks and the MMEngine metric."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from learnable_fusion_loss.metrics import (
    ALL_METRICS,
    PER_SOURCE_METRICS,
    FusionMetric,
    correlation_coefficient,
    entropy,
    fusion_metrics,
    ms_ssim,
    mutual_information,
    native,
    ssim,
    to_grey_levels,
    vif,
)
from learnable_fusion_loss.registry import METRICS

import _metric_reference as reference

# (set, split, pair id): one MSRS pair (640x480), TNO with an odd height (472x371)
# and the smallest (256x256), RoadScene with odd sides (496x301) and the thinnest
# image (597x161, MS-SSIM's lower limit is 161).
REAL_PAIRS = [
    ("msrs_det", "test", "00020N"),
    ("tno", "test", "24"),
    ("tno", "test", "07"),
    ("roadscene", "test", "FLIR_00211"),
    ("roadscene", "test", "FLIR_06974"),
]
RTOL = 1e-4
# Everything but parts of Qabf and Nabf runs in float64 and lands within ~1e-13 of
# the reference. Qabf's smooth parts and Nabf's edge weights run in float32 (exact
# comparisons, float64 sums; see metrics.gradient._edge_maps): ~1e-8 here. 1e-6
# keeps them honest: a float32 ``1 - q`` in Nabf, say, shows up as ~3e-6 on the max rule.
RTOL_OF = {"Qabf": 1e-6, "Nabf": 1e-6}


def _grey_levels_file(path: Path) -> np.ndarray:
    """8-bit grey levels of a file the way the evaluators read it (BT.601 luma, rounded)."""
    rgb = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64)
    return np.round(rgb @ np.array([0.299, 0.587, 0.114]))


def _pair_files(data_root: Path, name: str, split: str, pair_id: str) -> tuple[Path, Path]:
    folder = data_root / name / split
    (ir,) = folder.glob(f"ir/{pair_id}.*")
    (vi,) = folder.glob(f"vi/{pair_id}.*")
    return ir, vi


def _tensor(levels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(levels / 255.0)[None, None]


@pytest.fixture(scope="module")
def reference_packages() -> None:
    missing = reference.missing_packages()
    if missing:
        pytest.skip(f"reference packages not importable: {missing} (CI installs them)")


@pytest.fixture(params=["compiled", "torch"])
def filter_path(request: pytest.FixtureRequest) -> Iterator[str]:
    """Both ways VIF, SSIM and MS-SSIM filter on CPU: the compiled kernels and the torch path."""
    if request.param == "compiled":
        request.getfixturevalue("compiled_filters")  # skips, with the reason, where they cannot be built
        yield request.param
    else:
        with native.disabled():
            yield request.param


@pytest.mark.parametrize("rule", ["average", "max"])
@pytest.mark.parametrize(("name", "split", "pair_id"), REAL_PAIRS)
def test_all_metrics_match_reference_on_real_pairs(
    reference_packages: None, data_root: Path, name: str, split: str, pair_id: str, rule: str,
    filter_path: str,
) -> None:
    ir_path, vi_path = _pair_files(data_root, name, split, pair_id)
    a, b = _grey_levels_file(ir_path), _grey_levels_file(vi_path)
    fused = np.round((a + b) / 2) if rule == "average" else np.maximum(a, b)
    # One reference run per triplet ("sum"): MI, VIF, SSIM, MS-SSIM are the sum of
    # two per-source values there, so the "mean" reference is exactly half of it.
    ref_sum = reference.reference_metrics(fused, a, b, convention="sum")
    ref_mean = {k: v / 2 if k in PER_SOURCE_METRICS else v for k, v in ref_sum.items()}
    for convention, expected in (("sum", ref_sum), ("mean", ref_mean)):
        ours = fusion_metrics(_tensor(fused), _tensor(a), _tensor(b), convention=convention)
        assert list(ours) == list(ALL_METRICS)
        for metric, value in expected.items():
            got = float(ours[metric][0])
            assert math.isfinite(value), (metric, value)
            assert got == pytest.approx(value, rel=RTOL_OF.get(metric, 1e-10), abs=1e-12), (
                f"{metric} ({convention}) on {name}/{pair_id} ({rule}): ours {got!r}, reference {value!r}"
            )


def test_per_source_functions_match_reference(reference_packages: None, data_root: Path,
                                             filter_path: str) -> None:
    ir_path, vi_path = _pair_files(data_root, "tno", "test", "07")
    a, b = _grey_levels_file(ir_path), _grey_levels_file(vi_path)
    ta, tb = _tensor(a), _tensor(b)
    assert float(vif(ta, tb)[0]) == pytest.approx(reference.vif(a, b), rel=RTOL)
    assert float(ssim(ta, tb)[0]) == pytest.approx(reference.ssim(a, b), rel=RTOL)
    assert float(ms_ssim(ta, tb)[0]) == pytest.approx(reference.ms_ssim(a, b), rel=RTOL)
    assert float(mutual_information(ta, tb)[0]) == pytest.approx(reference.mi(a, b), rel=RTOL)
    assert float(correlation_coefficient(ta, tb)[0]) == pytest.approx(reference.corr(a, b), rel=RTOL)
    assert float(entropy(ta)[0]) == pytest.approx(reference.en(a), rel=RTOL)


# ----------------------------------------------------------------------------- properties
def _random_levels(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, shape, generator=g).double() / 255.0


def _smooth_pair(batch: int = 2, size: int = 176) -> tuple[torch.Tensor, torch.Tensor]:
    # Structured images (random field blurred), so SSIM/VIF are far from trivial values.
    g = torch.Generator().manual_seed(3)
    base = torch.rand(batch, 1, size // 8, size // 8, generator=g, dtype=torch.float64)
    a = torch.nn.functional.interpolate(base, size=(size, size), mode="bicubic").clamp(0, 1)
    noise = torch.rand(batch, 1, size, size, generator=g, dtype=torch.float64)
    b = (0.7 * a + 0.3 * noise).clamp(0, 1)
    return a, b


def test_identity_and_known_values() -> None:
    a, _ = _smooth_pair(batch=1)
    assert float(ssim(a, a)[0]) == pytest.approx(1.0, abs=1e-12)
    assert float(ms_ssim(a, a)[0]) == pytest.approx(1.0, abs=1e-12)
    # VIF(x, x) is 1 up to the evaluators' eps = 1e-10 added to the residual variance.
    assert float(vif(a, a)[0]) == pytest.approx(1.0, abs=1e-9)
    assert float(correlation_coefficient(a, a)[0]) == pytest.approx(1.0, abs=1e-12)
    # MI(x, x) is the entropy of x (nats vs bits).
    assert float(mutual_information(a, a)[0]) == pytest.approx(float(entropy(a)[0]) * math.log(2), rel=1e-12)
    flat = torch.full((1, 1, 64, 64), 0.5, dtype=torch.float64)
    assert float(entropy(flat)[0]) == 0.0
    ramp = (torch.arange(256, dtype=torch.float64) / 255).repeat(4, 1)[None, None]  # every level 4x
    assert float(entropy(ramp)[0]) == pytest.approx(8.0, abs=1e-12)


def test_conventions_differ_only_in_per_source_metrics() -> None:
    a, b = _smooth_pair()
    fused = (a + b) / 2
    mean = fusion_metrics(fused, a, b, convention="mean")
    total = fusion_metrics(fused, a, b, convention="sum")
    for name in ALL_METRICS:
        factor = 2.0 if name in PER_SOURCE_METRICS else 1.0
        torch.testing.assert_close(total[name], factor * mean[name], rtol=1e-12, atol=0)


def test_batch_equals_one_at_a_time_and_is_symmetric_in_sources() -> None:
    a, b = _smooth_pair(batch=3)
    fused = torch.maximum(a, b)
    batched = fusion_metrics(fused, a, b)
    swapped = fusion_metrics(fused, b, a)
    for i in range(3):
        single = fusion_metrics(fused[i:i + 1], a[i:i + 1], b[i:i + 1])
        for name in ALL_METRICS:
            torch.testing.assert_close(batched[name][i:i + 1], single[name], rtol=1e-10, atol=1e-12)
    for name in ALL_METRICS:  # every metric treats the two sources alike
        torch.testing.assert_close(batched[name], swapped[name], rtol=1e-10, atol=1e-12)


def test_integer_moment_metrics_equal_the_two_pass_sums() -> None:
    """SD, SCD, PSNR and CC on integer levels come from exact integer moments; they equal
    the plain two-pass float64 sums over the pixels, NaN (a constant map) included."""
    from learnable_fusion_loss.metrics.levels import to_grey_levels as _levels_of
    from learnable_fusion_loss.metrics.moments import pearson, psnr_levels, scd_levels, sd_levels

    a, b = _smooth_pair(batch=3)
    fused = torch.maximum(a, b)
    fused[1] = a[1]  # F == A: SCD's F − A is constant (NaN)
    fused[2] = 0.5  # a constant fused image: CC and SD degenerate
    got = fusion_metrics(fused, a, b, metrics=["SD", "SCD", "PSNR", "CC"])
    lf, la, lb = (_levels_of(x, "x", True) for x in (fused, a, b))
    expected = {
        "SD": sd_levels(lf),
        "SCD": scd_levels(lf, la, lb),
        "PSNR": psnr_levels(lf, la, lb),
        "CC": pearson(torch.cat([la, lb], dim=1), lf).mean(-1),
    }
    assert torch.isnan(got["SCD"][1]) and torch.isnan(got["CC"][2]) and got["SD"][2] == 0
    for name, value in expected.items():
        torch.testing.assert_close(got[name], value, rtol=1e-12, atol=1e-12, equal_nan=True, msg=name)
    alone = fusion_metrics(fused, a, b, metrics=["SD"])["SD"]  # fused-only: one channel
    torch.testing.assert_close(alone, expected["SD"], rtol=1e-12, atol=1e-12)


def test_quantization_matches_saved_uint8_and_rgb_uses_luma() -> None:
    a, b = _smooth_pair(batch=1)
    fused = (a + b) / 2  # not on the 8-bit grid
    on_grid = torch.round(fused * 255) / 255
    torch.testing.assert_close(
        fusion_metrics(fused, a, b, metrics=["SSIM", "VIF"])["VIF"],
        fusion_metrics(on_grid.float(), a.float(), b.float(), metrics=["SSIM", "VIF"])["VIF"],
    )
    continuous = fusion_metrics(fused, a, b, metrics=["SD"], quantize=False)["SD"]
    assert not torch.equal(continuous, fusion_metrics(fused, a, b, metrics=["SD"])["SD"])
    rgb = torch.cat([a, b, fused], dim=1)
    luma = torch.round(0.299 * torch.round(a * 255) + 0.587 * torch.round(b * 255)
                       + 0.114 * torch.round(fused * 255)) / 255
    torch.testing.assert_close(to_grey_levels(rgb), torch.round(luma * 255))
    assert float(entropy(rgb)[0]) == pytest.approx(float(entropy(luma)[0]))


def test_metric_names_are_case_insensitive_and_ordered() -> None:
    a, b = _smooth_pair(batch=1)
    out = fusion_metrics(a, a, b, metrics=["ms-ssim", "en", "qabf"])
    assert list(out) == ["MS_SSIM", "EN", "Qabf"]
    assert all(v.shape == (1,) and v.dtype == torch.float64 for v in out.values())


def test_bad_inputs_raise_clear_errors() -> None:
    a, b = _smooth_pair(batch=1)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        fusion_metrics(a * 255, a, b)
    with pytest.raises(ValueError, match="shape mismatch"):
        fusion_metrics(a, a[..., :-1], b)
    with pytest.raises(ValueError, match="unknown metric"):
        fusion_metrics(a, a, b, metrics=["FMI"])
    with pytest.raises(ValueError, match="convention"):
        fusion_metrics(a, a, b, convention="median")  # type: ignore[arg-type]
    small = a[..., :100, :100]
    with pytest.raises(ValueError, match="MS-SSIM needs images of at least 161"):
        fusion_metrics(small, small, small)
    with pytest.raises(ValueError, match="channel"):
        fusion_metrics(torch.rand(1, 2, 64, 64), a, b)
    with pytest.raises(TypeError, match="floating"):
        entropy(torch.zeros(1, 1, 8, 8, dtype=torch.uint8))
    for bad_value in (float("nan"), float("inf"), -float("inf")):
        bad = b.clone()
        bad[0, 0, 3, 5] = bad_value
        with pytest.raises(ValueError, match="^b contains NaN or Inf"):
            fusion_metrics(a, a, bad)


def test_metrics_leave_their_inputs_untouched() -> None:
    # The conversions and the metric cores update maps in place for speed; none of
    # that may reach the caller's tensors (float64 inputs convert without a copy).
    a, b = _smooth_pair(batch=2)
    fused = torch.maximum(a, b)
    copies = [t.clone() for t in (fused, a, b)]
    fusion_metrics(fused, a, b)
    fusion_metrics(fused, a, b, quantize=False)
    for original, kept in zip((fused, a, b), copies, strict=True):
        assert torch.equal(original, kept)


def test_undefined_values_follow_the_evaluators() -> None:
    a, b = _smooth_pair(batch=1)
    # F == A: F - A is constant, so one SCD correlation is 0/0 = NaN (as in numpy).
    assert math.isnan(float(fusion_metrics(a, a, b, metrics=["SCD"])["SCD"][0]))
    # Flat reference: VIF is 0/0; CDDFuse's evaluator reports 1.
    flat = torch.full_like(a, 0.25)
    assert float(vif(flat, b)[0]) == 1.0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_cuda_matches_cpu() -> None:
    a, b = _smooth_pair(batch=2)
    fused = (a + b) / 2
    cpu = fusion_metrics(fused, a, b)
    gpu = fusion_metrics(fused.cuda(), a.cuda(), b.cuda())
    for name in ALL_METRICS:
        assert gpu[name].device.type == "cuda"
        torch.testing.assert_close(gpu[name].cpu(), cpu[name], rtol=1e-9, atol=1e-12)


# ----------------------------------------------------------------------------- MMEngine metric
def test_fusion_metric_means_over_samples_of_different_sizes() -> None:
    metric = METRICS.build(dict(type="FusionMetric", metrics=["EN", "SSIM", "Qabf"], convention="sum"))
    assert isinstance(metric, FusionMetric)
    a1, b1 = _smooth_pair(batch=1, size=176)
    a2, b2 = _random_levels((1, 1, 40, 56), 1), _random_levels((1, 1, 40, 56), 2)
    samples = [
        {"fused": ((a1 + b1) / 2)[0], "ir": a1[0], "vi": b1[0]},
        {"fused": torch.maximum(a2, b2)[0, 0], "ir": a2[0], "vi": b2[0]},  # [H, W] accepted
    ]
    metric.process({}, samples)
    result = metric.evaluate(size=2)
    first = fusion_metrics((a1 + b1) / 2, a1, b1, metrics=["EN", "SSIM", "Qabf"], convention="sum")
    second = fusion_metrics(torch.maximum(a2, b2), a2, b2, metrics=["EN", "SSIM", "Qabf"], convention="sum")
    for name in ("EN", "SSIM", "Qabf"):
        expected = (float(first[name][0]) + float(second[name][0])) / 2
        assert result[f"fusion/{name}"] == pytest.approx(expected, rel=1e-12)
    assert result["fusion/count"] == 2


def test_fusion_metric_reports_missing_fields() -> None:
    metric = FusionMetric(metrics=["EN"])
    image = torch.rand(1, 16, 16)
    with pytest.raises(KeyError, match="no source pair"):
        metric.process({}, [{"fused": image, "x": image, "y": image}])
    with pytest.raises(KeyError, match="no fused image 'fused'"):
        metric.process({}, [{"a": image, "b": image}])
    metric.process({}, [{"fused": image, "a": image, "b": image}])  # ("a", "b") is found
    with pytest.raises(ValueError, match="unknown metric"):
        FusionMetric(metrics=["EN", "nope"])


@pytest.mark.parametrize("shape", [(2, 2, 480, 640), (1, 1, 60, 40), (1, 1, 31, 20), (1, 2, 30, 21)])
def test_ms_ssim_pooling_equals_avg_pool2d(shape) -> None:
    """MS-SSIM's 2×2 pooling: four strided adds on even sides, avg_pool2d with odd-side
    zero padding otherwise; bit-identical to pytorch_msssim's avg_pool2d either way."""
    from learnable_fusion_loss.metrics.structural import _average_pool2

    x = torch.rand(*shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 255
    expected = torch.nn.functional.avg_pool2d(x, 2, padding=(shape[-2] % 2, shape[-1] % 2))
    assert torch.equal(_average_pool2(x), expected)
