"""Batched torch twin of ``add_rain``: same draws, same streak layer, blend on the images' device.

What is guaranteed: the random draws come from the same NumPy PCG64 streams as
:func:`~taskderain.rain.add_rain` (:func:`sample_streaks` on the CPU, then moved to the
device), and the streak layer is scattered with integer-valued float32 ``index_add_`` — exact in
any summation order while a pixel's sum stays below 2^24 (over 250 overlapping streak cores, far
beyond ``storm``) — so the layer is bit-identical to the NumPy one on CPU and CUDA. The blend
is the same float32 formula; only the background blur differs (float Gaussian here, OpenCV's
fixed-point 8-bit Gaussian in NumPy), so after rounding to 8 bits the torch result equals the
NumPy one up to 1/255 where ``blur > 0`` (and exactly for presets without blur, e.g. ``light``).
The blend is differentiable with respect to the images.
"""

from __future__ import annotations

from typing import List, Sequence, Tuple, Union

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from .blend import gaussian_ksize
from .params import RainParams
from .seeding import SeedLike, as_generator, image_seed
from .streaks import SCALE, StreakSample, canvas_margin, sample_streaks

SeedsLike = Union[int, Sequence[SeedLike]]


def _padded_taps(sample: StreakSample, row_stride: int) -> Tuple[np.ndarray, np.ndarray]:
    """(K, T) flat tap offsets and integer weights of a sample's kernels, zero-padded to T taps."""
    width = max(t.weight.size for t in sample.taps)
    offsets = np.zeros((len(sample.taps), width), np.int64)
    weights = np.zeros((len(sample.taps), width), np.float32)
    for k, t in enumerate(sample.taps):
        offsets[k, : t.weight.size] = t.dy.astype(np.int64) * row_stride + t.dx
        weights[k, : t.weight.size] = t.weight
    return offsets, weights


def render_streaks_torch(samples: Sequence[StreakSample], device: Union[str, torch.device] = "cpu") -> torch.Tensor:
    """Streak layers of equally sized samples: (B, 1, H, W) float32 in [0, 1] on ``device``.

    Only the compact draws travel to the device; the kernel copies are expanded and summed there.
    """
    if not samples:
        raise ValueError("render_streaks_torch needs at least one sample")
    h, w = samples[0].height, samples[0].width
    if any((s.height, s.width) != (h, w) for s in samples):
        raise ValueError(f"all samples must share one size, got {[(s.height, s.width) for s in samples]}")
    m = max(canvas_margin(s) for s in samples)
    hp, wp = h + 2 * m, w + 2 * m
    canvas = torch.zeros(len(samples) * hp * wp, dtype=torch.float32, device=device)
    for b, s in enumerate(samples):
        if s.num_streaks == 0:
            continue
        offsets, weights = _padded_taps(s, wp)
        base = b * hp * wp + (s.y.astype(np.int64) + m) * wp + (s.x.astype(np.int64) + m)
        kid = torch.from_numpy(s.kernel_id.astype(np.int64)).to(device)
        index = torch.from_numpy(base).to(device)[:, None] + torch.from_numpy(offsets).to(device).index_select(0, kid)
        value = torch.from_numpy(s.value.astype(np.float32)).to(device)[:, None] * torch.from_numpy(weights).to(device).index_select(0, kid)
        canvas.index_add_(0, index.reshape(-1), value.reshape(-1))
    layer = canvas.view(len(samples), 1, hp, wp)[:, :, m : m + h, m : m + w]
    return torch.clamp_max(layer * float(SCALE), 1.0)


def reflect_index(n: int, pad: int) -> np.ndarray:
    """Source indices of an axis of length ``n`` padded by ``pad`` on both sides, reflect-101
    (OpenCV's default border), for any ``pad``."""
    i = np.arange(-pad, n + pad)
    if n == 1:
        return np.zeros_like(i)
    period = 2 * n - 2
    i = np.abs(i) % period
    return np.where(i >= n, period - i, i)


