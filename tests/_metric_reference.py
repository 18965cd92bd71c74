"""Independent numpy reference for the fusion metrics (tests and benchmarks/metrics.py).

One image at a time on 2-D float64 arrays of 8-bit grey levels, the way the
evaluators of CDDFuse / TDFusion do it, delegating to the packages they call:
``sewar.full_ref.vifp`` (VIF), ``skimage.metrics.structural_similarity`` (SSIM),
``sklearn.metrics.mutual_info_score`` (MI), and ``scipy.signal.convolve2d`` /
``scipy.ndimage`` for the filters of Qabf, Nabf and MS-SSIM. Written from the
metric definitions, not from learnable_fusion_loss.metrics (nothing is imported
from it), so that agreement is evidence.

The optional packages are imported lazily; :func:`missing_packages` names those
that are not importable, so a test can skip with that reason.
"""

from __future__ import annotations

import importlib
import math
import time
from collections.abc import Callable

import numpy as np

REQUIRED = ("scipy", "sewar", "skimage", "sklearn")


def missing_packages() -> list[str]:
    missing = []
    for name in REQUIRED:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    return missing


# ----------------------------------------------------------------------------- single image
def en(img: np.ndarray) -> float:
    counts = np.bincount(img.astype(np.uint8).ravel(), minlength=256)
    p = counts[counts > 0] / img.size
    return float(-(p * np.log2(p)).sum())


def sd(img: np.ndarray) -> float:
    return float(np.std(img))


def sf(img: np.ndarray) -> float:
    rf = np.diff(img, axis=1)
    cf = np.diff(img, axis=0)
    return float(np.sqrt(np.mean(rf**2) + np.mean(cf**2)))


def ag(img: np.ndarray) -> float:
    gy, gx = np.gradient(img)
    return float(np.mean(np.sqrt((gx**2 + gy**2) / 2)))


# ----------------------------------------------------------------------------- pairs
def mi(x: np.ndarray, y: np.ndarray) -> float:
    from sklearn.metrics import mutual_info_score

    return float(mutual_info_score(x.astype(np.int64).ravel(), y.astype(np.int64).ravel()))


def corr(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.corrcoef(x.ravel(), y.ravel())[0, 1])


def vif(ref: np.ndarray, dist: np.ndarray) -> float:
    from sewar.full_ref import vifp

    value = float(vifp(ref, dist))
    return 1.0 if math.isnan(value) else value  # CDDFuse's rule for a flat reference


def ssim(x: np.ndarray, y: np.ndarray) -> float:
    from skimage.metrics import structural_similarity

    # TDFusion: ssim(np.uint8(F), np.uint8(A)) -> skimage defaults, data range 255.
    return float(structural_similarity(x.astype(np.uint8), y.astype(np.uint8)))


def _gauss_valid(img: np.ndarray, size: int = 11, sigma: float = 1.5) -> np.ndarray:
    from scipy.ndimage import correlate1d

    coords = np.arange(size) - size // 2
    g = np.exp(-(coords**2) / (2 * sigma**2))
    g /= g.sum()
    out = correlate1d(correlate1d(img, g, axis=0, mode="constant"), g, axis=1, mode="constant")
    half = size // 2
    return out[half:-half, half:-half]  # keep positions whose window lies inside the image


def _pool2(img: np.ndarray) -> np.ndarray:
    # 2x2 mean with stride 2; odd sides get one zero row/column on both ends first,
    # the zeros counting in the mean (avg_pool2d(padding=1, count_include_pad=True)).
    ph, pw = img.shape[0] % 2, img.shape[1] % 2
    padded = np.pad(img, ((ph, ph), (pw, pw)))
    h, w = padded.shape[0] // 2 * 2, padded.shape[1] // 2 * 2
    padded = padded[:h, :w]
    return padded.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))


def ms_ssim(x: np.ndarray, y: np.ndarray) -> float:
    weights = np.array([0.0448, 0.2856, 0.3001, 0.2363, 0.1333])
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    values = []
    for level in range(5):
        mx, my = _gauss_valid(x), _gauss_valid(y)
        vx = _gauss_valid(x * x) - mx**2
        vy = _gauss_valid(y * y) - my**2
        cxy = _gauss_valid(x * y) - mx * my
        cs = (2 * cxy + c2) / (vx + vy + c2)
        if level < 4:
            values.append(max(cs.mean(), 0.0))
            x, y = _pool2(x), _pool2(y)
        else:
            values.append(max((((2 * mx * my + c1) / (mx**2 + my**2 + c1)) * cs).mean(), 0.0))
    return float(np.prod(np.array(values) ** weights))


