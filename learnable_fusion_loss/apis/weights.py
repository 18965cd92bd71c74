"""Loading a fusion network's weights from a file, for any network F.

:func:`load_fusion_weights` reads the file weights-only
(:func:`learnable_fusion_loss.compat.load_weights_only`), takes its state dict (a plain
one, or the ``'state_dict'`` of an MMEngine checkpoint) and loads it strictly into
the given network, finding the network under a prefix such as ``'fusion_net.'``;
anything that does not fit raises ``ValueError`` naming the file and the keys.

A network whose files need more than that (another layout to convert, or a
configuration to read off the weights so that no config is needed) registers a
*weight reader* with :func:`register_weight_reader`: ``reader(state, model, path)``
gets the state dict, the network to load (or ``None``) and the file name, and returns
the loaded network, or ``None`` when the file or the network is not its own. The
readers are asked in the order they were registered, before the strict load.

>>> import os, tempfile, torch
>>> net = torch.nn.Conv2d(1, 1, 3)
>>> path = os.path.join(tempfile.mkdtemp(), "run.pth")
>>> torch.save({"state_dict": {f"fusion_net.{k}": v for k, v in net.state_dict().items()}}, path)
>>> loaded = load_fusion_weights(path, torch.nn.Conv2d(1, 1, 3))
>>> torch.equal(loaded.weight, net.weight)
True
>>> load_fusion_weights(path, torch.nn.Conv2d(1, 2, 3))  # doctest: +ELLIPSIS
Traceback (most recent call last):
    ...
ValueError: checkpoint '...run.pth' (prefix 'fusion_net.') does not match Conv2d: wrong shapes: ...
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from ..compat import load_weights_only

__all__ = [
    "PREFERRED_PREFIXES",
    "WeightReader",
    "check_state_dict",
    "find_prefix",
    "list_keys",
    "load_fusion_weights",
    "read_state_dict",
    "register_weight_reader",
    "weight_readers",
]

#: ``reader(state, model, path) -> loaded network, or None (not this reader's)``.
WeightReader = Callable[[Mapping[str, Any], "nn.Module | None", str], "nn.Module | None"]

#: The prefix taken when a checkpoint holds the network under several.
PREFERRED_PREFIXES = ("", "fusion_net.", "module.", "model.")
_MAX_LISTED = 20
_READERS: dict[str, WeightReader] = {}


def list_keys(keys: Iterable[object], limit: int = _MAX_LISTED) -> str:
    """The first ``limit`` keys, quoted, and how many more.

    >>> list_keys(["a", "b", "c"], limit=2)
    "'a', 'b' (and 1 more)"
    """
    keys = list(keys)
    shown = ", ".join(repr(k) for k in keys[:limit])
    more = len(keys) - limit
    return shown + (f" (and {more} more)" if more > 0 else "")


def register_weight_reader(name: str, reader: WeightReader | None = None) -> Any:
    """Register ``reader`` under ``name`` (a decorator without ``reader``); re-registering replaces."""

    def add(function: WeightReader) -> WeightReader:
        _READERS[name] = function
        return function

    return add if reader is None else add(reader)


def weight_readers() -> dict[str, WeightReader]:
    """The registered readers, in the order they are asked."""
    return dict(_READERS)


def read_state_dict(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> Mapping[str, Any]:
    """The state dict of a file: the file itself, or its ``'state_dict'`` (weights-only)."""
    path = os.fspath(path)
    obj = load_weights_only(path, map_location=map_location)
    state = obj.get("state_dict", obj) if isinstance(obj, Mapping) else None
    if not isinstance(state, Mapping):
        raise ValueError(f"{path!r} holds a {type(obj).__name__}, not a state dict")
    return state


def find_prefix(
    state: Mapping[str, Any],
    anchor: str,
    path: str,
    prefix: str | None = None,
    label: str = "fusion network",
) -> str:
    """The prefix under which ``state`` holds the network whose key ``anchor`` is.

    ``prefix`` given: it must be one of them. Several found: the first of
    :data:`PREFERRED_PREFIXES` among them. ``label`` names the network in the errors.

    >>> find_prefix({"fusion_net.w": 0, "loss.generator.w": 0}, "w", "run.pth")
    'fusion_net.'
    """
    prefixes = sorted({k[: -len(anchor)] for k in state if isinstance(k, str) and k.endswith(anchor)})
    if prefix is not None:
        if prefix not in prefixes:
            raise ValueError(f"{path!r} has no {anchor!r} under prefix {prefix!r} (found {prefixes})")
        return prefix
    if not prefixes:
        raise ValueError(
            f"no {label} weights in {path!r}: expected a key {anchor!r} (optionally under a "
            f"prefix such as 'fusion_net.'); found keys {list_keys(map(str, state))}"
        )
    if len(prefixes) > 1:
        preferred = [p for p in PREFERRED_PREFIXES if p in prefixes]
        if not preferred:
            raise ValueError(f"{path!r} holds several {label} networks (prefixes {prefixes}); pass prefix=")
        return preferred[0]
    return prefixes[0]


def check_state_dict(state: Mapping[str, Any], model: nn.Module, what: str) -> None:
    """``ValueError`` naming ``what`` and the keys unless ``state`` loads strictly into ``model``."""
    expected = model.state_dict()
    missing = [k for k in expected if not isinstance(state.get(k), Tensor)]
    extra = [k for k in state if k not in expected]
    wrong = [
        f"{k}: expected {tuple(expected[k].shape)}, got {tuple(state[k].shape)}"
        for k in expected
        if isinstance(state.get(k), Tensor) and state[k].shape != expected[k].shape
    ]
    problems = [
        f"{label} {list_keys(keys)}"
        for label, keys in (("missing keys", missing), ("unexpected keys", extra), ("wrong shapes:", wrong))
        if keys
    ]
    if problems:
        raise ValueError(f"{what} does not match {type(model).__name__}: " + "; ".join(problems))


def load_fusion_weights(
    path: str | os.PathLike[str],
    model: nn.Module | None = None,
    map_location: str | torch.device = "cpu",
    prefix: str | None = None,
) -> nn.Module:
    """Load the weights in ``path`` into ``model`` (strictly) and return it.

    The registered readers are asked first (with ``prefix`` given, none is: the
    strict load takes it); a reader can also build the network (``model=None``).
    Otherwise ``model`` must be given: the network is found under a prefix (see
    :func:`find_prefix`, anchored on its first key) and must match key for key.
    """
    path = os.fspath(path)
    state = read_state_dict(path, map_location=map_location)
    if prefix is None:
        for reader in list(_READERS.values()):
            loaded = reader(state, model, path)
            if loaded is not None:
                return loaded
    if model is None:
        raise ValueError(
            f"cannot build a fusion network from {path!r} alone: no weight reader recognises it "
            f"(registered: {sorted(_READERS) or 'none'}); give the config that builds the network "
            "(its custom_imports name the package that defines it), or import that package first"
        )
    expected = list(model.state_dict())
    if not expected:
        return model
    chosen = find_prefix(state, expected[0], path, prefix, label=type(model).__name__)
    sub = {k[len(chosen):]: v for k, v in state.items() if isinstance(k, str) and k.startswith(chosen)}
    what = f"checkpoint {path!r}" + (f" (prefix {chosen!r})" if chosen else "")
    check_state_dict(sub, model, what)
    model.load_state_dict(sub, strict=True)
    return model
