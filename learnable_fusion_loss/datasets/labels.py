"""Readers for the label formats of paired fusion sets.

* YOLO txt (``class cx cy w h`` normalised, one box a line);
* Pascal-VOC xml (``<object><name>…<bndbox>…``) as in M3FD and LLVIP;
* class-index PNG masks (one 8/16-bit class id per pixel);
* class-name files (one name a line) and split/id lists (one id a line).

Boxes come back as ``float32 [N, 4]`` ``x1, y1, x2, y2`` in pixels of the image
they annotate and labels as ``int64 [N]``. Every problem raises
:class:`LabelError` (a ``ValueError``) that names the file, the line where there
is one, and what is wrong.
"""

from __future__ import annotations

import math
import os
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

__all__ = [
    "LabelError",
    "read_class_names",
    "read_id_list",
    "read_yolo_boxes",
    "read_voc_boxes",
    "read_mask",
]

# YOLO coordinates a hair outside [0, 1] are common rounding noise; beyond this
# tolerance the line is wrong, not noisy.
_YOLO_TOLERANCE = 0.01


class LabelError(ValueError):
    """A label file is missing, malformed or inconsistent with the dataset.

    Attributes:
        path: the offending file.
        reason: what is wrong (with the line number where relevant).
    """

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"bad label file {str(self.path)!r}: {reason}")


def read_class_names(path: str | os.PathLike[str]) -> list[str]:
    """Class names, one per non-empty line; the line index (blank lines skipped) is the id."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"class-name file not found: {str(path)!r}")
    names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    names = [n for n in names if n]
    if not names:
        raise LabelError(path, "no class names in file")
    if len(set(names)) != len(names):
        raise LabelError(path, f"duplicate class names in {names}")
    return names


def read_id_list(path: str | os.PathLike[str]) -> list[str]:
    """Sample ids from a split list, one a line.

    Blank lines and ``#`` comments are skipped; a line may hold a file name
    (``00001D.png``) or a path, its stem is the id. The first whitespace-separated
    token is used, so annotation-line files (``<id>.png x1,y1,x2,y2,c ...``) work too.
    Duplicate ids raise :class:`LabelError`.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"split list not found: {str(path)!r}")
    ids: list[str] = []
    seen: dict[str, int] = {}
    for lineno, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        token = line.split()[0].replace("\\", "/")
        stem = Path(token).stem if Path(token).suffix else Path(token).name
        if stem in seen:
            raise LabelError(path, f"line {lineno}: id {stem!r} repeats line {seen[stem]}")
        seen[stem] = lineno
        ids.append(stem)
    if not ids:
        raise LabelError(path, "split list holds no ids")
    return ids


