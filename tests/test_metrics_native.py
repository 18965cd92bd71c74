"""The compiled float64 filters behind VIF, SSIM and MS-SSIM (metrics.native): the
moments against float64 conv2d, the in-kernel VIF and SSIM formulas against the
torch path, across strides, row tails, thread splits, strided inputs and forked
children, and the fallback when no compiler works."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F

from learnable_fusion_loss.metrics import fusion_metrics, native
from learnable_fusion_loss.metrics.filters import gaussian_1d


def _levels(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, shape, generator=g).double()


def _correlate(x: torch.Tensor, kernel_1d: torch.Tensor, stride: int = 1) -> torch.Tensor:
    """Independent reference: float64 conv2d (a correlation) with the outer-product window."""
    window = torch.outer(kernel_1d, kernel_1d)[None, None]
    out = F.conv2d(x.reshape(-1, 1, *x.shape[-2:]), window, stride=stride)
    return out.reshape(*x.shape[:-2], *out.shape[-2:])


def _close(got: torch.Tensor, expected: torch.Tensor, scale: float) -> None:
    # Same sums in another order: rounding of values up to `scale` (255² for second moments).
    torch.testing.assert_close(got, expected, rtol=0, atol=scale * 1e-13)


# Widths below, at and around the 8-lane tile; 'valid' outputs as narrow as one column.
SHAPES = [(2, 2, 40, 37), (1, 1, 17, 17), (1, 2, 23, 8), (3, 1, 30, 24), (1, 2, 19, 9)]


@pytest.mark.parametrize(("shape", "taps"),
                         [(shape, taps) for shape in SHAPES for taps in (3, 7, 11, 17) if min(shape[-2:]) >= taps])
def test_local_moments_equal_conv2d(compiled_filters: None, shape: tuple[int, ...], taps: int) -> None:
    x = _levels(shape, seed=taps)
    y = _levels((shape[0], 1, *shape[2:]), seed=taps + 1)
    win = gaussian_1d(taps, taps / 5.0, x) if taps != 7 else torch.full((7,), 1 / 7, dtype=torch.float64)
    mu_x, mu_y, var_x, var_y, cov = native.local_moments(x, y, win)
    ex, ey = _correlate(x, win), _correlate(y, win)
    _close(mu_x, ex, 255.0)
    _close(mu_y, ey, 255.0)
    _close(var_x, _correlate(x * x, win) - ex * ex, 255.0**2)
    _close(var_y, _correlate(y * y, win) - ey * ey, 255.0**2)
    _close(cov, _correlate(x * y, win) - ex * ey, 255.0**2)
    # means=False writes the same variances and no means.
    none_x, none_y, *rest = native.local_moments(x, y, win, means=False)
    assert none_x is None and none_y is None
    for a, b in zip(rest, (var_x, var_y, cov)):
        assert torch.equal(a, b)


@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("shape", [(2, 3, 41, 38), (1, 17, 9), (20, 25)])
def test_filter_valid_equals_strided_conv2d(compiled_filters: None, stride: int, shape: tuple[int, ...]) -> None:
    x = _levels(shape, seed=stride)
    win = gaussian_1d(9, 1.8, x)
    got = native.filter_valid(x, win, stride)
    expected = _correlate(x, win, stride)
    assert got.shape == expected.shape
    _close(got, expected, 255.0)


def test_strided_views_and_thread_counts_give_identical_values(compiled_filters: None) -> None:
    base = _levels((2, 2, 70, 90), seed=5)
    x = base[:, :, 3:, 5:]  # unit column stride, row stride 90: read in place
    y = _levels((2, 1, 67, 85), seed=6)
    win = gaussian_1d(11, 1.5, x)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = native.local_moments(x, y, win) + (native.filter_valid(x, win, 2),)
        torch.set_num_threads(3)
        three = native.local_moments(x, y, win) + (native.filter_valid(x, win, 2),)
    finally:
        torch.set_num_threads(threads)
    contiguous = native.local_moments(x.contiguous(), y, win) + (native.filter_valid(x.contiguous(), win, 2),)
    for a, b, c in zip(one, three, contiguous):
        assert torch.equal(a, b) and torch.equal(a, c)  # each row's sums do not depend on the split


def test_bad_shapes_are_refused_with_sizes(compiled_filters: None) -> None:
    win = gaussian_1d(11, 1.5, torch.zeros(1, dtype=torch.float64))
    with pytest.raises(ValueError, match="11x11 window does not fit in 10x40"):
        native.local_moments(_levels((1, 1, 10, 40), 0), _levels((1, 1, 10, 40), 1), win)
    with pytest.raises(ValueError, match=r"y \[B, 1, H, W\]"):
        native.local_moments(_levels((1, 2, 20, 20), 0), _levels((1, 2, 20, 20), 1), win)
    with pytest.raises(ValueError, match="stride 2 does not apply to 8x40"):
        native.filter_valid(_levels((8, 40), 0), win, 2)
    with pytest.raises(ValueError, match="CPU float64 maps with unit column stride, got torch.float32"):
        native.filter_valid(_levels((20, 40), 0).float(), win)
    with pytest.raises(ValueError, match=r"unit column stride, got torch.float64 on cpu with strides \(800, 800, 1, 20\)"):
        native.local_moments(_levels((1, 1, 40, 20), 0).transpose(-1, -2), _levels((1, 1, 20, 40), 1), win)


def test_only_cpu_float64_maps_outside_autograd_take_the_kernels(compiled_filters: None) -> None:
    x = _levels((1, 1, 20, 20), 0)
    assert native.available(x)
    assert not native.available(x.float())
    assert not native.available(x.transpose(-1, -2))  # no unit column stride
    assert not native.available(x.clone().requires_grad_())
    with native.disabled():
        assert not native.available(x)
        with native.disabled():
            pass
        assert not native.available(x)  # nested blocks restore what was there
    assert native.available(x)


def _fresh_state(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setattr(native, "_library", None)
    monkeypatch.setattr(native, "_reason", None)
    monkeypatch.setenv("LFL_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("LFL_NATIVE_METRICS", raising=False)  # a user's switch would hide what is tested


def test_a_failing_compiler_falls_back_with_a_warning(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    g = torch.Generator().manual_seed(0)
    a, b = (torch.rand(1, 1, 180, 180, generator=g, dtype=torch.float64) for _ in range(2))
    fused = (a + b) / 2
    with native.disabled():
        torch_path = fusion_metrics(fused, a, b, metrics=["VIF", "SSIM", "MS_SSIM"])

    _fresh_state(monkeypatch, tmp_path)
    monkeypatch.setenv("CC", "false")  # exists, and fails on every input
    with pytest.warns(RuntimeWarning, match="compiled filters unavailable.*false failed on native_filters.c"):
        assert not native.available(a)
    assert "false failed" in native.unavailable_reason()
    assert not list((tmp_path / "cache" / "kernels").glob("*"))  # no partial library left behind
    fallback = fusion_metrics(fused, a, b, metrics=["VIF", "SSIM", "MS_SSIM"])
    for name, value in torch_path.items():
        assert torch.equal(fallback[name], value)


def test_the_environment_switch_turns_the_kernels_off_quietly(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    _fresh_state(monkeypatch, tmp_path)
    monkeypatch.setenv("LFL_NATIVE_METRICS", "0")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not native.available(_levels((1, 1, 20, 20), 0))
    assert native.unavailable_reason() == "disabled by LFL_NATIVE_METRICS"


def test_the_library_is_built_once_into_the_cache(compiled_filters: None, monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    _fresh_state(monkeypatch, tmp_path)
    assert native.available(_levels((1, 1, 20, 20), 0))
    (built,) = (tmp_path / "cache" / "kernels").glob("native_filters_*.so")
    stamp = built.stat().st_mtime_ns
    _fresh_state(monkeypatch, tmp_path)  # a new process: finds it, does not rebuild
    assert native.available(_levels((1, 1, 20, 20), 0))
    assert built.stat().st_mtime_ns == stamp


def _structured(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """Grey levels with texture, a flat patch (VIF's eps masks) and a saturated corner."""
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(*shape[:-2], shape[-2] // 6 + 1, shape[-1] // 6 + 1, generator=g, dtype=torch.float64)
    smooth = F.interpolate(base.reshape(-1, 1, *base.shape[-2:]), size=shape[-2:], mode="bicubic")
    levels = (smooth.reshape(shape) * 255 + torch.randn(shape, generator=g, dtype=torch.float64) * 6)
    levels = levels.round().clamp(0, 255)
    levels[..., 2:14, 3:20] = 77.0
    levels[..., -6:, -6:] = 255.0
    return levels


# VIF's smallest side (41) and up; output widths with many remainders modulo the 8-lane tile.
FORMULA_SHAPES = [(2, 2, 60, 57), (1, 1, 41, 44), (3, 2, 45, 50), (1, 2, 43, 47)]


@pytest.mark.parametrize("shape", FORMULA_SHAPES)
def test_vif_and_ssim_formulas_in_the_kernel_equal_the_torch_path(compiled_filters: None, shape: tuple[int, ...]) -> None:
    from learnable_fusion_loss.metrics import information, structural

    refs = _structured(shape, seed=shape[-1])
    dist = _structured((shape[0], 1, *shape[2:]), seed=shape[-1] + 1)
    dist[..., 2:14, 3:20] = 77.0  # both windows flat: g masked
    kernel = {
        "VIF": lambda: information.vif_levels(refs, dist),
        "SSIM": lambda: structural.ssim_levels(refs, dist, integer_levels=True),
        "MS_SSIM": lambda: structural.ms_ssim_levels(refs, dist) if min(shape[-2:]) >= 161 else None,
        "SSIM_7x7_means": lambda: native.ssim_means(refs, dist, torch.full((7,), 1 / 7, dtype=torch.float64),
                                                    6.5025, 58.5225, 49 / 48)[1],
    }
    compiled_values = {name: fn() for name, fn in kernel.items()}
    with native.disabled():
        torch_values = {name: fn() for name, fn in kernel.items() if name != "SSIM_7x7_means"}
    for name, expected in torch_values.items():
        if expected is not None:
            torch.testing.assert_close(compiled_values[name], expected, rtol=1e-13, atol=0, msg=name)
    torch.testing.assert_close(compiled_values["SSIM_7x7_means"], torch_values["SSIM"], rtol=1e-13, atol=0)


def test_ms_ssim_levels_in_the_kernel_equal_the_torch_path(compiled_filters: None) -> None:
    from learnable_fusion_loss.metrics import structural

    refs = _structured((2, 2, 170, 187), seed=11)  # odd sides at every pooled level
    dist = _structured((2, 1, 170, 187), seed=12)
    got = structural.ms_ssim_levels(refs, dist)
    with native.disabled():
        torch.testing.assert_close(got, structural.ms_ssim_levels(refs, dist), rtol=1e-13, atol=0)


def test_reduced_sums_do_not_depend_on_the_thread_split(compiled_filters: None) -> None:
    refs, dist = _structured((2, 2, 90, 75), seed=3), _structured((2, 1, 90, 75), seed=4)
    win = gaussian_1d(9, 1.8, refs)
    threads = torch.get_num_threads()
    results = []
    try:
        for count in (1, 2, 3):
            torch.set_num_threads(count)
            results.append(native.vif_log_sums(refs, dist, win, 2.0, 1e-10)
                           + native.ssim_means(refs, dist, win, 6.5, 58.5, 1.0))
    finally:
        torch.set_num_threads(threads)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert torch.equal(a, b)


def _vif_sums_in_child(refs: torch.Tensor, dist: torch.Tensor, queue) -> None:
    win = gaussian_1d(11, 1.5, refs)
    queue.put([t.tolist() for t in native.vif_log_sums(refs, dist, win, 2.0, 1e-10)])


def test_a_forked_child_gets_its_own_threads(compiled_filters: None) -> None:
    import multiprocessing
    import queue as queues

    refs, dist = _structured((2, 2, 300, 300), seed=7), _structured((2, 1, 300, 300), seed=8)
    parent = native.vif_log_sums(refs, dist, gaussian_1d(11, 1.5, refs), 2.0, 1e-10)  # the pool now has threads
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    child = context.Process(target=_vif_sums_in_child, args=(refs, dist, results))
    child.start()
    try:
        got = results.get(timeout=60)  # the inherited pool has no threads: it would wait forever
    except queues.Empty:
        pytest.fail("the compiled filters hung in a forked child")
    finally:
        child.join(10)
        if child.is_alive():
            child.kill()
    for value, expected in zip(got, parent):
        assert torch.equal(torch.tensor(value, dtype=torch.float64), expected)
