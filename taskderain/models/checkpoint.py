"""taskderain's checkpoint format for derainers, and loading of plain state_dicts (the file I/O
itself is :mod:`taskderain.checkpoint`).

A checkpoint is a ``torch.save``'d dict::

    {"format": "taskderain.derainer/1", "arch": "mspfn", "preset": "mspfn_lite",
     "config": {...}, "state_dict": {...},
     "metadata": {"taskderain_version": ..., "created": ..., "training_data": ..., "metrics": {...}}}

It loads with ``torch.load(weights_only=True)``: no pickled code is ever executed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Union

import torch

from ..checkpoint import CheckpointError, check_finite, read_checkpoint, write_checkpoint  # noqa: F401 (re-exported)
from .base import Derainer
from .pretrained import resolve_weights
from .registry import build_derainer, get_entry, list_derainers
from ..types import PathLike

FORMAT = "taskderain.derainer/1"


def is_taskderain_checkpoint(obj: Mapping[str, Any]) -> bool:
    return obj.get("format") == FORMAT


def _state_dict_of(obj: Mapping[str, Any]) -> Dict[str, torch.Tensor]:
    if is_taskderain_checkpoint(obj):
        return dict(obj["state_dict"])
    for key in ("state_dict", "model_state_dict", "model", "params"):  # common wrappers
        if isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    state = {k[7:] if k.startswith("module.") else k: v for k, v in obj.items()}  # DataParallel prefix
    if not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError("not a state_dict: values are not all tensors")
    return state


def _describe(model: Derainer) -> str:
    return f"{model.preset!r} ({model.arch}, {sum(p.numel() for p in model.parameters()):,} parameters)"


def load_weights(model: Derainer, path: PathLike, strict: bool = True) -> Dict[str, Any]:
    """Load ``path`` into ``model`` in place; returns the checkpoint's metadata ({} for plain files).

    Raises:
        CheckpointError: the file holds another architecture, or its tensors' names or shapes
            differ from the model's (the message names the file, both architectures/presets and
            the first mismatches).
    """
    return _load_state(model, read_checkpoint(path), Path(path), strict)


def _load_state(model: Derainer, obj: Dict[str, Any], path: Path, strict: bool = True) -> Dict[str, Any]:
    """:func:`load_weights` on the already-read checkpoint ``obj`` of ``path``."""
    if is_taskderain_checkpoint(obj) and obj.get("arch") != model.arch:
        raise CheckpointError(
            f"{path} holds a {obj.get('arch')!r} derainer (preset {obj.get('preset')!r}), "
            f"but the model is {_describe(model)}; use load_derainer({str(path)!r}) or the matching --model"
        )
    try:
        state = _state_dict_of(obj)
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    check_finite(state, path, "derainer weights")
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}"
             for k, v in own.items() if k in state and state[k].shape != v.shape]
    if wrong or (strict and (missing or unexpected)):
        source = (f"a {obj.get('arch')!r} checkpoint (preset {obj.get('preset')!r}, config {obj.get('config')})"
                  if is_taskderain_checkpoint(obj) else "a plain state_dict")
        parts = [f"{path} ({source}) does not fit the model {_describe(model)}, config {model.config}:"]
        for label, items in (("shape mismatches", wrong), ("missing keys", missing), ("unexpected keys", unexpected)):
            if items:
                parts.append(f"  {len(items)} {label}, e.g. {', '.join(items[:3])}")
        raise CheckpointError("\n".join(parts))
    model.load_state_dict(state, strict=strict)
    return dict(obj.get("metadata", {})) if is_taskderain_checkpoint(obj) else {}


def save_derainer(model: Derainer, path: PathLike, metadata: Optional[Dict[str, Any]] = None,
                  half: bool = False) -> Path:
    """Write ``model`` as a taskderain checkpoint, atomically.

    Args:
        metadata: extra facts to keep, e.g. ``{"training_data": "Rain100L train", "metrics": {"psnr_y": 32.1}}``.
        half: store floating-point tensors as float16 (half the size; loading casts them back to
            the model's dtype).
    """
    ckpt = {"format": FORMAT, "arch": model.arch, "preset": model.preset, "config": dict(model.config)}
    return write_checkpoint(path, ckpt, model, metadata, half=half)


def create_derainer(name: str, weights: Optional[PathLike] = None, **overrides: Any) -> Derainer:
    """Build a registered derainer, optionally loading weights.

    Args:
        name: a preset from :func:`list_derainers` (``"mspfn"``, ``"mspfn_lite"``, ``"prenet"``, ...).
        weights: a taskderain checkpoint or a plain state_dict file (e.g. official PReNet ``.pth``),
            or the tag of weights shipped with the package (``"default"``, see
            :mod:`taskderain.models.pretrained`).
            A taskderain checkpoint's stored config is applied first, so ``create_derainer("mspfn_lite",
            weights=ckpt)`` rebuilds a model trained with overrides.
        overrides: config fields to change (e.g. ``width=32``).
    """
    weights = resolve_weights(name, weights)
    if weights is None:
        return build_derainer(name, **overrides)
    obj = read_checkpoint(weights)
    config = {}
    if is_taskderain_checkpoint(obj) and obj.get("preset") == name:
        config = dict(obj.get("config", {}))  # restores overrides the checkpoint was trained with
    model = build_derainer(name, **{**config, **overrides})
    _load_state(model, obj, Path(weights))  # the file is read once
    return model


def load_derainer(path: PathLike, map_location: Union[str, torch.device] = "cpu") -> Derainer:
    """Rebuild a derainer from a taskderain checkpoint alone (architecture + config + weights)."""
    return derainer_from_checkpoint(read_checkpoint(path), path).to(map_location)


def derainer_from_checkpoint(obj: Dict[str, Any], path: PathLike) -> Derainer:
    """:func:`load_derainer` on the already-read checkpoint ``obj`` of ``path`` (a training
    checkpoint too), on the CPU; errors name ``path``."""
    if not is_taskderain_checkpoint(obj):
        raise CheckpointError(f"{path} is a plain state_dict without architecture information; "
                              f"use create_derainer(name, weights={str(path)!r}) with the matching name")
    names = list_derainers()
    preset, arch = obj.get("preset"), obj.get("arch")
    name = preset if preset in names else next((n for n in names if get_entry(n).cls.arch == arch), None)
    if name is None:
        raise CheckpointError(f"{path} holds an unknown architecture {arch!r} (preset {preset!r}); "
                              f"known derainers: {', '.join(names)}")
    model = build_derainer(name, **dict(obj.get("config", {})))
    model.preset = preset
    _load_state(model, obj, Path(path))
    return model
