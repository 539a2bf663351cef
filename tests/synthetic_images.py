"""Deterministic test images and tensor round trips shared by the rain tests (not a test module)."""

from __future__ import annotations

import numpy as np
import torch


def scene(h: int = 240, w: int = 320) -> np.ndarray:
    """A deterministic textured (H, W, 3) uint8 image made with integer arithmetic only."""
    y, x = np.mgrid[0:h, 0:w]
    r = (x * 200 // max(w, 1) + 20) % 256
    g = (y * 180 // max(h, 1) + 40 + ((x // 8 + y // 8) % 2) * 30) % 256
    b = ((x * 7 + y * 13) % 97 + 60) % 256
    return np.stack([r, g, b], -1).astype(np.uint8)


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 → (3, H, W) float32 in [0, 1]."""
    return torch.from_numpy(image).permute(2, 0, 1).float() / 255


def to_uint8(t: torch.Tensor) -> np.ndarray:
    """(3, H, W) float in [0, 1] → (H, W, 3) uint8, rounded."""
    return torch.round(t.detach().permute(1, 2, 0) * 255).to(torch.uint8).cpu().numpy()
