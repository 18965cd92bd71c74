"""Compiled float64 separable filters for VIF, SSIM and MS-SSIM on CPU.

``native_filters.c`` is built with the system C compiler the first time a metric
needs it (about a second; no torch headers), cached under
``compat.cache_dir()/kernels`` by a hash of the source and the compiler, and
loaded with :mod:`ctypes`. Its functions release the GIL, so the output rows are
split over ``torch.get_num_threads()`` threads.

Why hand-written C: PyTorch has no fast float64 convolution on CPU (oneDNN has
no double), scipy.ndimage is single-threaded and slower than the banded-GEMM
path in :mod:`.filters`, and that path is bound by memory traffic because it
materialises every product map, both filter passes and every step of the
formula. The kernels form the products on the fly, keep the vertical sums in
cache and, for :func:`vif_log_sums` and :func:`ssim_means`, evaluate the formula
in registers and return per-row sums (``benchmarks/metrics.py`` times both
paths). The values are the same float64 sums in another order: ~1e-15 relative
for SSIM and MS-SSIM, ~1e-10 for VIF, whose ``eps`` masks decide a few near-flat
windows by rounding noise (the tests compare both paths and the reference).

Where no compiler is found, or compiling fails, :func:`available` is false,
one :class:`RuntimeWarning` says why, and the metrics take the torch path.
``LFL_NATIVE_METRICS=0`` turns the kernels off; :func:`disabled` does for a block.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import platform
import shlex
import shutil
import subprocess
import sysconfig
import tempfile
import threading
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from torch import Tensor

from ..compat import cache_dir

__all__ = ["available", "disabled", "filter_valid", "local_moments", "ssim_means", "unavailable_reason", "vif_log_sums"]

SOURCE = Path(__file__).with_name("native_filters.c")
_FLAGS = ("-O3", "-std=gnu11", "-ffp-contract=fast", "-fPIC", "-shared")
_MIN_ROWS_PER_THREAD = 32  # below this, a thread hand-off costs more than the rows

_state_lock = threading.Lock()
_library: ctypes.CDLL | None = None
_reason: str | None = None  # why the kernels are unavailable; None while untried or loaded
_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_disabled = False  # see disabled()


def _reset_after_fork() -> None:
    # A forked child inherits the pool object but not its threads.
    global _pool, _pool_size
    _pool, _pool_size = None, 0


if hasattr(os, "register_at_fork"):  # POSIX only
    os.register_at_fork(after_in_child=_reset_after_fork)


def _compiler() -> list[str] | None:
    candidates = [os.environ.get("CC"), sysconfig.get_config_var("CC"), "cc", "gcc", "clang"]
    for candidate in candidates:
        if candidate:
            command = shlex.split(candidate)
            if command and shutil.which(command[0]):
                return command
    return None


def _build(compiler: list[str]) -> Path:
    """Compile the kernels (or find them in the cache); returns the shared library's path."""
    version = subprocess.run([*compiler, "--version"], check=False, capture_output=True, text=True,
                             timeout=60).stdout
    key = hashlib.sha256(
        "\0".join([SOURCE.read_text(), " ".join(compiler), version, platform.machine(), *_FLAGS]).encode()
    ).hexdigest()[:16]
    folder = cache_dir() / "kernels"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:  # read-only home: build per process
        folder = Path(tempfile.mkdtemp(prefix="lfl_kernels_"))
    target = folder / f"native_filters_{key}.so"
    if target.exists():
        return target
    # Compile to a private name, then rename: concurrent processes never load a half-written file.
    fd, partial = tempfile.mkstemp(dir=folder, suffix=".so.partial")
    os.close(fd)
    try:
        result = subprocess.run([*compiler, *_FLAGS, str(SOURCE), "-o", partial],
                                check=False, capture_output=True, text=True, timeout=300)
        if result.returncode != 0:
            tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
            raise RuntimeError(f"{' '.join(compiler)} failed on {SOURCE.name}: {' | '.join(tail)}")
        os.replace(partial, target)
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
    return target


def _load() -> ctypes.CDLL | None:
    global _library, _reason
    if _library is not None:  # every metric call asks; no lock once loaded
        return _library
    with _state_lock:
        if _library is not None or _reason is not None:
            return _library
        if os.environ.get("LFL_NATIVE_METRICS", "1").strip().lower() in {"0", "false", "no", "off"}:
            _reason = "disabled by LFL_NATIVE_METRICS"
            return None
        try:
            compiler = _compiler()
            if compiler is None:
                raise RuntimeError("no C compiler found (set CC, or install cc/gcc/clang)")
            library = ctypes.CDLL(str(_build(compiler)))
        except (OSError, RuntimeError, subprocess.SubprocessError) as error:
            _reason = str(error)
            warnings.warn(f"learnable_fusion_loss.metrics: compiled filters unavailable ({_reason}); "
                          "VIF, SSIM and MS-SSIM take the slower torch path", RuntimeWarning, stacklevel=3)
            return None
        p, n = ctypes.c_void_p, ctypes.c_long
        library.lfl_local_moments.argtypes = [p, n, n, n, p, n, n, n, n, n, n, p, n, n, n, ctypes.c_int, p,
                                              p, p, p, p, p, p]
        library.lfl_local_moments.restype = ctypes.c_int
        library.lfl_filter_valid.argtypes = [p, n, n, n, n, n, p, n, n, n, n, p]
        library.lfl_filter_valid.restype = ctypes.c_int
        _library = library
        return _library


