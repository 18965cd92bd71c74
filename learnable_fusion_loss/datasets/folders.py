"""Image folders: listing by stem, pairing two modality folders, checking output folders.

* :func:`list_images` maps the stems of a folder's images to their files;
* :func:`find_pairs` matches two modality folders by file stem and reports, one
  readable line each, images without a partner, ambiguous stems and broken links;
* :func:`output_folder_problem` / :func:`prepare_output_folder` check, before any
  work, that a tool can write its results into a folder (and not among its inputs).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

__all__ = [
    "IMAGE_EXTENSIONS",
    "list_images",
    "find_pairs",
    "output_folder_problem",
    "prepare_output_folder",
]

#: File extensions (lower case, with dot) treated as images by :func:`find_pairs`.
IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".png",
    ".jpg",
    ".jpeg",
    ".bmp",
    ".tif",
    ".tiff",
    ".webp",
    ".pgm",
    ".ppm",
    ".pnm",
)


def _same_folder(x: Path, y: Path) -> bool:
    try:
        return x.exists() and y.exists() and os.path.samefile(x, y)
    except OSError:
        return x.resolve() == y.resolve()


def output_folder_problem(
    out: str | os.PathLike[str], inputs: Sequence[tuple[str, str | os.PathLike[str]]],
    flag: str = "--out",
) -> str | None:
    """Why ``out`` cannot take a tool's output files, checked before any work; None if it can.

    ``inputs`` are ``(flag, folder)`` of the tool's source folders: ``out`` must be
    none of them (same path or same folder through a link), so a tool never writes
    among, or over, its inputs. ``out`` must also not be an existing non-folder.
    """
    out = Path(out)
    for name, folder in inputs:
        folder = Path(folder)
        if _same_folder(out, folder) or out.resolve() == folder.resolve():
            return (f"{flag} {str(out)!r} is the input folder {str(folder)!r} ({name}); "
                    "choose another folder (inputs are never written)")
    if out.exists() and not out.is_dir():
        return f"{flag} {str(out)!r} exists and is not a folder"
    return None


def prepare_output_folder(out: str | os.PathLike[str], flag: str = "--out") -> str | None:
    """Create ``out`` (with parents) and prove a file can be written in it; None if so.

    Returns the reason otherwise (a read-only file system, no permission, a parent
    that is a file, ...), so a tool can stop with a usage error before computing
    anything instead of failing with a traceback when it saves its first result.
    """
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        return f"{flag} {str(out)!r} exists and is not a folder"
    except OSError as error:
        return f"cannot create {flag} folder {str(out)!r}: {error.strerror or error}"
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-test.", suffix=".tmp", dir=out)
        os.close(fd)
        os.unlink(probe)
    except OSError as error:
        return f"{flag} folder {str(out)!r} is not writable: {error.strerror or error}"
    return None


def _scan_folder(
    folder: str | os.PathLike[str], extensions: Iterable[str]
) -> tuple[dict[str, Path], dict[str, list[Path]], dict[str, Path]]:
    """Stem -> path for unique stems, stem -> paths for stems with several files, and
    stem -> path for symbolic links whose target does not exist (dangling)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder not found: {str(folder)!r}")
    exts = {e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions}
    seen: dict[str, list[Path]] = {}
    dangling: dict[str, Path] = {}
    for entry in sorted(folder.iterdir()):
        if entry.suffix.lower() not in exts or entry.name.startswith("."):
            continue
        if entry.is_file():
            seen.setdefault(entry.stem, []).append(entry)
        elif entry.is_symlink() and not entry.exists():
            # is_file() is False for a dangling link: without this the image would
            # vanish silently and its partner be blamed as "missing partner".
            dangling[entry.stem] = entry
    unique = {stem: paths[0] for stem, paths in seen.items() if len(paths) == 1}
    ambiguous = {stem: paths for stem, paths in seen.items() if len(paths) > 1}
    dangling = {stem: path for stem, path in dangling.items() if stem not in seen}
    return unique, ambiguous, dangling


def _ambiguity_problems(
    folder: str | os.PathLike[str], ambiguous: dict[str, list[Path]]
) -> list[str]:
    return [
        f"{str(Path(folder))!r}: stem {stem!r} is ambiguous ({', '.join(p.name for p in paths)})"
        for stem, paths in ambiguous.items()
    ]


def _dangling_problems(dangling: dict[str, Path]) -> list[str]:
    return [
        f"broken symbolic link: {str(path)!r} points to {os.readlink(path)!r}, which does not exist"
        for path in dangling.values()
    ]


def list_images(
    folder: str | os.PathLike[str], extensions: Iterable[str] = IMAGE_EXTENSIONS
) -> tuple[dict[str, Path], list[str]]:
    """Map stem -> image path for the image files directly inside ``folder``.

    Returns ``(by_stem, problems)``; a stem present with two extensions (e.g.
    ``a.png`` and ``a.jpg``) is a problem and is left out of ``by_stem``, and so is
    a symbolic link whose target does not exist. Hidden files (leading dot) are
    ignored.

    Raises:
        FileNotFoundError: ``folder`` is not a directory.
    """
    unique, ambiguous, dangling = _scan_folder(folder, extensions)
    return unique, _ambiguity_problems(folder, ambiguous) + _dangling_problems(dangling)


def find_pairs(
    dir_a: str | os.PathLike[str],
    dir_b: str | os.PathLike[str],
    extensions: Sequence[str] = IMAGE_EXTENSIONS,
) -> tuple[list[tuple[str, Path, Path]], list[str]]:
    """Match the images of two modality folders by file stem (any image extension).

    Args:
        dir_a: folder of modality A (e.g. ``.../ir``).
        dir_b: folder of modality B (e.g. ``.../vi``).
        extensions: accepted file extensions.

    Returns:
        ``(pairs, problems)``: ``pairs`` is a list of ``(stem, path_a, path_b)``
        sorted by stem; ``problems`` lists, one readable line each, every image
        without a partner (naming the file and the folder it is missing from),
        every ambiguous stem and every broken symbolic link (whose partner is then
        not called "missing partner"). Callers decide whether problems are fatal.

    Raises:
        FileNotFoundError: either folder does not exist.
    """
    a_map, a_ambiguous, a_dangling = _scan_folder(dir_a, extensions)
    b_map, b_ambiguous, b_dangling = _scan_folder(dir_b, extensions)
    problems = _ambiguity_problems(dir_a, a_ambiguous) + _ambiguity_problems(dir_b, b_ambiguous)
    problems += _dangling_problems(a_dangling) + _dangling_problems(b_dangling)
    # Ambiguous stems and broken links are already reported; don't also call their
    # partner "missing".
    ambiguous = set(a_ambiguous) | set(b_ambiguous) | set(a_dangling) | set(b_dangling)
    pairs: list[tuple[str, Path, Path]] = []
    for stem in sorted(set(a_map) | set(b_map)):
        if stem in ambiguous:
            continue
        if stem in a_map and stem in b_map:
            pairs.append((stem, a_map[stem], b_map[stem]))
        elif stem in a_map:
            problems.append(
                f"missing partner: {str(a_map[stem])!r} has no image with stem {stem!r} "
                f"in {str(Path(dir_b))!r}"
            )
        else:
            problems.append(
                f"missing partner: {str(b_map[stem])!r} has no image with stem {stem!r} "
                f"in {str(Path(dir_a))!r}"
            )
    return pairs, problems
