"""Image I/O for paired-modality fusion data.

Everything here works on float tensors in ``[0, 1]``:

* :func:`load_image` reads one file into ``[C, H, W]`` float32, ``C == 1`` for
  greyscale content (including RGB files whose three channels are equal, the way
  TNO and the medical MRI/CT sets are stored) and ``C == 3`` for colour.
* :func:`rgb_to_ycrcb` / :func:`ycrcb_to_rgb` convert ``[B, 3, H, W]`` batches
  with the full-range BT.601 constants of OpenCV's ``COLOR_BGR2YCrCb`` (channel
  order ``Y, Cr, Cb``), which is what most fusion code uses to fuse
  the luminance of a colour visible image.
* :func:`save_image` writes an 8-bit PNG atomically.

Listing and pairing image folders lives in :mod:`.folders` (its names are also
importable from here).

Unreadable files raise :class:`ImageReadError` (a ``ValueError``) whose message
names the file and says what is wrong.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import kornia.color
import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from .._image import LUMA_WEIGHTS
from .folders import (  # noqa: F401  (importable from here too, as before the split)
    IMAGE_EXTENSIONS,
    find_pairs,
    list_images,
    output_folder_problem,
    prepare_output_folder,
)

__all__ = [
    "ImageReadError",
    "load_image",
    "image_header_size",
    "save_image",
    "rgb_to_ycrcb",
    "ycrcb_to_rgb",
    "rgb_to_luma",
    "new_file_mode",
]

class ImageReadError(ValueError):
    """A file exists but cannot be decoded as an image (corrupt, truncated, unsupported).

    Attributes:
        path: the offending file.
        reason: what is wrong with it.
    """

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"cannot read image {str(self.path)!r}: {reason}")


def _pil_to_array(img: Image.Image, path: Path) -> np.ndarray:
    """Decode a loaded PIL image into float32 ``[H, W, C]`` in [0, 1] (C in {1, 3})."""
    mode = img.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        return (np.asarray(img).astype(np.float32) / 65535.0)[..., None]
    if mode == "I":
        # 32-bit integer container; PNG/TIFF 16-bit greyscale often decode to it.
        arr = np.asarray(img).astype(np.int64)
        if arr.size and (arr.min() < 0 or arr.max() > 65535):
            raise ImageReadError(
                path,
                f"32-bit integer image with values in [{arr.min()}, {arr.max()}] "
                "cannot be mapped to [0, 1] (only 8/16-bit unsigned images are supported)",
            )
        return (arr.astype(np.float32) / 65535.0)[..., None]
    if mode == "F":
        arr = np.asarray(img).astype(np.float32)
        if not np.isfinite(arr).all() or (arr.size and (arr.min() < 0.0 or arr.max() > 1.0)):
            raise ImageReadError(
                path,
                "floating-point image must hold finite values in [0, 1]; "
                "normalise raw radiometric data before loading",
            )
        return arr[..., None]
    if mode == "1":
        img = img.convert("L")
    elif mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif mode == "PA":
        img = img.convert("RGBA")
    elif mode in ("LA", "La"):
        img = img.getchannel("L")
    elif mode not in ("L", "RGB", "RGBA", "RGBa", "RGBX"):
        img = img.convert("RGB")  # CMYK, YCbCr, LAB, HSV: decode to display RGB
    arr = np.asarray(img)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.shape[-1] == 4:
        arr = arr[..., :3]  # alpha is dropped, not composited
    if arr.dtype != np.uint8:
        raise ImageReadError(path, f"unsupported pixel type {arr.dtype} (PIL mode {img.mode})")
    return arr.astype(np.float32) / 255.0


def _read_16bit_colour_png(path: Path) -> np.ndarray | None:
    """PIL reduces 48/64-bit PNGs to 8 bits; read them with OpenCV at full depth."""
    import cv2  # local: only this rare path needs it

    data = np.fromfile(str(path), dtype=np.uint8)
    arr = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if arr is None or arr.dtype != np.uint16 or arr.ndim != 3:
        return None
    arr = arr[..., :3][..., ::-1]  # BGR(A) -> RGB, alpha dropped
    return np.ascontiguousarray(arr).astype(np.float32) / 65535.0


def load_image(path: str | os.PathLike[str], channels: int | None = None) -> Tensor:
    """Read an image file into a float32 tensor ``[C, H, W]`` in ``[0, 1]``.

    Channel rule (``channels=None``): greyscale files give ``C == 1``; RGB files
    whose three channels are exactly equal (TNO, MRI/CT are stored like that)
    also give ``C == 1``; other colour files give ``C == 3``.

    Bit depth: 8-bit data is divided by 255, 16-bit data (greyscale or colour
    PNG/TIFF) by 65535, so a 16-bit thermal image keeps its full range.

    Modes: palette (``P``/``PA``) images are expanded to their colours; ``LA`` and
    ``RGBA`` lose their alpha channel (it is dropped, not composited over a
    background); ``CMYK``/``YCbCr``/``LAB``/``HSV`` are converted to RGB. EXIF
    orientation is *not* applied, so two images of a pair stay aligned.

    Args:
        path: image file.
        channels: ``None`` for the rule above, ``1`` to force greyscale (colour is
            reduced to BT.601 luma Y, the same Y as :func:`rgb_to_ycrcb`), ``3`` to
            force RGB (greyscale is repeated).

    Returns:
        ``[C, H, W]`` float32 tensor in ``[0, 1]``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ImageReadError: the file cannot be decoded (corrupt, truncated,
            not an image, unsupported pixel type, over PIL's decompression-bomb
            limit of ~179 Mpx, or too large for the memory left).
        ValueError: ``channels`` is not ``None``, ``1`` or ``3``.
    """
    if channels not in (None, 1, 3):
        raise ValueError(f"channels must be None, 1 or 3, got {channels!r}")
    path = Path(path)
    if not path.is_file():
        if path.is_symlink():
            raise FileNotFoundError(f"image file {str(path)!r} is a broken symbolic link "
                                    f"(to {os.readlink(path)!r}, which does not exist)")
        raise FileNotFoundError(f"image file not found: {str(path)!r}")
    try:
        with Image.open(path) as img:
            # The raw mode is only visible before decoding (load() clears ``tile``).
            colour_16bit = img.format == "PNG" and any(
                len(t) > 3 and t[3] in ("RGB;16B", "RGBA;16B") for t in (img.tile or [])
            )
            img.load()  # force full decode inside the try: truncation shows up here
            arr: np.ndarray | None = _read_16bit_colour_png(path) if colour_16bit else None
            if arr is None:
                arr = _pil_to_array(img, path)
    except ImageReadError:
        raise
    except Image.DecompressionBombError as err:
        # PIL refuses images over 2 * MAX_IMAGE_PIXELS (~179 Mpx) before decoding them;
        # that is a property of this file, so it is reported like any other bad file.
        raise ImageReadError(path, f"too large to decode safely ({err})") from None
    except MemoryError:
        raise ImageReadError(path, "not enough memory to decode it") from None
    except UnidentifiedImageError:
        raise ImageReadError(
            path, "not a recognised image format (corrupt or not an image)"
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError) as err:  # PIL's decode errors
        raise ImageReadError(path, f"decoding failed ({err})") from None
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ImageReadError(path, f"image has zero size {arr.shape[1]}x{arr.shape[0]}")

    if arr.shape[-1] == 3 and channels != 3:
        if np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 0], arr[..., 2]):
            arr = arr[..., :1]
        elif channels == 1:
            w = np.asarray(LUMA_WEIGHTS, dtype=np.float32)
            arr = np.clip((arr * w).sum(axis=-1, keepdims=True), 0.0, 1.0)
    if arr.shape[-1] == 1 and channels == 3:
        arr = np.repeat(arr, 3, axis=-1)
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1))).float()


def image_header_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """(H, W) from the file header, without decoding pixels."""
    path = Path(path)
    try:
        with Image.open(path) as img:
            w, h = img.size
    except FileNotFoundError:
        raise
    except UnidentifiedImageError:
        raise ImageReadError(
            path, "not a recognised image format (corrupt or not an image)"
        ) from None
    except Image.DecompressionBombError as err:  # over ~179 Mpx: refused by PIL at open
        raise ImageReadError(path, f"too large to decode safely ({err})") from None
    except (OSError, SyntaxError, ValueError, EOFError) as err:  # PIL's header errors
        raise ImageReadError(path, f"cannot read image header ({err})") from None
    return h, w


def _check_rgb_batch(name: str, x: Tensor) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor [B, 3, H, W], got {type(x).__name__}")
    if x.ndim < 3 or x.shape[-3] != 3:
        raise ValueError(
            f"{name} must have shape [B, 3, H, W] (or [3, H, W]), got {tuple(x.shape)}"
        )
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating tensor in [0, 1], got dtype {x.dtype}")


def rgb_to_ycrcb(x: Tensor) -> Tensor:
    """RGB ``[B, 3, H, W]`` in [0, 1] -> ``Y, Cr, Cb`` in [0, 1] (OpenCV convention).

    ``Y = 0.299 R + 0.587 G + 0.114 B``, ``Cr = 0.713 (R - Y) + 0.5``,
    ``Cb = 0.564 (B - Y) + 0.5``: the full-range BT.601 transform of
    ``cv2.cvtColor(img, cv2.COLOR_BGR2YCrCb)`` on float images (kornia's
    ``rgb_to_ycbcr`` uses the same constants with ``Y, Cb, Cr`` order; this
    reorders). Also accepts ``[..., 3, H, W]``.
    """
    _check_rgb_batch("x", x)
    ycbcr = kornia.color.rgb_to_ycbcr(x)
    return ycbcr[..., [0, 2, 1], :, :]


def ycrcb_to_rgb(x: Tensor) -> Tensor:
    """Inverse of :func:`rgb_to_ycrcb`: ``Y, Cr, Cb`` ``[B, 3, H, W]`` -> RGB clamped to [0, 1].

    Typical use: put the fused luminance back with the visible image's chroma,
    ``ycrcb_to_rgb(torch.cat([fused_y, batch['source_b_crcb']], dim=1))``.
    """
    _check_rgb_batch("x", x)
    rgb = kornia.color.ycbcr_to_rgb(x[..., [0, 2, 1], :, :])
    return rgb.clamp(0.0, 1.0)


def rgb_to_luma(x: Tensor) -> Tensor:
    """BT.601 luma ``Y`` of RGB ``[..., 3, H, W]`` as ``[..., 1, H, W]`` (the Y of rgb_to_ycrcb)."""
    _check_rgb_batch("x", x)
    return kornia.color.rgb_to_y(x)


def new_file_mode() -> int:
    """The permission bits ``open()`` gives a new file under the current umask.

    :func:`tempfile.mkstemp` creates its file with mode 0600; a file written through
    it and renamed into place must be widened to this, or outputs end up private.
    """
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def save_image(path: str | os.PathLike[str], x: Tensor, overwrite: bool = False) -> Path:
    """Write ``x`` (``[C, H, W]``, C in {1, 3}, values in [0, 1]) as an 8-bit PNG.

    Values are clamped to [0, 1] and rounded to the nearest of 256 levels. The
    file is written to a temporary file in the same folder and moved into place
    with :func:`os.replace`, so readers never see a half-written PNG. Missing
    parent folders are created. The file gets the mode of a plain ``open()``
    (0666 less the umask), not mkstemp's 0600.

    Args:
        path: target file; must end in ``.png``.
        x: image tensor (a leading batch dim of size 1 is accepted).
        overwrite: allow replacing an existing file. Off by default so that a
            fusion run never writes over its own inputs by accident.

    Returns:
        The written path.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False.
        ValueError: bad suffix, shape, or non-finite values.
    """
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"save_image writes PNG only; path must end in .png, got {str(path)!r}")
    if not isinstance(x, Tensor):
        raise TypeError(f"x must be a torch.Tensor [C, H, W], got {type(x).__name__}")
    if x.ndim == 4 and x.shape[0] == 1:
        x = x[0]
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3 or x.shape[0] not in (1, 3):
        raise ValueError(f"x must have shape [C, H, W] with C in (1, 3), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"x must be a floating tensor in [0, 1], got dtype {x.dtype}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"x contains NaN or Inf values; refusing to write {str(path)!r}")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{str(path)!r} exists; pass overwrite=True to replace it")

    arr = (x.detach().float().clamp(0.0, 1.0) * 255.0).round().to(torch.uint8).cpu().numpy()
    img = Image.fromarray(
        arr[0] if arr.shape[0] == 1 else np.ascontiguousarray(arr.transpose(1, 2, 0))
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".png.tmp", dir=path.parent)
    try:
        os.fchmod(fd, new_file_mode())
        with os.fdopen(fd, "wb") as handle:
            img.save(handle, format="PNG")
        os.replace(tmp_name, path)
    except BaseException:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
        raise
    return path
