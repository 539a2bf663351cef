"""Twin NumPy / torch image operations of the rain zoo: the same float32 arithmetic on both paths.

Every NumPy function here uses only IEEE-exact element-wise operations (+, −, ×, ÷, sqrt) and
sequential sums in a fixed order, so its bytes do not depend on the machine, SIMD dispatch or
thread count; its torch twin performs the same operations in the same order on the images'
device (equal on CPU up to fused multiply-adds, within a few float32 ulps on CUDA) and is
differentiable. Images are (H, W, C) float32 in NumPy and (B, C, H, W) float in torch.

Image-independent fields (masks, depth maps, sampling plans) are built in float64 with NumPy and
rounded by :func:`quantize` to a 2^-20 grid before use, which absorbs the last-ulp differences
between libm / SVML implementations of ``exp``, ``log`` or ``pow``.
"""

from __future__ import annotations

import math
from typing import Optional, Tuple

import numpy as np
import torch

from ..synthesis_torch import reflect_index  # noqa: F401  (re-exported for the families)

#: Grid of :func:`quantize`.
QUANT = float(2**20)


def quantize(x: np.ndarray) -> np.ndarray:
    """float64 field → float32 on a 2^-20 grid (machine-independent bytes; see module docstring)."""
    return (np.rint(np.asarray(x, np.float64) * QUANT) / QUANT).astype(np.float32)


