"""taskderain's checkpoint format for derainers, and loading of plain state_dicts.

A checkpoint is a ``torch.save``'d dict::

    {"format": "taskderain.derainer/1", "arch": "mspfn", "preset": "mspfn_lite",
     "config": {...}, "state_dict": {...},
     "metadata": {"taskderain_version": ..., "created": ..., "training_data": ..., "metrics": {...}}}

It loads with ``torch.load(weights_only=True)``: no pickled code is ever executed.
"""

from __future__ import annotations

import io
import os
import pickle
import time
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Union

import torch

from ..imageio import write_bytes_atomic
from .base import Derainer
from .pretrained import resolve_weights
from .registry import build_derainer, get_entry, list_derainers

FORMAT = "taskderain.derainer/1"
PathLike = Union[str, os.PathLike]


class CheckpointError(ValueError):
    """A weights file that is missing, unreadable, or does not fit the model."""


def read_checkpoint(path: PathLike, what: str = "weights file") -> Dict[str, Any]:
    """Load a checkpoint / state_dict file on the CPU with ``weights_only=True`` (no code runs).

    Args:
        what: how errors name the file ("weights file", "segmenter checkpoint", ...).

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: corrupt or truncated, pickled Python objects, or not a dict.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    with open(path, "rb") as handle:
        head = handle.read(4)
    if not head.startswith((b"PK\x03\x04", b"\x80")):  # torch.save: a zip archive, or a legacy pickle
        kind = "an empty file" if not head else "not a PyTorch file (a text file?)" if _is_text(path) \
            else "not a PyTorch file"
        raise CheckpointError(f"{what} {path} is {kind}: expected a checkpoint written by torch.save")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(f"{path} is not a taskderain {what}: it holds pickled Python objects (e.g. a "
                              "whole model of another library), not a taskderain checkpoint or a state_dict") from exc
    except Exception as exc:  # torch raises many types for corrupt / truncated files
        detail = (str(exc).splitlines() or [""])[0]
        raise CheckpointError(f"cannot read {what} {path} (corrupt or truncated?): "
                              f"{type(exc).__name__} {detail}".rstrip()) from exc
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{what} {path} holds a {type(obj).__name__}, not a checkpoint or state_dict")
    return dict(obj)


def _is_text(path: Path) -> bool:
    """True when the file's first KiB decodes as UTF-8 text."""
    with open(path, "rb") as handle:
        head = handle.read(1024)
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def check_finite(state: Mapping[str, Any], path: PathLike, what: str = "weights file") -> None:
    """Refuse a state_dict holding NaN or Inf: such weights make every output black or NaN silently.

    Raises:
        CheckpointError: naming ``path``, the first non-finite tensor and how many values are bad.
    """
    bad = [(k, v) for k, v in state.items()
           if isinstance(v, torch.Tensor) and v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        name, tensor = bad[0]
        count = int((~torch.isfinite(tensor)).sum())
        more = f" (and {len(bad) - 1} more tensor(s))" if len(bad) > 1 else ""
        raise CheckpointError(f"{what} {path} holds non-finite values: tensor '{name}' has {count} NaN/Inf "
                              f"of {tensor.numel()}{more}; the file is damaged or came from a diverged run")


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


def write_checkpoint(path: PathLike, fields: Dict[str, Any], module: torch.nn.Module,
                     metadata: Optional[Dict[str, Any]] = None, half: bool = False) -> Path:
    """Save ``fields`` + ``module``'s CPU state_dict + metadata (library/torch version, time), atomically.

    ``half=True`` stores floating-point tensors as float16 (``metadata["storage"] = "float16"``).
    """
    from .. import __version__

    meta = {"taskderain_version": __version__, "torch_version": str(torch.__version__),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **(metadata or {})}
    state = {k: v.detach().cpu() for k, v in module.state_dict().items()}
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
        meta["storage"] = "float16"
    return save_atomic({**fields, "state_dict": state, "metadata": meta}, path)


def save_atomic(obj: Any, path: PathLike) -> Path:
    """``torch.save(obj)`` to ``path`` atomically (temp file + rename: a crash leaves the old file)."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    write_bytes_atomic(path, buffer.getvalue())
    return Path(path)


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