def read_yolo_boxes(
    path: str | os.PathLike[str], image_size: tuple[int, int], num_classes: int
) -> tuple[Tensor, Tensor]:
    """Read a YOLO txt file into pixel boxes.

    Args:
        path: label file; an empty file (or only blank lines) is valid and means
            "no objects".
        image_size: ``(H, W)`` of the annotated image, to turn normalised
            coordinates into pixels.
        num_classes: valid class ids are ``0 .. num_classes - 1``.

    Returns:
        ``(boxes [N, 4] float32 xyxy pixels, labels [N] int64)``; coordinates a
        little outside the image (rounding noise, up to 1 % of the size) are
        clipped to it.

    Raises:
        FileNotFoundError: no such file (a missing label is not the same as an
            empty one).
        LabelError: malformed line (not 5 numbers, non-integer class,
            non-finite or far out-of-range coordinate, non-positive size) or class
            id out of range; the message gives the line number and content.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"label file not found: {str(path)!r}")
    height, width = image_size
    boxes: list[list[float]] = []
    labels: list[int] = []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise LabelError(path, f"not a UTF-8 text file ({err})") from None
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        tokens = line.split()
        if len(tokens) != 5:
            raise LabelError(
                path,
                f"line {lineno}: expected 5 values 'class cx cy w h', got {len(tokens)}: {line!r}",
            )
        try:
            cls_float = float(tokens[0])
            cx, cy, bw, bh = (float(t) for t in tokens[1:])
        except ValueError:
            raise LabelError(path, f"line {lineno}: non-numeric value in {line!r}") from None
        if not cls_float.is_integer():
            raise LabelError(path, f"line {lineno}: class id {tokens[0]!r} is not an integer")
        cls = int(cls_float)
        if not 0 <= cls < num_classes:
            raise LabelError(
                path,
                f"line {lineno}: class id {cls} out of range [0, {num_classes - 1}] "
                f"({num_classes} classes)",
            )
        values = (cx, cy, bw, bh)
        if not all(math.isfinite(v) for v in values):
            raise LabelError(path, f"line {lineno}: non-finite coordinate in {line!r}")
        if bw <= 0 or bh <= 0:
            raise LabelError(path, f"line {lineno}: box width/height must be > 0 in {line!r}")
        x1, y1, x2, y2 = cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2
        if min(x1, y1) < -_YOLO_TOLERANCE or max(x2, y2) > 1 + _YOLO_TOLERANCE:
            raise LabelError(
                path, f"line {lineno}: box {line!r} lies outside the normalised image [0, 1]"
            )
        x1, x2 = max(x1, 0.0) * width, min(x2, 1.0) * width
        y1, y2 = max(y1, 0.0) * height, min(y2, 1.0) * height
        if x2 <= x1 or y2 <= y1:  # wholly in the tolerance band beyond an edge
            raise LabelError(
                path, f"line {lineno}: box {line!r} lies outside the image edge: clipped to the "
                f"{width}x{height} image it has zero {'width' if x2 <= x1 else 'height'}")
        boxes.append([x1, y1, x2, y2])
        labels.append(cls)
    return _as_tensors(boxes, labels)


def read_voc_boxes(
    path: str | os.PathLike[str],
    class_names: Sequence[str],
    image_size: tuple[int, int] | None = None,
    skip_difficult: bool = False,
) -> tuple[Tensor, Tensor]:
    """Read a Pascal-VOC xml annotation (M3FD, LLVIP) into pixel boxes.

    Coordinates are taken as written (``xmin, ymin, xmax, ymax`` pixels); they
    are clipped to ``image_size`` when given. Class names are matched exactly,
    then case-insensitively.

    Args:
        path: xml file.
        class_names: the class list; the index is the label.
        image_size: ``(H, W)`` for clipping and for a size check against the
            xml's ``<size>`` (a mismatch raises).
        skip_difficult: drop objects with ``<difficult>1</difficult>``.

    Returns:
        ``(boxes [N, 4] float32 xyxy pixels, labels [N] int64)``; an annotation
        with no ``<object>`` is valid (no objects).

    Raises:
        FileNotFoundError: no such file.
        LabelError: not parseable XML, unknown class, missing or non-numeric
            coordinates, empty box, or ``<size>`` disagreeing with the image.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"annotation file not found: {str(path)!r}")
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as err:
        raise LabelError(path, f"not valid XML ({err})") from None
    lookup = {name: i for i, name in enumerate(class_names)}
    lookup_lower = {name.lower(): i for i, name in enumerate(class_names)}

    size = root.find("size")
    if size is not None and image_size is not None:
        try:
            xml_w = int(float(size.findtext("width", "0")))
            xml_h = int(float(size.findtext("height", "0")))
        except ValueError:
            xml_w = xml_h = 0
        if xml_w > 0 and xml_h > 0 and (xml_h, xml_w) != tuple(image_size):
            raise LabelError(
                path,
                f"<size> says {xml_w}x{xml_h} (WxH) but the image is "
                f"{image_size[1]}x{image_size[0]}",
            )

    boxes: list[list[float]] = []
    labels: list[int] = []
    for k, obj in enumerate(root.iter("object"), start=1):
        name = (obj.findtext("name") or "").strip()
        if name in lookup:
            cls = lookup[name]
        elif name.lower() in lookup_lower:
            cls = lookup_lower[name.lower()]
        else:
            raise LabelError(
                path, f"object {k}: unknown class {name!r}; known: {list(class_names)}"
            )
        if skip_difficult and (obj.findtext("difficult") or "0").strip() == "1":
            continue
        bnd = obj.find("bndbox")
        if bnd is None:
            raise LabelError(path, f"object {k} ({name}): no <bndbox>")
        try:
            x1, y1, x2, y2 = (
                float(bnd.findtext(tag, "")) for tag in ("xmin", "ymin", "xmax", "ymax")
            )
        except ValueError:
            raise LabelError(
                path, f"object {k} ({name}): missing or non-numeric bndbox coordinate"
            ) from None
        if image_size is not None:
            height, width = image_size
            x1, x2 = min(max(x1, 0.0), width), min(max(x2, 0.0), width)
            y1, y2 = min(max(y1, 0.0), height), min(max(y2, 0.0), height)
        if not (x2 > x1 and y2 > y1):
            raise LabelError(path, f"object {k} ({name}): empty box {x1, y1, x2, y2}")
        boxes.append([x1, y1, x2, y2])
        labels.append(cls)
    return _as_tensors(boxes, labels)


def read_mask(
    path: str | os.PathLike[str], num_classes: int, ignore_index: int | None = 255
) -> Tensor:
    """Read a class-index mask PNG (one class id per pixel), ``[H, W]`` int64.

    The stored value of each pixel is its class id (``L``, ``P`` (palette
    indices, not colours) or 16-bit modes). Values must be in
    ``[0, num_classes - 1]`` or equal ``ignore_index``.

    Raises:
        FileNotFoundError: no such file.
        LabelError: the file is a colour image (a visualisation, not a mask),
            cannot be decoded, or holds out-of-range class ids.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"mask file not found: {str(path)!r}")
    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            if mode in ("RGB", "RGBA"):
                arr = np.asarray(img)
                if not (
                    np.array_equal(arr[..., 0], arr[..., 1])
                    and np.array_equal(arr[..., 0], arr[..., 2])
                ):
                    raise LabelError(
                        path,
                        f"mask is a colour ({mode}) image, expected a class-index mask "
                        "(the set's class-index mask folder, not its colour visualisations)",
                    )
                arr = arr[..., 0]
            elif mode in ("L", "P", "I", "I;16", "I;16L", "I;16B", "1"):
                arr = np.asarray(img)
            else:
                raise LabelError(path, f"unsupported mask mode {mode!r}")
    except LabelError:
        raise
    except UnidentifiedImageError:
        raise LabelError(path, "not a recognised image format") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise LabelError(path, f"mask decoding failed ({err})") from None
    mask = torch.from_numpy(arr.astype(np.int64))
    valid = (mask >= 0) & (mask < num_classes)
    if ignore_index is not None:
        valid |= mask == ignore_index
    if not bool(valid.all()):
        bad = sorted({int(v) for v in mask[~valid].unique().tolist()})[:10]
        raise LabelError(
            path,
            f"class ids {bad} out of range [0, {num_classes - 1}]"
            + (f" (ignore_index {ignore_index})" if ignore_index is not None else ""),
        )
    return mask


def _as_tensors(boxes: list[list[float]], labels: list[int]) -> tuple[Tensor, Tensor]:
    box_t = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    label_t = torch.tensor(labels, dtype=torch.int64).reshape(-1)
    return box_t, label_t