def as_float32(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 or float → float32 in [0, 1] (uint8 / 255)."""
    if image.dtype == np.uint8:
        return image.astype(np.float32) / np.float32(255)
    return image.astype(np.float32)


def like(y: np.ndarray, image: np.ndarray) -> np.ndarray:
    """float32 result → clipped to [0, 1] in the dtype of ``image`` (uint8: rounded half-to-even)."""
    y = np.clip(y, 0, 1)
    if image.dtype == np.uint8:
        return np.rint(y * np.float32(255)).astype(np.uint8)
    return y.astype(image.dtype, copy=False)


def smoothstep(x: np.ndarray) -> np.ndarray:
    """``3t² − 2t³`` of ``t = clip(x, 0, 1)`` (float64)."""
    t = np.clip(x, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def gaussian_taps(sigma: float) -> np.ndarray:
    """Normalised 1-D Gaussian of std ``sigma`` px, radius ``ceil(3·sigma)``: float32 taps."""
    r = max(1, int(math.ceil(3 * sigma)))
    t = np.exp(-0.5 * (np.arange(-r, r + 1, dtype=np.float64) / sigma) ** 2)
    return quantize(t / t.sum())


def _taps_axis_np(x: np.ndarray, taps: np.ndarray, axis: int) -> np.ndarray:
    n, r = x.shape[axis], taps.size // 2
    xp = np.take(x, reflect_index(n, r), axis=axis)
    sl = [slice(None)] * x.ndim

    def part(i: int) -> np.ndarray:
        sl[axis] = slice(i, i + n)
        return xp[tuple(sl)]

    out = part(0) * taps[0]
    for i in range(1, taps.size):
        out += part(i) * taps[i]
    return out


def _taps_axis_torch(x: torch.Tensor, taps: np.ndarray, dim: int) -> torch.Tensor:
    n, r = x.shape[dim], taps.size // 2
    xp = x.index_select(dim, torch.from_numpy(reflect_index(n, r)).to(x.device))
    out = xp.narrow(dim, 0, n) * float(taps[0])
    for i in range(1, taps.size):
        out = out + xp.narrow(dim, i, n) * float(taps[i])
    return out


def gaussian_blur(x: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of (H, W, C) float32, reflect-101 borders; identity at sigma <= 0."""
    if sigma <= 0:
        return x
    taps = gaussian_taps(sigma)
    return _taps_axis_np(_taps_axis_np(x, taps, 0), taps, 1)


def gaussian_blur_torch(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Torch twin of :func:`gaussian_blur` for (B, C, H, W)."""
    if sigma <= 0:
        return x
    taps = gaussian_taps(sigma)
    return _taps_axis_torch(_taps_axis_torch(x, taps, -2), taps, -1)


def box_radius(sigma: float, passes: int = 3) -> int:
    """Radius r of a box whose ``passes``-fold repetition has std ≈ sigma: ``passes·((2r+1)² − 1)/12 = σ²``."""
    return max(1, int(round((math.sqrt(12 * sigma * sigma / passes + 1) - 1) / 2)))


def box_blur(x: np.ndarray, sigma: float, passes: int = 3) -> np.ndarray:
    """Large Gaussian-like blur of (H, W, C) float32: ``passes`` running-sum box filters per axis
    (float64 cumulative sums, cost independent of sigma), reflect-101 borders."""
    r = box_radius(sigma, passes)
    y = x.astype(np.float64)
    for _ in range(passes):
        for axis in (0, 1):
            n = y.shape[axis]
            c = np.cumsum(np.take(y, reflect_index(n, r), axis=axis), axis=axis)
            zero = np.zeros_like(np.take(c, [0], axis=axis))
            c = np.concatenate([zero, c], axis=axis)
            y = (np.take(c, np.arange(2 * r + 1, n + 2 * r + 1), axis=axis) - np.take(c, np.arange(n), axis=axis)) / (2 * r + 1)
    return y.astype(np.float32)


def box_blur_torch(x: torch.Tensor, sigma: float, passes: int = 3) -> torch.Tensor:
    """Torch twin of :func:`box_blur` for (B, C, H, W) (float64 sums; float32 on MPS)."""
    r = box_radius(sigma, passes)
    y = x.to(torch.float32 if x.device.type == "mps" else torch.float64)
    for _ in range(passes):
        for dim in (-2, -1):
            n = y.shape[dim]
            c = torch.cumsum(y.index_select(dim, torch.from_numpy(reflect_index(n, r)).to(y.device)), dim=dim)
            c = torch.cat([torch.zeros_like(c.narrow(dim, 0, 1)), c], dim=dim)
            y = (c.narrow(dim, 2 * r + 1, n) - c.narrow(dim, 0, n)) / (2 * r + 1)
    return y.to(x.dtype)


def bilinear_plan(ys: np.ndarray, xs: np.ndarray, height: int, width: int) -> Tuple[np.ndarray, np.ndarray]:
    """Bilinear sampling plan at float positions (clamped to the image): flat indices (N, 4) int64
    into an H·W plane and float32 weights (N, 4) of the corners (y0x0, y0x1, y1x0, y1x1)."""
    y = np.clip(np.asarray(ys, np.float64), 0, height - 1)
    x = np.clip(np.asarray(xs, np.float64), 0, width - 1)
    y0, x0 = np.floor(y), np.floor(x)
    fy, fx = y - y0, x - x0
    y0, x0 = y0.astype(np.int64), x0.astype(np.int64)
    y1, x1 = np.minimum(y0 + 1, height - 1), np.minimum(x0 + 1, width - 1)
    index = np.stack([y0 * width + x0, y0 * width + x1, y1 * width + x0, y1 * width + x1], 1)
    weight = np.stack([(1 - fy) * (1 - fx), (1 - fy) * fx, fy * (1 - fx), fy * fx], 1)
    return index, quantize(weight)


def gather_bilinear(plane: np.ndarray, index: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Sample (H, W, C) float32 with a :func:`bilinear_plan`: (N, C) float32."""
    flat = plane.reshape(-1, plane.shape[-1])
    out = flat[index[:, 0]] * weight[:, 0:1]
    for k in range(1, 4):
        out += flat[index[:, k]] * weight[:, k : k + 1]
    return out


def gather_bilinear_torch(plane: torch.Tensor, index: np.ndarray, weight: np.ndarray) -> torch.Tensor:
    """Torch twin of :func:`gather_bilinear` for one (C, H, W) plane: (C, N)."""
    flat = plane.reshape(plane.shape[0], -1)
    idx = torch.from_numpy(index).to(plane.device)
    wts = torch.from_numpy(weight).to(plane.device, plane.dtype)
    out = flat.index_select(1, idx[:, 0]) * wts[:, 0]
    for k in range(1, 4):
        out = out + flat.index_select(1, idx[:, k]) * wts[:, k]
    return out


def smooth_field(height: int, width: int, cells: Tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Low-frequency random field in [0, 1]: a (cells+1) grid of uniforms, smoothstep-interpolated; (H, W) float64."""
    gh, gw = cells
    grid = rng.random((gh + 1, gw + 1))
    y = (np.arange(height) + 0.5) / height * gh
    x = (np.arange(width) + 0.5) / width * gw
    y0, x0 = np.minimum(np.floor(y).astype(int), gh - 1), np.minimum(np.floor(x).astype(int), gw - 1)
    ty, tx = smoothstep(y - y0)[:, None], smoothstep(x - x0)[None, :]
    top = grid[y0][:, x0] * (1 - tx) + grid[y0][:, x0 + 1] * tx
    bottom = grid[y0 + 1][:, x0] * (1 - tx) + grid[y0 + 1][:, x0 + 1] * tx
    return top * (1 - ty) + bottom * ty


def frame_side(height: int, width: int, frame: Optional[float]) -> float:
    """Long side (px) of the full frame an image belongs to: ``frame``, or the image's own long side."""
    return float(frame) if frame else float(max(height, width))


def child_generators(rng: np.random.Generator, count: int) -> list:
    """``count`` independent PCG64 generators seeded from one ``integers`` draw of ``rng``."""
    return [np.random.Generator(np.random.PCG64(int(s))) for s in rng.integers(0, 2**63, size=count)]
