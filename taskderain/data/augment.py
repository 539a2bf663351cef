"""Paired geometric transforms for training crops: pad, crop at one location, 8 dihedral maps.

Pure functions of tensors shaped (..., H, W) — (C, H, W) images or (B, C, H, W) batches — that
apply the same geometry to a rainy image and its clean target (kornia style). Randomness comes
only from an explicit ``torch.Generator``.
"""

from __future__ import annotations

from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as F

Size = Union[int, Tuple[int, int]]

#: Number of dihedral transforms of a rectangle grid: 4 rotations x optional flip.
NUM_DIHEDRAL = 8


def as_size(size: Size) -> Tuple[int, int]:
    """``64`` or ``(64, 48)`` → (height, width) of positive ints; ValueError otherwise."""
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    if not (isinstance(h, int) and isinstance(w, int)) or h <= 0 or w <= 0:
        raise ValueError(f"patch size must be a positive int or (height, width), got {size!r}")
    return h, w


def _check_pair(a: torch.Tensor, b: torch.Tensor) -> None:
    if a.ndim not in (3, 4) or b.ndim != a.ndim:
        raise ValueError(f"expected (C,H,W) or (B,C,H,W) tensors, got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.shape[-2:] != b.shape[-2:]:
        raise ValueError(f"paired images differ in size: {tuple(a.shape)} vs {tuple(b.shape)}")


def pad_to_size(x: torch.Tensor, size: Size) -> torch.Tensor:
    """Reflect-pad (..., H, W) at the bottom/right to at least ``size``; larger sides untouched.

    Reflection repeats where one pass is not enough (reflect needs pad < side), so even a
    tiny image fills any patch; a 1-pixel side is replicated.
    """
    min_h, min_w = as_size(size)
    while x.shape[-2] < min_h or x.shape[-1] < min_w:
        h, w = x.shape[-2:]
        pad_h, pad_w = max(min_h - h, 0), max(min_w - w, 0)
        if (pad_h and h == 1) or (pad_w and w == 1):
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
        else:
            x = F.pad(x, (0, min(pad_w, w - 1), 0, min(pad_h, h - 1)), mode="reflect")
    return x


def paired_crop(a: torch.Tensor, b: torch.Tensor, top: int, left: int, size: Size) -> Tuple[torch.Tensor, torch.Tensor]:
    """Crop the same (h, w) window at (top, left) from two equally sized (..., H, W) tensors."""
    _check_pair(a, b)
    h, w = as_size(size)
    height, width = a.shape[-2:]
    if top < 0 or left < 0 or top + h > height or left + w > width:
        raise ValueError(f"crop {h}x{w} at ({top}, {left}) does not fit in a {height}x{width} image")
    return a[..., top : top + h, left : left + w], b[..., top : top + h, left : left + w]


def paired_random_crop(
    a: torch.Tensor, b: torch.Tensor, size: Size, generator: Optional[torch.Generator] = None
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Crop ``size`` at one uniformly random location, the same in both tensors (and batch items).

    Args:
        a, b: (C, H, W) or (B, C, H, W) with the same H, W, at least ``size`` (see :func:`pad_to_size`).
        size: patch side or (height, width).
        generator: source of randomness (torch's global one when None).

    Returns:
        The two crops, views of the inputs, (..., h, w).
    """
    _check_pair(a, b)
    h, w = as_size(size)
    height, width = a.shape[-2:]
    if height < h or width < w:
        raise ValueError(f"image {height}x{width} is smaller than the patch {h}x{w}; pad it first (pad_to_size)")
    top = int(torch.randint(height - h + 1, (1,), generator=generator))
    left = int(torch.randint(width - w + 1, (1,), generator=generator))
    return paired_crop(a, b, top, left, (h, w))


def paired_center_crop(a: torch.Tensor, b: torch.Tensor, size: Size) -> Tuple[torch.Tensor, torch.Tensor]:
    """Crop ``size`` from the centre of both tensors (deterministic, for validation patches)."""
    _check_pair(a, b)
    h, w = as_size(size)
    height, width = a.shape[-2:]
    return paired_crop(a, b, (height - h) // 2, (width - w) // 2, (h, w))


def dihedral(x: torch.Tensor, k: int) -> torch.Tensor:
    """One of the 8 symmetries of the grid on (..., H, W): flip left-right if ``k >= 4``, then
    rotate ``k % 4`` quarter turns counter-clockwise. ``k = 0`` is the identity; odd ``k``
    swap H and W. Returns a new (contiguous) tensor, or ``x`` itself for ``k = 0``.
    """
    if not 0 <= k < NUM_DIHEDRAL:
        raise ValueError(f"dihedral index must be in 0..7, got {k}")
    if k >= 4:
        x = torch.flip(x, dims=(-1,))
    if k % 4:
        x = torch.rot90(x, k % 4, dims=(-2, -1))
    return x.contiguous()


def dihedral_inverse_index(k: int) -> int:
    """The index that undoes :func:`dihedral` ``k``: rotations reverse, flips are their own inverse."""
    if not 0 <= k < NUM_DIHEDRAL:
        raise ValueError(f"dihedral index must be in 0..7, got {k}")
    return (4 - k) % 4 if k < 4 else k


def dihedral_inverse(x: torch.Tensor, k: int) -> torch.Tensor:
    """Undo :func:`dihedral` ``k`` (e.g. on a network output in test-time self-ensembling)."""
    return dihedral(x, dihedral_inverse_index(k))


def paired_random_dihedral(
    a: torch.Tensor, b: torch.Tensor, generator: Optional[torch.Generator] = None
) -> Tuple[torch.Tensor, torch.Tensor, int]:
    """Apply the same uniformly drawn dihedral transform to both tensors; returns (a, b, k)."""
    _check_pair(a, b)
    k = int(torch.randint(NUM_DIHEDRAL, (1,), generator=generator))
    return dihedral(a, k), dihedral(b, k), k
