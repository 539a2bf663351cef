"""Turning what users pass to ``Pipeline.predict`` into (name, (3,H,W) float [0,1]) items."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, List, Optional, Tuple

import numpy as np
import torch

from ..imageio import read_rgb
from ..inference import check_images


def _from_array(array: np.ndarray, color: Optional[str], name: str) -> torch.Tensor:
    if color not in ("rgb", "bgr"):
        raise ValueError(f"{name}: numpy images need color='rgb' or color='bgr' (cv2.imread gives BGR)")
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise ValueError(f"{name}: expected an (H, W, 3) image array, got shape {array.shape}")
    array = array[:, :, :3]
    if color == "bgr":
        array = array[:, :, ::-1]
    if array.dtype == np.uint8:
        scale = 255.0
    elif array.dtype == np.uint16:
        scale = 65535.0
    elif np.issubdtype(array.dtype, np.floating):
        scale = 1.0
    else:
        raise ValueError(f"{name}: unsupported pixel type {array.dtype}")
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32) / np.float32(scale)).permute(2, 0, 1)


def load_inputs(inputs: Any, color: Optional[str] = None) -> List[Tuple[str, torch.Tensor]]:
    """Normalise ``inputs`` to a list of ``(name, (3,H,W) float32 in [0,1])``.

    Accepts one item or a list of: image paths (str / Path), numpy (H,W,3) arrays (uint8, 16-bit
    or float; ``color`` "rgb" or "bgr" must be given), PIL images, and tensors (3,H,W) or
    (B,3,H,W) float in [0,1] (uint8 tensors are refused: convert with ``x.float() / 255``).
    Names are file stems for paths and ``image{i}`` otherwise.
    """
    if isinstance(inputs, (str, os.PathLike, np.ndarray)) or not isinstance(inputs, Iterable) \
            or (isinstance(inputs, torch.Tensor) and inputs.ndim == 3):
        inputs = [inputs]
    items: List[Tuple[str, torch.Tensor]] = []
    for i, item in enumerate(inputs):
        name = f"image{i}"
        if isinstance(item, (str, os.PathLike)):
            name = Path(item).stem
            tensor = torch.from_numpy(read_rgb(item, as_float=True)).permute(2, 0, 1)
        elif isinstance(item, np.ndarray):
            tensor = _from_array(item, color, name)
        elif isinstance(item, torch.Tensor):
            batch = item[None] if item.ndim == 3 else item
            if batch.ndim != 4 or batch.shape[1] != 3:
                raise ValueError(f"{name}: tensors must be (3,H,W) or (B,3,H,W) RGB, got {tuple(item.shape)}")
            check_images(batch, name)
            items.extend((f"image{i}_{j}" if len(batch) > 1 else name, t.float()) for j, t in enumerate(batch))
            continue
        elif hasattr(item, "convert") and hasattr(item, "size"):  # PIL.Image
            tensor = torch.from_numpy(np.asarray(item.convert("RGB"), dtype=np.float32) / 255.0).permute(2, 0, 1)
        else:
            raise TypeError(f"{name}: cannot read a {type(item).__name__}; pass paths, numpy arrays, PIL images or tensors")
        items.append((name, tensor.contiguous()))
    return items