# ----------------------------------------------------------------------------- triplets
def scd(f: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    return corr(f - b, a) + corr(f - a, b)


def psnr(f: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    mse = (np.mean((a - f) ** 2) + np.mean((b - f) ** 2)) / 2
    return float(10 * np.log10(np.max(f) ** 2 / mse))


def _qabf_edges(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from scipy.signal import convolve2d

    sx = convolve2d(img, np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], float), mode="same")
    sy = convolve2d(img, np.array([[1, 2, 1], [0, 0, 0], [-1, -2, -1]], float), mode="same")
    g = np.sqrt(sx**2 + sy**2)
    angle = np.full(img.shape, math.pi / 2)
    nz = sx != 0
    angle[nz] = np.arctan(sy[nz] / sx[nz])
    return g, angle


def qabf(f: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    def preserved(gs: np.ndarray, as_: np.ndarray, gf: np.ndarray, af: np.ndarray) -> np.ndarray:
        rel = np.zeros_like(gs)
        m = gs > gf
        rel[m] = gf[m] / gs[m]
        m = gs == gf
        rel[m] = gf[m]
        m = gs < gf
        rel[m] = gs[m] / gf[m]
        orient = 1 - np.abs(as_ - af) / (math.pi / 2)
        return 0.9994 / (1 + np.exp(-15 * (rel - 0.5))) * 0.9879 / (1 + np.exp(-22 * (orient - 0.8)))

    ga, aa = _qabf_edges(a)
    gb, ab = _qabf_edges(b)
    gf, af = _qabf_edges(f)
    qa, qb = preserved(ga, aa, gf, af), preserved(gb, ab, gf, af)
    return float(np.sum(qa * ga + qb * gb) / np.sum(ga + gb))


def _nabf_edges(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from scipy.signal import convolve2d

    ext = np.pad(img, 1, mode="reflect")
    gv = convolve2d(ext, np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]) / 8, mode="valid")
    gh = convolve2d(ext, np.array([[-1, -2, -1], [0, 0, 0], [1, 2, 1]]) / 8, mode="valid")
    return gv, gh


def nabf(f: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    td, lg = 2.0, 1.5

    def strength_angle(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        gv, gh = _nabf_edges(img)
        g = np.hypot(gv, gh)
        angle = np.zeros_like(g)
        m = (gv != 0) | (gh != 0)
        with np.errstate(divide="ignore"):
            angle[m] = np.arctan(gv[m] / gh[m])
        return g, angle

    def preserved(gs: np.ndarray, as_: np.ndarray, gf: np.ndarray, af: np.ndarray) -> np.ndarray:
        rel = np.zeros_like(gs)
        m = (gs != 0) & (gf != 0)
        rel[m] = np.minimum(gs[m], gf[m]) / np.maximum(gs[m], gf[m])
        orient = np.abs(np.abs(as_ - af) - np.pi / 2) * 2 / np.pi
        qg = 0.9999 / (1 + np.exp(-19 * (rel - 0.5)))
        qa = 0.9995 / (1 + np.exp(-22 * (orient - 0.5)))
        return np.sqrt(qg * qa)

    ga, aa = strength_angle(a)
    gb, ab = strength_angle(b)
    gf, af = strength_angle(f)
    qa, qb = preserved(ga, aa, gf, af), preserved(gb, ab, gf, af)
    wa = np.where(ga >= td, ga**lg, 0.0)
    wb = np.where(gb >= td, gb**lg, 0.0)
    artifact = (gf > ga) & (gf > gb)
    return float(np.sum(artifact * ((1 - qa) * wa + (1 - qb) * wb)) / np.sum(wa + wb))


# ----------------------------------------------------------------------------- the suite
def _two(fn: Callable[[np.ndarray, np.ndarray], float], convention: str):
    def metric(f: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
        total = fn(a, f) + fn(b, f)
        return total if convention == "sum" else total / 2

    return metric


def suite(convention: str = "mean") -> dict[str, Callable[[np.ndarray, np.ndarray, np.ndarray], float]]:
    """``{metric name: fn(fused, a, b) -> float}`` for one convention."""
    return {
        "EN": lambda f, a, b: en(f),
        "SD": lambda f, a, b: sd(f),
        "SF": lambda f, a, b: sf(f),
        "AG": lambda f, a, b: ag(f),
        "MI": _two(mi, convention),
        "SCD": scd,
        "VIF": _two(vif, convention),
        "Qabf": qabf,
        "Nabf": nabf,
        "SSIM": _two(ssim, convention),
        "MS_SSIM": _two(ms_ssim, convention),
        "PSNR": psnr,
        "CC": _two(corr, "mean"),  # both evaluators average CC
    }


def reference_metrics(
    f: np.ndarray, a: np.ndarray, b: np.ndarray, convention: str = "mean",
    names: tuple[str, ...] | None = None, timings: dict[str, float] | None = None,
) -> dict[str, float]:
    """All (or ``names``) metrics of one triplet of 2-D grey-level arrays; adds seconds to ``timings``."""
    out = {}
    for name, fn in suite(convention).items():
        if names is not None and name not in names:
            continue
        start = time.perf_counter()
        out[name] = fn(f.astype(np.float64), a.astype(np.float64), b.astype(np.float64))
        if timings is not None:
            timings[name] = timings.get(name, 0.0) + time.perf_counter() - start
    return out
