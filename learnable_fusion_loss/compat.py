"""Offline and version-compatibility shims for the third-party task backends.

Everything here is idempotent and cheap, so adapters and tools simply call it.

Ultralytics (8.3)
    At *import* time ultralytics resolves DNS names to decide whether it is
    online (``utils.is_online``), creates ``settings.json`` in its config
    directory and prepares telemetry; plotting code later downloads
    ``Arial.ttf`` through ``utils.checks.check_font``. :func:`apply_offline_defaults`
    must therefore run *before* ``import ultralytics``:

    * ``YOLO_OFFLINE=true`` – ultralytics only honours the literal string
      ``"true"``; a truthy spelling such as ``1`` is normalised to it, an explicit
      false value (``0``/``false``/``no``/``off``) is respected;
    * ``YOLO_AUTOINSTALL=false`` unless set (no ``pip install`` at run time);
    * ``YOLO_CONFIG_DIR`` unless set: ``$LFL_CACHE/ultralytics`` or
      ``~/.cache/learnable_fusion_loss/ultralytics``.

    Once ultralytics is imported (now or later, through :func:`import_ultralytics`)
    :func:`patch_ultralytics` turns settings sync, hub and every logger
    integration off, forces its ``ONLINE`` flags to ``False`` and replaces
    ``check_font`` by :func:`local_font_path` (matplotlib's bundled DejaVu Sans),
    so no font is ever fetched. The adapters also never plot (``plots=False``).

MMEngine (0.10.7) under torch >= 2.6
    ``torch.load`` defaults to ``weights_only=True``; MMEngine's checkpoint
    loaders call it without the argument, so a checkpoint written by MMEngine's
    runner (numpy scalars and arrays in ``meta``/``message_hub``,
    ``HistoryBuffer`` objects) fails to load. :func:`patch_mmengine_checkpoint_loading`
    keeps the safe unpickler and allow-lists exactly those types with
    ``torch.serialization.add_safe_globals``. It does *not* switch
    ``weights_only`` off: an untrusted file still cannot run code.
    :func:`load_weights_only` is the project's one way to read a checkpoint: the
    allow-list applied first (so it works in a fresh process), and an error that
    names the file and the refused object instead of advising an unsafe reload.

setuptools / ``pkg_resources``
    MMEngine imports ``pkg_resources`` (only to resolve ``mmseg::`` style config
    paths). setuptools 80.9 still ships it but warns on every import; the warning
    is filtered. With setuptools >= 81 (no ``pkg_resources``) the two MMEngine
    helpers that need it are replaced by ``importlib.metadata`` versions; pinning
    ``setuptools<81`` (as ``constraints.txt`` does) is the other fix.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.metadata
import importlib.util
import os
import re
import sys
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

__all__ = [
    "cache_dir",
    "apply_offline_defaults",
    "import_ultralytics",
    "patch_ultralytics",
    "local_font_path",
    "patch_mmengine_checkpoint_loading",
    "mmengine_safe_globals",
    "load_weights_only",
    "keep_freed_memory",
]

_FALSE_VALUES = {"0", "false", "no", "off"}
_ULTRALYTICS_SETTINGS_OFF = (
    "sync", "hub", "clearml", "comet", "dvc", "mlflow", "neptune", "raytune",
    "tensorboard", "wandb", "vscode_msg", "openvino_msg",
)


def cache_dir() -> Path:
    """The project's cache root: ``$LFL_CACHE`` or ``~/.cache/learnable_fusion_loss``."""
    env = os.environ.get("LFL_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "learnable_fusion_loss"


def _quiet_pkg_resources() -> None:
    warnings.filterwarnings("ignore", message=r"pkg_resources is deprecated", category=UserWarning)
    warnings.filterwarnings(
        "ignore", message=r"Deprecated call to `pkg_resources", category=DeprecationWarning
    )


def apply_offline_defaults() -> None:
    """Environment for a fully offline run; patch ultralytics if it is already imported.

    Call before ``import ultralytics`` (the adapters do). Existing user settings
    win, except that a truthy ``YOLO_OFFLINE`` is normalised to ``"true"`` (the only
    value ultralytics recognises).
    """
    offline = os.environ.get("YOLO_OFFLINE")
    if offline is None or offline.strip().lower() not in _FALSE_VALUES:
        os.environ["YOLO_OFFLINE"] = "true"
    os.environ.setdefault("YOLO_AUTOINSTALL", "false")
    os.environ.setdefault("YOLO_CONFIG_DIR", str(cache_dir() / "ultralytics"))
    # ultralytics only uses the directory if its parent exists and is writable;
    # otherwise it silently falls back to /tmp/Ultralytics or the CWD.
    with contextlib.suppress(OSError):
        Path(os.environ["YOLO_CONFIG_DIR"]).expanduser().mkdir(parents=True, exist_ok=True)
    _quiet_pkg_resources()
    _ensure_mmengine_package_utils()
    if "ultralytics" in sys.modules:
        patch_ultralytics()


#: glibc ``mallopt`` parameters (``<malloc.h>``).
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4


def keep_freed_memory() -> bool:
    """Make glibc keep freed memory for reuse instead of returning it to the kernel.

    PyTorch's CPU allocator is plain ``malloc``. glibc serves every block above
    32 MiB (and, before its threshold adapts, above 128 KiB) with a fresh ``mmap``
    and unmaps it on ``free``, so each large activation of a training step is
    page-faulted and zeroed by the kernel again: during development, a Restormer-based
    fusion net's meta step at 256×256 on 2 cores spent 18 s of 42 CPU-seconds in the kernel. With ``mmap`` off
    for the heap and no trimming, freed blocks are reused and that time dropped below
    1 s (``resource.getrusage`` around one step; ``tests/test_compat_memory.py`` counts
    the page faults). The price: the process keeps its peak memory
    until it exits, which a training or benchmark process does anyway. Equivalent to
    ``GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=<huge>``.

    Process-wide, so only the tools and benchmarks call it; the library never does.
    Returns False (and changes nothing) where the C library is not glibc.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if sys.platform != "linux" or name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))


def _offline() -> bool:
    return os.environ.get("YOLO_OFFLINE", "").strip().lower() == "true"


def import_ultralytics() -> ModuleType:
    """``import ultralytics`` with :func:`apply_offline_defaults` before and the patches after."""
    apply_offline_defaults()
    module = importlib.import_module("ultralytics")
    patch_ultralytics()
    return module


@functools.lru_cache(maxsize=None)
def local_font_path(font: str = "Arial.ttf") -> Path:
    """A local TrueType font to use wherever ultralytics asks for ``font``.

    Ultralytics' own ``check_font`` downloads Arial; this returns matplotlib's
    bundled DejaVu Sans (which also covers non-Latin glyphs reasonably) instead.
    """
    import matplotlib

    path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    if not path.is_file():
        raise FileNotFoundError(f"matplotlib's bundled font is missing: {path} (requested {font})")
    return path


def _local_check_font(font: str = "Arial.ttf") -> Path:
    """Drop-in for ``ultralytics.utils.checks.check_font`` that never downloads."""
    candidate = Path(font)
    return candidate if candidate.is_file() else local_font_path(candidate.name)


def patch_ultralytics() -> None:
    """Neutralise ultralytics' network paths in the already imported modules.

    * ``check_font`` -> :func:`_local_check_font` in every loaded ultralytics module
      that bound it (and in ``utils.checks`` itself, so later imports get it too);
    * in offline mode, every module-level ``ONLINE`` flag -> ``False`` and telemetry
      (``utils.events.events``) disabled;
    * settings ``sync``, ``hub`` and the logger integrations -> ``False`` (written
      once to the project-controlled settings file).
    """
    if "ultralytics" not in sys.modules:
        return
    checks = sys.modules.get("ultralytics.utils.checks")
    original = getattr(checks, "check_font", None) if checks is not None else None
    offline = _offline()
    for name, module in list(sys.modules.items()):
        if module is None or not (name == "ultralytics" or name.startswith("ultralytics.")):
            continue
        font_fn = module.__dict__.get("check_font")
        if font_fn is not None and font_fn is not _local_check_font and (
            font_fn is original or getattr(font_fn, "__name__", "") == "check_font"
        ):
            module.check_font = _local_check_font
        if offline and module.__dict__.get("ONLINE") is True:
            module.ONLINE = False
    events_module = sys.modules.get("ultralytics.utils.events")
    if events_module is not None and hasattr(events_module, "events"):
        events_module.events.enabled = False
    utils = sys.modules.get("ultralytics.utils")
    settings = getattr(utils, "SETTINGS", None)
    if settings is not None:
        changes = {k: False for k in _ULTRALYTICS_SETTINGS_OFF if settings.get(k, False) is True}
        if changes:
            settings.update(changes)


# ---------------------------------------------------------------- MMEngine / torch.load
def mmengine_safe_globals() -> list[Any]:
    """The non-tensor types found in MMEngine runner checkpoints.

    numpy arrays/scalars/dtypes (``message_hub`` log history, seeds, metrics),
    MMEngine's ``HistoryBuffer`` and ``ConfigDict`` and ``collections`` containers.
    None of them runs code on unpickling beyond building the value.
    """
    import collections

    import numpy as np

    safe: list[Any] = [collections.OrderedDict, collections.defaultdict, np.ndarray, np.dtype]
    multiarray = getattr(np, "_core", None)
    multiarray = getattr(multiarray, "multiarray", None) or np.core.multiarray
    safe += [multiarray.scalar, multiarray._reconstruct]
    for name in (
        "bool_", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
        "float16", "float32", "float64", "complex64", "complex128", "str_", "bytes_",
    ):
        safe.append(type(np.dtype(getattr(np, name))))
    try:
        from mmengine.logging import HistoryBuffer

        safe.append(HistoryBuffer)
    except ImportError:  # pragma: no cover - mmengine is a core dependency
        pass
    try:
        from mmengine.config import ConfigDict

        safe.append(ConfigDict)
    except ImportError:  # pragma: no cover
        pass
    return safe


@functools.lru_cache(maxsize=None)
def patch_mmengine_checkpoint_loading() -> None:
    """Let MMEngine's ``load_checkpoint``/``CheckpointLoader`` read runner checkpoints.

    Registers :func:`mmengine_safe_globals` as torch safe globals; ``weights_only``
    stays at torch's (safe) default. Idempotent.
    """
    import torch

    add = getattr(torch.serialization, "add_safe_globals", None)
    if add is None:  # torch < 2.4 defaults to weights_only=False: nothing to do
        return
    add(mmengine_safe_globals())
    # HistoryBuffer pickles its statistic methods as ``getattr(HistoryBuffer, "min")``:
    # allow that one pattern through a restricted ``getattr`` (never the builtin).
    add([(_history_buffer_getattr, "__builtin__.getattr"),
         (_history_buffer_getattr, "builtins.getattr")])


def _history_buffer_getattr(obj: Any, name: str) -> Any:
    """``getattr`` limited to MMEngine ``HistoryBuffer`` statistic methods (for unpickling)."""
    import pickle

    from mmengine.logging import HistoryBuffer

    if not (isinstance(obj, type) and issubclass(obj, HistoryBuffer)):
        raise pickle.UnpicklingError(
            f"checkpoint asks for getattr({obj!r}, {name!r}); only HistoryBuffer statistic "
            "methods are allowed under weights_only=True"
        )
    if not HistoryBuffer._statistics_methods:
        # MMEngine fills this registry in the first HistoryBuffer(); a fresh process
        # that unpickles a checkpoint (resume, test) may not have made one yet.
        HistoryBuffer()
    value = getattr(obj, name, None)
    if name not in HistoryBuffer._statistics_methods or value is not (
        HistoryBuffer._statistics_methods[name]
    ):
        raise pickle.UnpicklingError(
            f"checkpoint asks for HistoryBuffer.{name}, which is not a registered statistic method"
        )
    return value


_WEIGHTS_UNPICKLER = re.compile(r"WeightsUnpickler error:\s*(.*)")
_TORCH_ADVICE = ("weights_only", "documentation of torch.load", "Please file an issue")


def _refusal_reason(error: BaseException) -> str:
    """The refused object out of torch's weights-only error, without its advice.

    torch wraps the unpickler's reason in text recommending ``weights_only=False``
    (code execution for an untrusted file) or allow-listing the type; only the
    reason itself ("Unsupported global: GLOBAL posix.remove ...") is kept.
    """
    text = str(error)
    found = _WEIGHTS_UNPICKLER.search(text)
    lines = [found.group(1)] if found else []
    lines += [line.strip().removeprefix("Weights only load failed.") for line in text.splitlines()]
    for line in lines:
        reason = line.split(" Please use ", 1)[0].strip().rstrip(".")
        if reason and not any(marker in reason for marker in _TORCH_ADVICE):
            return reason
    return type(error).__name__


def load_weights_only(path: str | os.PathLike[str], map_location: Any = "cpu") -> Any:
    """``torch.load(path, weights_only=True)`` with the MMEngine allow-list applied first.

    Every checkpoint the project writes (our state dicts, MMEngine runner
    checkpoints with ``message_hub`` / ``HistoryBuffer``) loads; a file holding any
    other object is refused without running it. Errors are ``ValueError`` naming
    the file and the reason, and never recommend ``weights_only=False``: the tools
    read files they did not write (released weights, downloads), and that advice
    turns a refused file into arbitrary code execution.
    """
    import pickle

    import torch

    patch_mmengine_checkpoint_loading()
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path!r}")
    if os.path.getsize(path) == 0:
        # torch says only "EOFError" (an empty message) for this one.
        raise ValueError(f"cannot read {path!r} as a torch checkpoint: the file is empty "
                         "(0 bytes; was its writing interrupted?)")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # noqa: BLE001 - re-raised with the file named
        if isinstance(error, EOFError):
            raise ValueError(f"cannot read {path!r} as a torch checkpoint: the file ends "
                             "early (truncated)") from None
        reason = _refusal_reason(error)
        refused = isinstance(error, pickle.UnpicklingError) and (
            "Unsupported global" in reason or "getattr" in reason or "HistoryBuffer" in reason
        )
        # ``from None``: the chained torch error would repeat the unsafe advice.
        # Garbage bytes also raise UnpicklingError ("Unsupported operand"): that is
        # an unreadable file, not a refused object.
        if refused:
            raise ValueError(
                f"refusing to load {path!r}: it holds an object that is not allowed in a "
                f"weights-only checkpoint ({reason}); only tensors, plain containers and "
                "the types of MMEngine runner checkpoints are read, so the file is not "
                "unpickled. Save its state dict (tensors only) instead."
            ) from None
        raise ValueError(f"cannot read {path!r} as a torch checkpoint: {reason}") from None


# ---------------------------------------------------------------- pkg_resources fallback
def _installed_path(package: str) -> str:
    try:
        dist = importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        dist = None
    if dist is not None:
        top = dist.read_text("top_level.txt")
        module = top.split()[0] if top and top.split() else package.replace("-", "_")
        located = Path(str(dist.locate_file(module)))
        if located.exists():
            return str(located)
    spec = importlib.util.find_spec(package.replace("-", "_"))
    if spec is None:
        raise importlib.metadata.PackageNotFoundError(package)
    if spec.origin is None:
        raise RuntimeError(f"{package} is a namespace package (no installed path)")
    return os.path.dirname(spec.origin)


def _is_installed(package: str) -> bool:
    try:
        _installed_path(package)
    except (importlib.metadata.PackageNotFoundError, RuntimeError):
        return False
    return True


def _ensure_mmengine_package_utils() -> None:
    """Without ``pkg_resources`` (setuptools >= 81) give MMEngine importlib-based helpers."""
    if importlib.util.find_spec("pkg_resources") is not None:
        return
    for name in ("mmengine.utils.package_utils", "mmengine.utils", "mmengine.config.config",
                 "mmengine.hub.hub"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        if hasattr(module, "is_installed"):
            module.is_installed = _is_installed
        if hasattr(module, "get_installed_path"):
            module.get_installed_path = _installed_path
