"""``drizzle``: drizzle and mist — a fine, dense, faint streak texture, a mist veil, ground splashes.

Drizzle is rain of small drops (D < 0.5 mm) falling slowly (v < 2 m/s, see Atlas et al. in
:mod:`~taskderain.rain.zoo.garg_nayar`): in a photograph they are very short, thin, faint and
numerous streaks, the many drops too far or too small to resolve form a mist (a veil,
Koschmieder ``I = J·t + A·(1 − t)``, as in the haze models of Rain100H / Yang et al. 2017), and
drops landing on the ground throw up small crowns (cf. the splash layer of Garg & Nayar,
"Photorealistic rendering of rain streaks", 2006).

Model, per image (sizes for a 640 px long side, scaled with the image):

* streaks: :func:`taskderain.rain.sample_streaks` with density ``150 + 350·intensity`` per
  100×100 px, length ``(4 + 5·intensity)·scale`` px, width 0.8 px, brightness
  ``(0.03 + 0.04·intensity)·brightness``, two layers around the wind angle, added:
  ``J = min(1, blur(B) + S)`` (in small frames, where sizes reach their floor, fewer streaks);
* splashes: ``(0.15 + 0.5·intensity)·splash`` per 100×100 px, rows drawn with density ∝ y²
  (most near the bottom of the frame, where the ground is), each a thin elliptical ring raised
  above the impact point (the crown's rim, brighter at the front), a spot at the impact and a
  few droplets thrown above, screened on: ``J ← J + K·(1 − J)``;
* mist: ``t = 1 − 0.3·mist·intensity^1.2·(0.75 + 0.5·field)`` with a smooth random field, airlight
  a light grey, and a slight background blur (std ``0.5·intensity`` px).

Geometry (S, K, t, A) is drawn with NumPy; the torch path does the same float32 maths.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch

from ..params import RainParams
from ..streaks import render_streaks, sample_streaks
from .base import RainModel
from .ops import as_float32, child_generators, frame_side, gaussian_blur, gaussian_blur_torch, like, quantize, smooth_field
from .registry import register_rain
from .validate import check_fields

#: Long side (px) the sizes are given for.
REF_SIDE = 640.0


@dataclass(frozen=True)
class DrizzleParams:
    """Parameters of ``drizzle``.

    Attributes:
        intensity: in [0, 1]. angle: wind, degrees from vertical. angle_range: per-image ± offset.
        scale: factor on the streak length. brightness: factor on the streak brightness.
        mist: factor on the mist veil. splash: factor on the number of splashes.
        frame: long side (px) of the full frame the image is cut from (None = the image itself);
            give it when raining crops (e.g. 96 px training patches) so the rain keeps the frame's scale.
    """

    intensity: float = 0.5
    angle: float = 0.0
    angle_range: float = 15.0
    scale: float = 1.0
    brightness: float = 1.0
    mist: float = 1.0
    splash: float = 1.0
    frame: Optional[float] = None

    def __post_init__(self) -> None:
        check_fields(self, {"brightness": (0, 5), "mist": (0, 3), "splash": (0, 20)})


@dataclass(frozen=True)
class DrizzleSample:
    """One image's draws: streaks (H, W, 1), splashes (H, W, 1), transmission (H, W, 1), airlight (3,), blur std."""

    streaks: np.ndarray
    splashes: np.ndarray
    transmission: np.ndarray
    airlight: np.ndarray
    sigma: float


def streak_params(p: DrizzleParams, res: float, angle: float) -> RainParams:
    """The fine streak texture as :class:`RainParams` (two layers around ``angle``)."""
    i = p.intensity
    length, width = p.scale * res * (4.0 + 5.0 * i), 0.8 * res
    ink = length * width / (max(2.0, length) * max(0.6, width))   # keeps the covered area when sizes hit their floor
    return RainParams(
        density=(150.0 + 350.0 * i) / res**2 * ink, density_jitter=0.2,
        length=max(2.0, length), length_jitter=0.4, width=max(0.6, width), width_jitter=0.2,
        brightness=min(1.0, p.brightness * (0.03 + 0.04 * i)), brightness_jitter=0.6,
        angle=angle, angle_jitter=2.0, layers=2, layer_spread=6.0, kernels=10, soften=0.5, taper=0.5,
    )


