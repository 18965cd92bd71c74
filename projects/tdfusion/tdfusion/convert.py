"""Load weights of the public TDFusion release (and our own checkpoints) into our networks.

Public format (``nets/ReFusion.py`` ``state_dict()``, also the released
``TDFusion_*.pth`` files): every meta-convolution appears twice, ``X.weight`` and
``X.conv.weight`` (the same tensor; likewise ``.bias``); layer norms are
``...normN.body.weight/bias``; temperatures are ``[heads, 1, 1]``; the LPN's
PReLU slope ``out2.weight`` is ``[1]``.

Ours: the aliases dropped, ``normN.body.* → normN.*``, temperatures ``[heads]``.
Everything else (names, shapes) is identical. The mapping is derived from the
target module itself (:func:`official_layout`), so it covers any ``dim``,
``num_blocks``, ``heads`` and ``bias`` setting.

Importing this module registers :func:`read_refusion_weights` with
:func:`learnable_fusion_loss.apis.weights.register_weight_reader`, so that
:func:`learnable_fusion_loss.apis.load_fusion_network` (and ``tools/fuse.py``) load
a ReFusion file, in either format, without a config.

>>> from learnable_fusion_loss.apis.weights import weight_readers
>>> weight_readers()["refusion"] is read_refusion_weights
True
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Literal

import torch
from torch import Tensor, nn

from learnable_fusion_loss.apis.weights import (
    check_state_dict,
    find_prefix,
    read_state_dict,
    register_weight_reader,
)
from learnable_fusion_loss.apis.weights import list_keys as _listing

from .lpn import TDFusionLPN
from .refusion import ReFusionNet

__all__ = [
    "convert_official_state_dict",
    "infer_official_config",
    "load_fusion_checkpoint",
    "load_official_state_dict",
    "official_layout",
    "read_refusion_weights",
]

Kind = Literal["refusion", "lpn"]
_STEM = {"refusion": "project_in_1", "lpn": "patch_embed1"}
_ENCODER_BLOCK = "encoder1.{}.attn.temperature"


def _kind_of(model: nn.Module) -> Kind:
    if isinstance(model, ReFusionNet):
        return "refusion"
    if isinstance(model, TDFusionLPN):
        return "lpn"
    raise TypeError(f"model must be a ReFusionNet or TDFusionLPN, got {type(model).__name__}")


def _official_names(our_name: str, module: nn.Module) -> list[str]:
    """Public key(s) of one of our keys: ``[main]`` or ``[main, alias]`` for convolutions."""
    prefix, _, leaf = our_name.rpartition(".")
    if isinstance(module, nn.Conv2d):
        return [our_name, f"{prefix}.conv.{leaf}"]
    if prefix.rsplit(".", 1)[-1] in ("norm1", "norm2"):
        return [f"{prefix}.body.{leaf}"]
    return [our_name]


def official_layout(model: nn.Module) -> dict[str, tuple[str, torch.Size, torch.Size]]:
    """Public key → (our key, public shape, our shape), in the public ``state_dict`` order."""
    modules = dict(model.named_modules())
    layout: dict[str, tuple[str, torch.Size, torch.Size]] = {}
    for name, tensor in model.state_dict().items():
        owner = modules[name.rpartition(".")[0]]
        ours = tensor.shape
        public = torch.Size([ours[0], 1, 1]) if "temperature" in name.rpartition(".")[2] else ours
        for official in _official_names(name, owner):
            layout[official] = (name, public, ours)
    return layout


def _map_official(
    sd: Mapping[str, Tensor], model: nn.Module, what: str = "official state dict"
) -> dict[str, Tensor]:
    """Check ``sd`` against the public layout of ``model`` and return our state dict."""
    layout = official_layout(model)
    non_tensors = [k for k, v in sd.items() if not isinstance(v, Tensor)]
    missing = [k for k in layout if k not in sd]
    extra = [k for k in sd if k not in layout]
    wrong = [
        f"{k}: expected {tuple(layout[k][1])}, got {tuple(sd[k].shape)}"
        for k in layout
        if k in sd and isinstance(sd[k], Tensor) and sd[k].shape != layout[k][1]
    ]
    problems = []
    if non_tensors:
        problems.append(f"non-tensor values at {_listing(non_tensors)}")
    if missing:
        problems.append(f"missing keys {_listing(missing)}")
    if extra:
        problems.append(f"unexpected keys {_listing(extra)}")
    if wrong:
        problems.append(f"wrong shapes: {_listing(wrong)}")
    if problems:
        raise ValueError(
            f"{what} does not match {type(model).__name__}"
            f"({', '.join(f'{k}={v}' for k, v in getattr(model, 'config', {}).items())}): "
            + "; ".join(problems)
        )
    ours: dict[str, Tensor] = {}
    disagree = []
    for official, (name, _, our_shape) in layout.items():
        value = sd[official]
        if name in ours:  # the ``.conv.`` alias of a convolution already taken
            if not torch.equal(ours[name], value.reshape(our_shape)):
                disagree.append(f"{official} != {name}")
            continue
        ours[name] = value.reshape(our_shape)
    if disagree:
        raise ValueError(
            f"{what}: the '.conv.' alias of a convolution must hold the same tensor as the "
            f"convolution's own key; they differ for {_listing(disagree)}"
        )
    return ours


def infer_official_config(sd: Mapping[str, Tensor], kind: Kind) -> dict:
    """Constructor arguments (dim, num_blocks, heads, expansion, bias) read off a state dict.

    Works on the public layout and on ours (the keys used are common to both).
    """
    if kind not in _STEM:
        raise ValueError(f"kind must be 'refusion' or 'lpn', got {kind!r}")
    stem = f"{_STEM[kind]}.weight"
    qkv = "encoder1.0.attn.qkv.weight"
    needed = [stem, _ENCODER_BLOCK.format(0), "encoder1.0.ffn.project_in.weight", qkv]
    absent = [k for k in needed if not isinstance(sd.get(k), Tensor)]
    if absent:
        raise ValueError(
            f"cannot read a {kind} configuration off the state dict: "
            f"missing keys {_listing(absent)}"
        )
    # dim is read from the first attention block (its input width) and checked against
    # the stem: a wrong-shape stem would otherwise imply another config and every
    # block would then be blamed instead of the stem itself.
    dim = int(sd[qkv].shape[1])
    if sd[qkv].ndim != 4 or sd[stem].ndim != 4 or int(sd[stem].shape[0]) != dim:
        raise ValueError(
            f"wrong shape: {stem} is {tuple(sd[stem].shape)}, but the encoder's width is {dim} "
            f"({qkv} is {tuple(sd[qkv].shape)}): the stem must be ({dim}, in_channels, k, k)")
    num_blocks = 0
    while _ENCODER_BLOCK.format(num_blocks) in sd:
        num_blocks += 1
    heads = int(sd[_ENCODER_BLOCK.format(0)].shape[0])
    expansion = int(sd["encoder1.0.ffn.project_in.weight"].shape[0]) / (2 * dim)
    return dict(
        dim=dim,
        num_blocks=num_blocks,
        heads=heads,
        ffn_expansion_factor=expansion,
        bias=f"{_STEM[kind]}.bias" in sd,
    )


def _build(kind: Kind, config: dict) -> nn.Module:
    cls = ReFusionNet if kind == "refusion" else TDFusionLPN
    try:
        return cls(**config)
    except ValueError as error:
        raise ValueError(f"state dict implies an invalid {cls.__name__} config {config}: {error}")


def convert_official_state_dict(
    sd: Mapping[str, Tensor], kind: Kind = "refusion"
) -> dict[str, Tensor]:
    """Map a public TDFusion ``state_dict`` to ours (``kind``: ``'refusion'`` or ``'lpn'``).

    The architecture hyper-parameters are read off the dict; then every key and
    shape is checked against the public layout of that architecture and each
    ``.conv.`` alias must equal its convolution's key. Anything off raises
    ``ValueError`` naming the offending keys. Returns a new dict (tensors are
    views of the input; temperatures reshaped to ``[heads]``) that loads strictly
    into ``ReFusionNet`` / ``TDFusionLPN`` built with the inferred config.
    """
    model = _build(kind, infer_official_config(sd, kind))
    return _map_official(sd, model)


def load_official_state_dict(model: nn.Module, sd: Mapping[str, Tensor]) -> nn.Module:
    """Load a public TDFusion ``state_dict`` strictly into a ReFusionNet / TDFusionLPN."""
    _kind_of(model)
    ours = _map_official(sd, model)
    model.load_state_dict(ours, strict=True)
    return model


# ----------------------------------------------------------------------------- checkpoints
def _is_official(sd: Mapping[str, object]) -> bool:
    keys = [k for k in sd if isinstance(k, str)]
    return any(k.endswith((".conv.weight", ".conv.bias")) or ".body." in k for k in keys)


def _load_refusion(
    sd: Mapping[str, Any], path: str, model: ReFusionNet | None, prefix: str | None
) -> ReFusionNet:
    """The ReFusion network held by the state dict ``sd`` of file ``path``, loaded strictly."""
    anchor = f"{_STEM['refusion']}.weight"
    chosen = find_prefix(sd, anchor, path, prefix, label="ReFusion")
    sub = {k[len(chosen):]: v for k, v in sd.items() if k.startswith(chosen)}
    what = f"checkpoint {path!r}" + (f" (prefix {chosen!r})" if chosen else "")
    official = _is_official(sub)
    if model is None:
        config = infer_official_config(sub, "refusion")
        model = _build("refusion", config)  # type: ignore[assignment]
    elif not isinstance(model, ReFusionNet):
        raise TypeError(f"model must be a ReFusionNet, got {type(model).__name__}")
    if official:
        ours = _map_official(sub, model, what=what)
    else:
        check_state_dict(sub, model, what)
        ours = dict(sub)
    model.load_state_dict(ours, strict=True)
    return model


def load_fusion_checkpoint(
    path: str | os.PathLike,
    model: ReFusionNet | None = None,
    map_location: str | torch.device = "cpu",
    prefix: str | None = None,
) -> ReFusionNet:
    """Load a ReFusion fusion network from a file (weights-only, see below).

    Accepted contents: our state dict (plain, or under ``'state_dict'``), an
    MMEngine checkpoint whose ``'state_dict'`` holds the network under a prefix
    such as ``'fusion_net.'`` (found automatically, or pass ``prefix``), and the
    public release format (detected by its ``.conv.weight`` aliases / ``.body.``
    norms). With ``model=None`` a :class:`ReFusionNet` is built with the
    configuration read off the weights; otherwise ``model`` is loaded strictly
    and returned.

    The file is read by :func:`learnable_fusion_loss.compat.load_weights_only`:
    ``weights_only=True`` plus the allow-list of MMEngine runner checkpoints, so
    every checkpoint the project writes loads and no file can run code. A file
    that is unreadable or holds other objects raises ``ValueError`` naming it.

    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "f.pth")
    >>> torch.save({"state_dict": {"fusion_net." + k: v for k, v in
    ...            ReFusionNet(dim=8, num_blocks=1, heads=2).state_dict().items()}}, path)
    >>> load_fusion_checkpoint(path).config["dim"]
    8
    """
    path = os.fspath(path)
    # The allow-list is applied inside, so a checkpoint of tools/train.py (MMEngine's
    # message_hub with HistoryBuffer objects) loads in any process, still weights-only.
    sd = read_state_dict(path, map_location=map_location)
    return _load_refusion(sd, path, model, prefix)


@register_weight_reader("refusion")
def read_refusion_weights(
    state: Mapping[str, Any], model: nn.Module | None, path: str
) -> ReFusionNet | None:
    """The weight reader of :class:`ReFusionNet` (see :mod:`learnable_fusion_loss.apis.weights`).

    Takes a file for a given ReFusionNet, and without a network a file holding one
    (a key ending in ``project_in_1.weight``), in our format or the public one; the
    network is then built with the configuration read off the weights.
    """
    if model is not None:
        return _load_refusion(state, path, model, None) if isinstance(model, ReFusionNet) else None
    anchor = f"{_STEM['refusion']}.weight"
    if not any(isinstance(k, str) and k.endswith(anchor) for k in state):
        return None
    return _load_refusion(state, path, None, None)
