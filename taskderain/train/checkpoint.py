"""Training checkpoints: a derainer checkpoint plus everything needed to resume exactly.

A training checkpoint is a *superset* of the derainer format (``taskderain.derainer/1``, see
:mod:`taskderain.models.checkpoint`): ``load_derainer("run/best.pt")`` and
``create_derainer(name, weights="run/last.pt")`` read it as they read any derainer checkpoint,
and the extra ``"train"`` entry holds::

    {"config": the validated train config, "step": optimizer steps done, "epoch": current epoch,
     "pos": steps done in that epoch (the data-order state: batches are a pure function of
     (seed, epoch)), "optimizer": Adam state_dict, "best": best metric so far or None,
     "log_rows": CSV rows written, "rng": {"python", "numpy", "torch", "cuda"},
     "last_metrics": {metric: last validation value}, "stages": {"detector" / "segmenter":
     state_dict} (task modes: the stages trained besides the derainer; frozen ones are rebuilt
     from the config)}

The learning-rate schedule is a pure function of ``step`` (:func:`~taskderain.train.config.lr_at`),
so ``step`` is its whole state. Everything loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np
import torch

from ..checkpoint import CheckpointError, check_finite, read_checkpoint, write_checkpoint
from ..models.checkpoint import FORMAT
from ..models.base import Derainer
from ..types import PathLike

WHAT = "training checkpoint"


def rng_state() -> Dict[str, Any]:
    """The global Python, NumPy and torch (CPU, CUDA) random states, in weights_only-safe types."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"python": random.getstate(),
             "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)],
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, gauss_np = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss_np))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_train_checkpoint(path: PathLike, model: Derainer, train: Dict[str, Any],
                          metadata: Optional[Dict[str, Any]] = None) -> Path:
    """Write ``model`` + ``train`` state atomically (temp file + rename); readable by ``load_derainer``."""
    fields = {"format": FORMAT, "arch": model.arch, "preset": model.preset, "config": dict(model.config),
              "train": {**train, "rng": rng_state()}}
    return write_checkpoint(path, fields, model, metadata)


def load_train_checkpoint(path: PathLike) -> Dict[str, Any]:
    """Read a training checkpoint; errors name the file.

    Raises:
        FileNotFoundError: no such file. CheckpointError: corrupt, non-finite weights, or a
            derainer checkpoint / state_dict without training state.
    """
    obj = read_checkpoint(path, WHAT)
    train = obj.get("train")
    if obj.get("format") != FORMAT or not isinstance(train, dict):
        raise CheckpointError(f"{path} is not a taskderain {WHAT} (no training state): it cannot be resumed; "
                              "use it as model.weights to fine-tune from it instead")
    missing = [k for k in ("config", "step", "epoch", "pos", "optimizer", "rng", "log_rows") if k not in train]
    if missing:
        raise CheckpointError(f"{WHAT} {path} lacks {', '.join(missing)}; it cannot be resumed")
    check_finite(obj.get("state_dict", {}), path, WHAT)
    for stage, state in (train.get("stages") or {}).items():
        check_finite(state, f"{path} [{stage}]", WHAT)
    return obj