def splash_layer(height: int, width: int, p: DrizzleParams, res: float, rng: np.random.Generator) -> np.ndarray:
    """Ground splashes: (H, W) float64 in [0, 1]; 12 uniforms per splash (first n rows independent of n)."""
    count = int(np.rint(p.splash * (0.15 + 0.5 * p.intensity) * height * width / (1e4 * res**2)))
    u = rng.random((count, 12))
    layer = np.zeros((height, width))
    for k in range(count):
        cy, cx = height * u[k, 0] ** (1 / 3), width * u[k, 1]
        r = res * (2.0 + 4.0 * u[k, 2])
        bright = 0.35 + 0.4 * u[k, 3]
        reach = int(np.ceil(2.2 * r)) + 2
        y0, y1 = max(0, int(cy) - reach), min(height, int(cy) + reach // 2 + 2)
        x0, x1 = max(0, int(cx) - reach), min(width, int(cx) + reach + 1)
        if y0 >= y1 or x0 >= x1:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1] + 0.5
        dx, dy = xx - cx, yy - cy
        thick = max(0.9, 0.3 * r)
        rim_y = cy - 0.5 * r
        rho = np.sqrt((dx / r) ** 2 + ((yy - rim_y) / (0.4 * r)) ** 2)
        front = 0.6 + 0.4 * (yy >= rim_y)
        crown = front * np.maximum(0.0, 1.0 - ((rho - 1.0) * r / thick) ** 2)
        spot = np.maximum(0.0, 1.0 - (dx * dx + dy * dy) / (0.35 * r + 0.5) ** 2) ** 2
        value = np.maximum(crown, 0.8 * spot)
        for j in range(4):
            ox, oy = cx + 2.4 * r * (u[k, 4 + 2 * j] - 0.5), rim_y - r * (0.4 + 1.0 * u[k, 5 + 2 * j])
            rd = max(0.7, 0.5 * res)
            value = np.maximum(value, 0.8 * np.maximum(0.0, 1.0 - ((xx - ox) ** 2 + (yy - oy) ** 2) / rd**2) ** 2)
        layer[y0:y1, x0:x1] = np.maximum(layer[y0:y1, x0:x1], bright * value)
    return layer


def sample_drizzle(height: int, width: int, params: DrizzleParams, rng: np.random.Generator) -> DrizzleSample:
    """Draw one image's streak texture, splashes, mist and airlight (NumPy; child streams of ``rng``)."""
    p = params
    image_rng, streak_rng, splash_rng, mist_rng = child_generators(rng, 4)
    res = frame_side(height, width, p.frame) / REF_SIDE
    u = image_rng.random(2)
    angle = p.angle + p.angle_range * (2 * u[0] - 1)
    streaks = render_streaks(sample_streaks(height, width, streak_params(p, res, angle), streak_rng))
    splashes = splash_layer(height, width, p, res, splash_rng)
    field = smooth_field(height, width, (2, 3), mist_rng)
    transmission = 1.0 - 0.3 * p.mist * p.intensity**1.2 * (0.75 + 0.5 * field)
    grey = 0.82 + 0.04 * (2 * u[1] - 1)
    return DrizzleSample(streaks[:, :, None], quantize(splashes)[:, :, None], quantize(transmission)[:, :, None],
                         quantize(np.array([grey - 0.01, grey, grey + 0.01])), float(0.5 * p.intensity * res))


def drizzle_rain(image: np.ndarray, params: DrizzleParams, rng: np.random.Generator) -> np.ndarray:
    """Drizzle on one (H, W, 3) RGB image, uint8 or float in [0, 1]; same shape and dtype."""
    if params.intensity == 0:
        return image.copy()
    x = as_float32(image)
    s = sample_drizzle(x.shape[0], x.shape[1], params, rng)
    y = np.minimum(gaussian_blur(x, s.sigma) + s.streaks, np.float32(1))
    y = y + s.splashes * (1 - y)
    return like(y * s.transmission + (1 - s.transmission) * s.airlight, image)


def drizzle_rain_torch(images: torch.Tensor, params: DrizzleParams, generators: Sequence[np.random.Generator]) -> torch.Tensor:
    """Torch twin of :func:`drizzle_rain` for (B, 3, H, W) float32 in [0, 1]; differentiable."""
    if params.intensity == 0:
        return images.clone()
    h, w = images.shape[-2:]
    samples = [sample_drizzle(h, w, params, g) for g in generators]
    dev = images.device

    def stack(name: str) -> torch.Tensor:
        return torch.from_numpy(np.stack([getattr(s, name)[:, :, 0] for s in samples])[:, None]).to(dev)

    streaks, splashes, t = stack("streaks"), stack("splashes"), stack("transmission")
    air = torch.from_numpy(np.stack([s.airlight for s in samples])).to(dev).view(-1, 3, 1, 1)
    y = (gaussian_blur_torch(images, samples[0].sigma) + streaks).clamp_max(1.0)
    y = y + splashes * (1 - y)
    return (y * t + (1 - t) * air).clamp(0, 1)


@register_rain("drizzle")
class Drizzle(RainModel):
    """Drizzle and mist: a fine, dense, faint streak texture, a mist veil and ground splashes."""

    Params = DrizzleParams

    def _rain(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return drizzle_rain(image, self.params, rng)

    def _rain_torch(self, images: torch.Tensor, generators: Sequence[np.random.Generator]) -> torch.Tensor:
        return drizzle_rain_torch(images, self.params, generators)
