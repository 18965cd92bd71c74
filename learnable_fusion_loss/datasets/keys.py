"""The keys of a paired sample's images: neutral names (the modalities are metadata).

A sample's two sources are ``source_a`` and ``source_b`` whatever they show; which
modalities they are is the sample's ``source_names`` (e.g. ``('ir', 'vi')``, from the
dataset's modality arguments), for display only.

The keys were named after infrared/visible before (``ir``, ``vi``, ...);
:data:`RENAMED_KEYS` maps those old names to the new ones, and :func:`check_renamed`
refuses an old name with a message naming its new one (no silent aliases).

>>> RENAMED_KEYS['ir']
'source_a'
>>> check_renamed({'ir': 0, 'vi': 1}, 'sample')
Traceback (most recent call last):
...
KeyError: "sample key 'ir' was renamed 'source_a' (and 'vi' -> 'source_b')"
>>> check_renamed({'source_a': 0, 'source_b': 1}, 'sample')
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "SOURCE_A",
    "SOURCE_B",
    "SOURCE_B_CRCB",
    "SOURCE_A_TASK",
    "SOURCE_B_TASK",
    "SOURCE_NAMES",
    "RENAMED_KEYS",
    "renamed_message",
    "check_renamed",
]

#: source A, ``[1, H, W]`` (infrared; MRI for the medical sets)
SOURCE_A = "source_a"
#: source B, ``[1, H, W]`` (the visible image's luma; CT, PET, SPECT)
SOURCE_B = "source_b"
#: ``[2, H, W]`` Cr, Cb of a colour source B (re-colours the fused luma)
SOURCE_B_CRCB = "source_b_crcb"
#: the task view of source A (after :class:`~.transforms.TaskView`)
SOURCE_A_TASK = "source_a_task"
#: the task view of source B
SOURCE_B_TASK = "source_b_task"
#: the two sources' modality names, e.g. ``('ir', 'vi')`` (display metadata)
SOURCE_NAMES = "source_names"

#: Old (modality-named) sample key -> its name now. The one place of this map.
RENAMED_KEYS: dict[str, str] = {
    "ir": SOURCE_A,
    "vi": SOURCE_B,
    "vi_crcb": SOURCE_B_CRCB,
    "ir_task": SOURCE_A_TASK,
    "vi_task": SOURCE_B_TASK,
}


def renamed_message(old: Iterable[str], what: str = "sample") -> str:
    """``"<what> key 'ir' was renamed 'source_a' (and 'vi' -> 'source_b')"`` for the old keys."""
    old = [k for k in old if k in RENAMED_KEYS]
    first, rest = old[0], old[1:]
    text = f"{what} key {first!r} was renamed {RENAMED_KEYS[first]!r}"
    if rest:
        text += " (and " + ", ".join(f"{k!r} -> {RENAMED_KEYS[k]!r}" for k in rest) + ")"
    return text


def check_renamed(keys: Iterable[str], what: str = "sample") -> None:
    """Raise ``KeyError`` if ``keys`` holds an old key whose new name is absent."""
    keys = list(keys)
    old = [k for k in keys if k in RENAMED_KEYS and RENAMED_KEYS[k] not in keys]
    if old:
        raise KeyError(renamed_message(old, what))
