"""taskderain's checkpoint format for segmenters (detectors keep ultralytics' own ``.pt`` format,
written by :func:`save_detector`).

A checkpoint is a ``torch.save``'d dict::

    {"format": "taskderain.segmenter/1", "arch": "Unet", "encoder": "resnet18", "num_classes": 21,
     "names": {0: "background", ...}, "ignore_index": 255,
     "config": {... every Segmenter argument but encoder_weights ...}, "state_dict": {...},
     "metadata": {"taskderain_version": ..., "created": ..., "encoder_weights": ..., ...}}

It loads with ``torch.load(weights_only=True)``: no pickled code is ever executed.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Optional, Union

import torch

from ..checkpoint import CheckpointError, check_finite, read_checkpoint, save_atomic, write_checkpoint
from .segmenter import Segmenter
from ..types import PathLike

if TYPE_CHECKING:
    from .detector import Detector

FORMAT = "taskderain.segmenter/1"


def read_segmenter_checkpoint(path: PathLike) -> Dict[str, Any]:
    """Load a segmenter checkpoint on the CPU, safely.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: unreadable, or not a taskderain segmenter checkpoint.
    """
    obj = read_checkpoint(path, what="segmenter checkpoint")
    if obj.get("format") != FORMAT:
        found = obj.get("format")
        raise CheckpointError(f"{path} is not a taskderain segmenter checkpoint (format {found!r}, "
                              f"expected {FORMAT!r}); write one with save_segmenter")
    return dict(obj)


def save_segmenter(segmenter: Segmenter, path: PathLike, metadata: Optional[Dict[str, Any]] = None,
                   half: bool = False) -> Path:
    """Write ``segmenter`` as a taskderain checkpoint, atomically.

    Args:
        metadata: extra facts to keep, e.g. ``{"training_data": "COCO128 masks", "metrics": {"miou": 0.41}}``.
        half: store floating-point tensors as float16 (loading casts them back).
    """
    fields = {"format": FORMAT, "arch": segmenter.arch, "encoder": segmenter.encoder_name,
              "num_classes": segmenter.num_classes, "names": dict(segmenter.names),
              "ignore_index": segmenter.ignore_index, "config": dict(segmenter.config)}
    return write_checkpoint(path, fields, segmenter, {"encoder_weights": segmenter.encoder_weights, **(metadata or {})},
                            half=half)


def _load_state(segmenter: Segmenter, ckpt: Dict[str, Any], path: PathLike) -> None:
    state, own = ckpt["state_dict"], segmenter.state_dict()
    check_finite(state, path, "segmenter checkpoint")
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}"
             for k, v in own.items() if k in state and state[k].shape != v.shape]
    if missing or unexpected or wrong:
        parts = [f"{path} ({ckpt.get('arch')} / {ckpt.get('encoder')}, {ckpt.get('num_classes')} classes) does not "
                 f"fit the segmenter ({segmenter.arch} / {segmenter.encoder_name}, {segmenter.num_classes} classes):"]
        for label, items in (("shape mismatches", wrong), ("missing keys", missing), ("unexpected keys", unexpected)):
            if items:
                parts.append(f"  {len(items)} {label}, e.g. {', '.join(items[:3])}")
        raise CheckpointError("\n".join(parts))
    segmenter.load_state_dict(state)


def load_segmenter(path: PathLike, map_location: Union[str, torch.device] = "cpu") -> Segmenter:
    """Rebuild a segmenter from its checkpoint alone (architecture, encoder, classes, weights)."""
    ckpt = read_segmenter_checkpoint(path)
    segmenter = Segmenter(**ckpt["config"])  # encoder_weights=None: the state_dict holds the weights
    _load_state(segmenter, ckpt, path)
    return segmenter.to(map_location)


def create_segmenter(arch: str = "Unet", encoder: str = "resnet18", num_classes: Optional[int] = None,
                     weights: Optional[PathLike] = None, **kwargs: Any) -> Segmenter:
    """Build a :class:`Segmenter`, optionally loading a segmenter checkpoint.

    Args:
        weights: a checkpoint written by :func:`save_segmenter`; its arch, encoder and classes
            must match (``num_classes=None`` takes the checkpoint's, as do its names and
            normalisation unless given).
        kwargs: further :class:`Segmenter` arguments (``encoder_weights``, ``ignore_index``, ...).

    Raises:
        CheckpointError: the checkpoint holds another architecture, encoder or class count.
    """
    if weights is None:
        return Segmenter(arch, encoder, num_classes=num_classes, **kwargs)
    ckpt = read_segmenter_checkpoint(weights)
    stored = ckpt["config"]
    classes = stored["num_classes"] if num_classes is None else num_classes
    wanted = {"arch": arch, "encoder": encoder, "num_classes": classes}
    differ = {k: (stored.get(k), v) for k, v in wanted.items() if str(stored.get(k)).lower() != str(v).lower()}
    if differ:
        detail = ", ".join(f"{k} {a!r} in the file vs {b!r} asked for" for k, (a, b) in differ.items())
        raise CheckpointError(f"{weights} does not match the requested segmenter: {detail}; "
                              f"use load_segmenter({str(weights)!r}) to rebuild it as saved")
    config = {**stored, **kwargs, "arch": arch, "encoder": encoder, "num_classes": wanted["num_classes"]}
    config.pop("encoder_weights", None)  # the checkpoint's state_dict replaces any encoder weights
    segmenter = Segmenter(**config)
    _load_state(segmenter, ckpt, weights)
    return segmenter


def save_detector(detector: "Detector", path: PathLike, metadata: Optional[Dict[str, Any]] = None,
                  half: bool = True) -> Path:
    """Write ``detector`` as an ultralytics checkpoint (``YOLO(path)`` and ``create_detector(weights=path)`` load it).

    The layout is ultralytics' own (``model`` pickled, ``train_args``, ``date``, ``version``;
    ``ema``/``optimizer`` None), float16 by default as ultralytics saves; taskderain's facts go
    under ``"taskderain"``. Written atomically.
    """
    import copy
    import time

    import ultralytics

    from .. import __version__

    model = copy.deepcopy(detector.model).cpu().eval()
    for p in model.parameters():
        p.requires_grad_(True)  # ultralytics' own checkpoints keep parameters trainable
    args = model.args if isinstance(model.args, dict) else dict(vars(model.args))
    ckpt = {"date": time.strftime("%Y-%m-%dT%H:%M:%S"), "version": ultralytics.__version__, "epoch": -1,
            "best_fitness": None, "model": model.half() if half else model, "ema": None, "updates": None,
            "optimizer": None, "train_args": args,
            "taskderain": {"taskderain_version": __version__, **(metadata or {})}}
    return save_atomic(ckpt, path)