def unavailable_reason() -> str | None:
    """Why the kernels cannot be used (``None`` if they can); builds them on first call."""
    _load()
    return _reason


@contextlib.contextmanager
def disabled() -> Iterator[None]:
    """Within the block (in every thread) the metrics take the torch path, e.g. to
    time or compare the two paths, as ``benchmarks/metrics.py`` does."""
    global _disabled
    previous, _disabled = _disabled, True
    try:
        yield
    finally:
        _disabled = previous


def available(*tensors: Tensor) -> bool:
    """Whether the kernels can filter ``tensors``: CPU float64 maps with unit column
    stride, outside autograd (the kernels have no backward), and not :func:`disabled`."""
    if _disabled:
        return False
    for t in tensors:
        if not _readable(t) or (t.requires_grad and torch.is_grad_enabled()):
            return False
    return _load() is not None


def _readable(t: Tensor) -> bool:
    """What the kernels can read through a raw pointer: CPU float64, unit column stride."""
    return t.device.type == "cpu" and t.dtype == torch.float64 and t.stride(-1) == 1


def _loaded() -> ctypes.CDLL:
    library = _load()
    if library is None:
        raise RuntimeError(f"compiled filters unavailable: {_reason}")
    return library


def _run_rows(call, rows: int) -> None:
    """``call(r0, r1)`` over ``[0, rows)`` split across ``torch.get_num_threads()`` threads."""
    global _pool, _pool_size
    threads = max(1, min(torch.get_num_threads(), rows // _MIN_ROWS_PER_THREAD))
    if threads == 1:
        codes = [call(0, rows)]
    else:
        with _state_lock:
            if _pool is None or _pool_size < threads:  # grows with set_num_threads, never churns
                if _pool is not None:
                    _pool.shutdown(wait=False)
                _pool, _pool_size = ThreadPoolExecutor(threads, thread_name_prefix="lfl-filter"), threads
            pool = _pool
        bounds = [rows * t // threads for t in range(threads + 1)]
        codes = list(pool.map(call, bounds[:-1], bounds[1:]))
    if any(codes):
        raise MemoryError("compiled metric filters: could not allocate their row buffers")


def _ptr(t: Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


_MOMENT_MAPS, _VIF_LOG_SUMS, _SSIM_SUMS = 0, 1, 2  # the kernel's modes (native_filters.c)


def _check_maps(*tensors: Tensor) -> None:
    # The kernels take raw pointers: anything else would be read as garbage.
    for t in tensors:
        if not _readable(t):
            raise ValueError(f"compiled filters need CPU float64 maps with unit column stride, got {t.dtype} "
                             f"on {t.device} with strides {t.stride()}")


def _check_pair(x: Tensor, y: Tensor, taps: int) -> tuple[int, int]:
    """Validate a moments call; returns the 'valid' output size ``(Ho, Wo)``."""
    _check_maps(x, y)
    if x.dim() != 4 or y.dim() != 4 or y.shape[1] != 1 or x.shape[0] != y.shape[0] or x.shape[2:] != y.shape[2:]:
        raise ValueError(f"local moments expect x [B, S, H, W] and y [B, 1, H, W], got {tuple(x.shape)}, "
                         f"{tuple(y.shape)}")
    if x.shape[2] < taps or x.shape[3] < taps:
        raise ValueError(f"a {taps}x{taps} window does not fit in {x.shape[2]}x{x.shape[3]} maps")
    return x.shape[2] - taps + 1, x.shape[3] - taps + 1


def _moments_kernel(x: Tensor, y: Tensor, kernel_1d: Tensor, mode: int, params: tuple[float, ...] = (),
                    maps: tuple[Tensor | None, ...] = (None,) * 5) -> Tensor | None:
    """Run ``lfl_local_moments`` over all output rows of maps that passed
    :func:`_check_pair`; returns the per-row sums ``[B, S, 2]`` (summed over rows) in
    the reducing modes, ``None`` for the maps."""
    library = _loaded()
    taps = kernel_1d.numel()
    batch, channels, height, width = x.shape
    out_h = height - taps + 1
    weights = kernel_1d.to(torch.float64).contiguous()
    constants = torch.tensor(params, dtype=torch.float64) if params else None
    row_sums = x.new_empty(batch, out_h, channels, 2) if mode != _MOMENT_MAPS else None
    sxb, sxs, sxh = x.stride()[:3]
    syb, syh = y.stride(0), y.stride(2)
    pointers = [_ptr(t) for t in maps]

    def call(r0: int, r1: int) -> int:
        return library.lfl_local_moments(
            x.data_ptr(), sxb, sxs, sxh, y.data_ptr(), syb, syh, batch, channels, height, width,
            weights.data_ptr(), taps, r0, r1, mode, _ptr(constants), *pointers, _ptr(row_sums))

    _run_rows(call, batch * out_h)
    return None if row_sums is None else row_sums.sum(1)


def local_moments(x: Tensor, y: Tensor, kernel_1d: Tensor, means: bool = True
                  ) -> tuple[Tensor | None, Tensor | None, Tensor, Tensor, Tensor]:
    """Separable-window ``μx, μy, σx², σy², σxy`` ('valid') of ``x`` [B, S, H, W] against
    ``y`` [B, 1, H, W], each as E[·] − products of means, like
    :func:`.filters.local_moments` but not transposed. ``means=False`` returns
    ``None`` for ``μx, μy`` (not written). Check :func:`available` first."""
    out_h, out_w = _check_pair(x, y, kernel_1d.numel())
    batch, channels = x.shape[:2]
    var_x = x.new_empty(batch, channels, out_h, out_w)
    cov = torch.empty_like(var_x)
    var_y = x.new_empty(batch, 1, out_h, out_w)
    mu_x = torch.empty_like(var_x) if means else None
    mu_y = torch.empty_like(var_y) if means else None
    _moments_kernel(x, y, kernel_1d, _MOMENT_MAPS, maps=(mu_x, mu_y, var_x, var_y, cov))
    return mu_x, mu_y, var_x, var_y, cov


def vif_log_sums(reference: Tensor, distorted: Tensor, kernel_1d: Tensor, sigma_nsq: float, eps: float
                 ) -> tuple[Tensor, Tensor]:
    """One VIF scale without moment maps: ``Σ log10(1 + g²σ1²/(sv² + σn²))`` and
    ``Σ log10(1 + σ1²/σn²)`` over the 'valid' map, each [B, S], with the masks of
    :func:`.information.vif_levels` (reference [B, S, H, W], distorted [B, 1, H, W])."""
    _check_pair(reference, distorted, kernel_1d.numel())
    sums = _moments_kernel(reference, distorted, kernel_1d, _VIF_LOG_SUMS, (sigma_nsq, eps))
    return sums[..., 0], sums[..., 1]


def ssim_means(x: Tensor, y: Tensor, kernel_1d: Tensor, c1: float, c2: float, cov_norm: float
               ) -> tuple[Tensor, Tensor]:
    """Means over the 'valid' map of SSIM's contrast-structure term
    ``cs = (2σxy + c2)/(σx² + σy² + c2)`` and of SSIM itself
    ``(2μxμy + c1)(2σxy + c2)/((μx² + μy² + c1)(σx² + σy² + c2))``, each [B, S], every
    σ scaled by ``cov_norm``; no moment map is written."""
    out_h, out_w = _check_pair(x, y, kernel_1d.numel())
    sums = _moments_kernel(x, y, kernel_1d, _SSIM_SUMS, (c1, c2, cov_norm))
    area = out_h * out_w
    return sums[..., 0] / area, sums[..., 1] / area


def filter_valid(x: Tensor, kernel_1d: Tensor, stride: int = 1) -> Tensor:
    """Separable 'valid' correlation of ``x`` [..., H, W] with a 1-D kernel, keeping
    every ``stride``-th row and column (``filtered[..., ::stride, ::stride]``), not
    transposed. Check :func:`available` first."""
    library = _loaded()
    _check_maps(x)
    height, width = x.shape[-2:]
    taps = kernel_1d.numel()
    if height < taps or width < taps or stride < 1:
        raise ValueError(f"a {taps}-tap filter with stride {stride} does not apply to {height}x{width} maps")
    flat = x.reshape(-1, height, width)  # a view whenever the leading axes allow it
    weights = kernel_1d.to(torch.float64).contiguous()
    out_h, out_w = (height - taps) // stride + 1, (width - taps) // stride + 1
    out = x.new_empty(flat.shape[0], out_h, out_w)
    sxn, sxh = flat.stride(0), flat.stride(1)

    def call(r0: int, r1: int) -> int:
        return library.lfl_filter_valid(flat.data_ptr(), sxn, sxh, flat.shape[0], height, width,
                                        weights.data_ptr(), taps, stride, r0, r1, out.data_ptr())

    _run_rows(call, flat.shape[0] * out_h)
    return out.view(*x.shape[:-2], out_h, out_w)
