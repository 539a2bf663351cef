"""Generic checkpoint I/O: safe reading (``weights_only``), finite-weight checks, atomic writing.

Every checkpoint format of the library (derainers, segmenters, torchvision heads, training runs)
reads and writes through these functions; the formats themselves live with their models.
"""

from __future__ import annotations

import io
import pickle
import time
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

import torch

from .imageio import write_bytes_atomic
from .types import PathLike

__all__ = ["CheckpointError", "check_finite", "read_checkpoint", "save_atomic", "write_checkpoint"]


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


def write_checkpoint(path: PathLike, fields: Dict[str, Any], module: torch.nn.Module,
                     metadata: Optional[Dict[str, Any]] = None, half: bool = False) -> Path:
    """Save ``fields`` + ``module``'s CPU state_dict + metadata (library/torch version, time), atomically.

    ``half=True`` stores floating-point tensors as float16 (``metadata["storage"] = "float16"``).
    """
    from . import __version__

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
