"""The streak layer: sparse noise smeared by oriented motion-blur kernels (NumPy).

Model (the Photoshop recipe behind Rain100L/H): sparse "drops" ``n(p)`` with random brightness,
convolved with a motion-blur kernel ``k`` — a line of a given length and width at a given angle,
Gaussian-softened — per rain layer: ``S = min(1, Σ_layers n_l ∗ k_l)``. Each layer draws a small
bank of kernels (angle, length and width jittered) and every drop uses one of them.

Exactness: kernels are quantised to integer weights (peak :data:`KERNEL_PEAK`) and drops to
integer values (peak :data:`VALUE_PEAK`), and the convolution of sparse noise is computed as a
scatter-add of kernel copies, so the accumulated layer is an exact integer whatever the order of
summation. That makes the layer bit-identical across machines, thread counts and backends
(the torch path's ``index_add_`` on CPU or CUDA gives the same bits).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Tuple

import cv2
import numpy as np

from .params import RainParams

#: Integer weight of a kernel's brightest tap.
KERNEL_PEAK = 255
#: Integer value of a drop of brightness 1.
VALUE_PEAK = 255
#: Accumulator units → intensity in [0, 1].
SCALE = np.float32(1.0 / (KERNEL_PEAK * VALUE_PEAK))
#: Taps below this integer weight are dropped (under 1 % of the peak).
MIN_TAP = 2


def streak_kernel(
    length: float,
    width: float,
    angle: float,
    soften: float = 0.5,
    taper: float = 0.0,
    offset: Tuple[float, float] = (0.0, 0.0),
) -> np.ndarray:
    """Motion-blur kernel of one streak: an antialiased line with tapered ends, Gaussian-softened, peak 1.

    Pixel (u, v) relative to the centre (shifted by the sub-pixel ``offset`` (dx, dy)) has along-
    and across-line coordinates ``a = u·sinθ − v·cosθ``, ``d = u·cosθ + v·sinθ`` and weight
    ``clip((length/2 + ½ − |a|) / r, 0, 1) · clip(width/2 + ½ − |d|, 0, 1)`` with the end ramp
    ``r = max(1, taper·length/2)``, then a Gaussian of sigma ``soften`` and division by the maximum.

    Args:
        length, width: px. angle: degrees from vertical, positive leans the top right.
        soften: Gaussian sigma, px (0 = crisp). taper: fraction of each half-length that fades
            (0 = square ends, 1 = a triangle). offset: sub-pixel shift (dx, dy) in px.

    Returns:
        (2·hy+1, 2·hx+1) float32 in [0, 1]; the centre pixel is the drop's position.
    """
    theta = math.radians(angle)
    s, c = math.sin(theta), math.cos(theta)
    margin = width / 2 + 3 * soften + 2
    hx = int(math.ceil(abs(s) * length / 2 + abs(c) * margin))
    hy = int(math.ceil(abs(c) * length / 2 + abs(s) * margin))
    u = np.arange(-hx, hx + 1, dtype=np.float64)[None, :] - offset[0]
    v = np.arange(-hy, hy + 1, dtype=np.float64)[:, None] - offset[1]
    ramp = max(1.0, taper * length / 2)
    along = np.clip((length / 2 + 0.5 - np.abs(u * s - v * c)) / ramp, 0.0, 1.0)
    across = np.clip(width / 2 + 0.5 - np.abs(u * c + v * s), 0.0, 1.0)
    kernel = along * across
    if soften > 0:
        kernel = cv2.GaussianBlur(kernel, (0, 0), soften, borderType=cv2.BORDER_CONSTANT)
    peak = kernel.max()
    return (kernel / peak).astype(np.float32) if peak > 0 else kernel.astype(np.float32)


@dataclass(frozen=True)
class Taps:
    """Non-zero taps of an integer kernel: offsets (dy, dx) from the drop and weights (int32)."""

    dy: np.ndarray
    dx: np.ndarray
    weight: np.ndarray


def kernel_taps(kernel: np.ndarray) -> Taps:
    """Quantise a peak-1 kernel to integer weights ``rint(k·KERNEL_PEAK)`` and keep taps >= MIN_TAP."""
    weights = np.rint(kernel.astype(np.float64) * KERNEL_PEAK).astype(np.int32)
    ys, xs = np.nonzero(weights >= MIN_TAP)
    cy, cx = kernel.shape[0] // 2, kernel.shape[1] // 2
    return Taps((ys - cy).astype(np.int32), (xs - cx).astype(np.int32), weights[ys, xs])


@dataclass(frozen=True)
class StreakSample:
    """All random draws of one image's streak layer (the input of the renderers).

    Drops ``i`` sit at (y[i], x[i]) in image pixels (they may lie up to ``pad`` outside, so streaks
    enter from the borders), have integer brightness ``value[i]`` in 1..VALUE_PEAK and are smeared
    by ``taps[kernel_id[i]]``.
    """

    height: int
    width: int
    pad: int
    taps: List[Taps]
    kernel_id: np.ndarray
    y: np.ndarray
    x: np.ndarray
    value: np.ndarray

    @property
    def num_streaks(self) -> int:
        return int(self.y.size)


def _uniform(u: np.ndarray, low: float, high: float) -> np.ndarray:
    return low + (high - low) * u


def sample_streaks(height: int, width: int, params: RainParams, rng: np.random.Generator) -> StreakSample:
    """Draw one image's streaks: directions, kernel bank, drop positions and brightness.

    Three child streams are seeded from ``rng`` (three ``integers`` draws): the image stream
    gives the angle offset, the density factor, then one direction offset per layer; the kernel
    stream gives per kernel its angle jitter, length and width factors and sub-pixel offset (every
    layer turns this same bank to its own direction); the drop stream gives per drop its kernel,
    row, column, brightness and layer. Every draw is a uniform in [0, 1) mapped to its range, so
    raising a field (denser, longer, brighter) moves each streak continuously and only adds
    drops: for a fixed seed the rain grows monotonically with ``intensity``. The number of drops
    is ``rint(density · factor · (H + 2·pad)(W + 2·pad) / 10⁴)``, pad = the largest kernel radius.
    """
    p = params
    image_rng, kernel_rng, drop_rng = (np.random.Generator(np.random.PCG64(int(s))) for s in rng.integers(0, 2**63, size=3))
    u_angle, u_density = image_rng.random(2)
    base = p.angle + _uniform(u_angle, -p.angle_range, p.angle_range)
    factor = 1.0 + _uniform(u_density, -p.density_jitter, p.density_jitter)
    layer_angle = base + _uniform(image_rng.random(p.layers), -p.layer_spread, p.layer_spread)
    u = kernel_rng.random((p.kernels, 5))
    angle_jitter = _uniform(u[:, 0], -p.angle_jitter, p.angle_jitter)
    lengths = p.length * (1.0 + _uniform(u[:, 1], -p.length_jitter, p.length_jitter))
    widths = p.width * (1.0 + _uniform(u[:, 2], -p.width_jitter, p.width_jitter))
    taps = [
        kernel_taps(streak_kernel(lengths[j], widths[j], layer_angle[i] + angle_jitter[j], p.soften, p.taper, (u[j, 3] - 0.5, u[j, 4] - 0.5)))
        for i in range(p.layers)
        for j in range(p.kernels)
    ]
    pad = max(max(int(np.abs(t.dy).max(initial=0)), int(np.abs(t.dx).max(initial=0))) for t in taps)
    area = (height + 2 * pad) * (width + 2 * pad)
    count = int(np.rint(p.density * factor * area / 1e4)) if p.brightness > 0 else 0
    d = drop_rng.random((count, 5))
    layer_id = np.minimum(d[:, 4] * p.layers, p.layers - 1).astype(np.int32)
    kernel_id = layer_id * p.kernels + np.minimum(d[:, 0] * p.kernels, p.kernels - 1).astype(np.int32)
    y = (np.floor(d[:, 1] * (height + 2 * pad)) - pad).astype(np.int32)
    x = (np.floor(d[:, 2] * (width + 2 * pad)) - pad).astype(np.int32)
    spread = _uniform(d[:, 3], -p.brightness_jitter, p.brightness_jitter)
    value = np.clip(np.rint(VALUE_PEAK * p.brightness * (1.0 + spread)), 1, VALUE_PEAK).astype(np.int32)
    return StreakSample(height, width, pad, taps, kernel_id, y, x, value)


def canvas_margin(sample: StreakSample) -> int:
    """Margin of the scatter canvas: drops lie up to ``pad`` outside the image, taps ``pad`` further."""
    return 2 * sample.pad


def scatter_indices(sample: StreakSample) -> Tuple[np.ndarray, np.ndarray]:
    """Flat indices into the canvas ``(H + 2·m, W + 2·m)`` (m = :func:`canvas_margin`) and integer weights of every tap."""
    m = canvas_margin(sample)
    wp = sample.width + 2 * m
    base = (sample.y.astype(np.int64) + m) * wp + (sample.x.astype(np.int64) + m)
    order = np.argsort(sample.kernel_id, kind="stable")
    counts = np.bincount(sample.kernel_id, minlength=len(sample.taps))
    index, weight, start = [], [], 0
    for taps, n in zip(sample.taps, counts):
        chosen = order[start : start + n]
        start += n
        if n == 0 or taps.weight.size == 0:
            continue
        offset = taps.dy.astype(np.int64) * wp + taps.dx
        index.append((base[chosen, None] + offset[None, :]).ravel())
        weight.append((sample.value[chosen, None].astype(np.float64) * taps.weight[None, :]).ravel())
    if not index:
        return np.zeros(0, np.int64), np.zeros(0, np.float64)
    return np.concatenate(index), np.concatenate(weight)


def render_streaks(sample: StreakSample) -> np.ndarray:
    """The streak layer ``S`` of a sample: (H, W) float32 in [0, 1], exact (see module docstring)."""
    h, w, m = sample.height, sample.width, canvas_margin(sample)
    index, weight = scatter_indices(sample)
    if index.size == 0:
        return np.zeros((h, w), np.float32)
    acc = np.bincount(index, weights=weight, minlength=(h + 2 * m) * (w + 2 * m))
    acc = acc.reshape(h + 2 * m, w + 2 * m)[m : m + h, m : m + w]
    return np.minimum(acc.astype(np.float32) * SCALE, np.float32(1.0))