def _filter_axis(x: torch.Tensor, taps: np.ndarray, dim: int) -> torch.Tensor:
    """Valid correlation of ``x`` (already padded by len(taps)//2) with 1-D ``taps`` along ``dim``."""
    n = x.shape[dim] - taps.size + 1
    out = x.narrow(dim, 0, n) * float(taps[0])
    for i in range(1, taps.size):
        out.add_(x.narrow(dim, i, n), alpha=float(taps[i]))
    return out


def _pad101(x: torch.Tensor, r: int) -> torch.Tensor:
    """Reflect-101 padding by r on H and W (torch's "reflect"; index gathering for tiny sides)."""
    if x.shape[-1] > r and x.shape[-2] > r:
        return F.pad(x, (r, r, r, r), mode="reflect")
    rows = torch.from_numpy(reflect_index(x.shape[-2], r)).to(x.device)
    cols = torch.from_numpy(reflect_index(x.shape[-1], r)).to(x.device)
    return x.index_select(-2, rows).index_select(-1, cols)


def blur_background_torch(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (B, C, H, W) with reflect-101 borders (as OpenCV); identity at 0.

    Shifted multiply-adds (faster than a depthwise convolution on CPU, fine on CUDA, differentiable).
    """
    if sigma <= 0:
        return images
    k = gaussian_ksize(sigma)
    taps = cv2.getGaussianKernel(k, sigma, cv2.CV_32F).ravel()
    x = _pad101(images, k // 2)
    return _filter_axis(_filter_axis(x, taps, -1), taps, -2)


def composite_torch(images: torch.Tensor, streaks: torch.Tensor, params: RainParams) -> torch.Tensor:
    """Torch twin of :func:`~taskderain.rain.composite`: (B, 3, H, W) float in [0, 1] + (B, 1, H, W) layer.

    Computes in float32 and returns the images' dtype; differentiable in ``images``.
    """
    x = blur_background_torch(images.float(), params.blur)
    s = streaks.to(device=x.device, dtype=torch.float32)
    y = x + s if params.blend == "add" else x + s * (1 - x)
    if params.haze > 0:
        y = y * float(np.float32(1 - params.haze))
        y = y + float(np.float32(params.haze * params.airlight))
    return y.clamp(0, 1).to(images.dtype)


def batch_seeds(seeds: SeedsLike, batch: int) -> List[SeedLike]:
    """One seed per image: a sequence of B seeds/generators, or an int → ``image_seed(i, seed)``."""
    if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
        return [image_seed(i, int(seeds)) for i in range(batch)]
    seeds = list(seeds)
    if len(seeds) != batch:
        raise ValueError(f"got {len(seeds)} seeds for a batch of {batch} images; give one per image")
    return seeds


def add_rain_torch(images: torch.Tensor, params: RainParams, seeds: SeedsLike) -> Tuple[torch.Tensor, torch.Tensor]:
    """Synthesise rain on a batch, on the images' device (CPU or CUDA).

    Image ``i`` gets exactly the draws of ``add_rain(image_i, params, seeds[i])``; see the module
    docstring for what agrees with the NumPy path.

    Args:
        images: (B, 3, H, W) float RGB in [0, 1].
        params: a :class:`RainParams`.
        seeds: one int / ``SeedSequence`` / numpy ``Generator`` per image, or one int ``s`` meaning
            ``image_seed(i, s)`` for the batch index ``i``.

    Returns:
        ``(rainy, streaks)``: (B, 3, H, W) in the images' dtype and (B, 1, H, W) float32 in [0, 1],
        with ``composite_torch(images, streaks, params) == rainy``.
    """
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"expected a (B, 3, H, W) float tensor, got {shape}; for one image use images[None]")
    if not images.is_floating_point():
        raise ValueError(f"expected float images in [0, 1], got {images.dtype}; use images.float() / 255")
    if not isinstance(params, RainParams):
        raise TypeError(f"params must be a RainParams (see rain_params()), got {type(params).__name__}")
    b, _, h, w = images.shape
    generators = [as_generator(s) for s in batch_seeds(seeds, b)]
    if params.is_identity:
        return images.clone(), images.new_zeros((b, 1, h, w), dtype=torch.float32)
    streaks = render_streaks_torch([sample_streaks(h, w, params, g) for g in generators], images.device)
    return composite_torch(images, streaks, params), streaks
