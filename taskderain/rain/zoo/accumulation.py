"""``accumulation``: heavy rain with accumulation and depth-aware fog.

Sources: W. Yang et al., "Deep joint rain detection and removal from a single image" (JORDER,
CVPR 2017) for the heavy-rain model ``O = α ⊙ (B + Σ_t S_t) + (1 − α)·A``; X. Hu et al.,
"Depth-attentional features for single-image rain removal" (RainCityscapes, CVPR 2019) for making
rain and fog depend on scene depth.

Model, per image with a depth proxy ``d`` in [0, 1] (0 near): ``d`` falls from the top of the
frame (far) to the bottom (near) plus a smooth low-frequency random field.

* ``T`` streak layers (2 + round(3·intensity)) at depths ``z_t = (t + ½)/T``: near layers long,
  wide, bright, soft and sparse; far ones short, fine, faint and dense; each drawn with the exact
  streak renderer of :mod:`taskderain.rain.streaks` with its own direction around the wind angle;
* depth-aware rain: layer t shows only where the scene lies behind it,
  ``S = Σ_t smoothstep((d − 0.7·z_t)/0.12) · S_t``;
* rain accumulation as a veil with transmission ``α = exp(−β·d)``, ``β = 1.5·veil·intensity^1.5``,
  airlight ``A`` a bright cool grey; light scattering also blurs the background
  (Gaussian, std ``1.2·blur·intensity`` px at 640 px);
* ``O = clip(α ⊙ (blur(B) + S) + (1 − α)·A, 0, 1)``.

Sizes are given for a 640 px long side and scale with the image. Geometry (S, α, A) is drawn
with NumPy; the torch path moves it to the images' device and does the same float32 maths
(differentiable in the images).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch

from ..params import RainParams
from ..streaks import render_streaks, sample_streaks
from .base import RainModel
from .ops import as_float32, child_generators, frame_side, gaussian_blur, gaussian_blur_torch, like, quantize, smooth_field, smoothstep
from .registry import register_rain
from .validate import check_fields

#: Long side (px) the sizes are given for.
REF_SIDE = 640.0


@dataclass(frozen=True)
class AccumulationParams:
    """Parameters of ``accumulation``.

    Attributes:
        intensity: in [0, 1] (0.75 ≈ Rain100H-like heavy rain).
        angle: wind, degrees from vertical. angle_range: per-image ± offset, degrees.
        scale: factor on the streak lengths.
        layers: number of streak layers (0 = 2 + round(3·intensity)).
        veil: factor on the extinction β of the accumulation veil (0 = none).
        streak: factor on the streak brightness.
        airlight: grey level of the veil, in [0, 1].
        blur: factor on the background blur.
        frame: long side (px) of the full frame the image is cut from (None = the image itself);
            give it when raining crops (e.g. 96 px training patches) so the rain keeps the frame's scale.
    """

    intensity: float = 0.5
    angle: float = 0.0
    angle_range: float = 20.0
    scale: float = 1.0
    layers: int = 0
    veil: float = 1.0
    streak: float = 1.0
    airlight: float = 0.85
    blur: float = 1.0
    frame: Optional[float] = None

    def __post_init__(self) -> None:
        check_fields(self, {"veil": (0, 10), "streak": (0, 5), "airlight": (0, 1), "blur": (0, 10)})
        if isinstance(self.layers, bool) or not isinstance(self.layers, int) or not 0 <= self.layers <= 8:
            raise ValueError(f"AccumulationParams.layers must be an int in 0..8 (0 = from intensity), got {self.layers!r}")


@dataclass(frozen=True)
class AccumulationSample:
    """One image's draws: streaks S (H, W, 1), transmission α (H, W, 1), airlight A (3,), blur std (px)."""

    streaks: np.ndarray
    alpha: np.ndarray
    airlight: np.ndarray
    sigma: float


def depth_proxy(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Depth proxy in [0, 1] (1 far): rows (top far) + a 3x4-cell smooth random field; (H, W) float64."""
    rows = 1.0 - (np.arange(height) + 0.5) / height
    field = smooth_field(height, width, (3, 4), rng)
    return np.clip(0.08 + 0.8 * rows[:, None] ** 0.9 + 0.35 * (field - 0.5), 0.0, 1.0)


def layer_params(t: int, layers: int, p: AccumulationParams, res: float, angle: float) -> RainParams:
    """The :class:`RainParams` of streak layer t of ``layers`` (depth ``z = (t + ½)/layers``)."""
    i, z = p.intensity, (t + 0.5) / layers
    share = (0.6 + 0.8 * z) / sum(0.6 + 0.8 * (k + 0.5) / layers for k in range(layers))
    length = p.scale * res * (75.0 - 55.0 * z) * (0.6 + 0.4 * i)
    width = res * (3.4 - 2.4 * z) * (0.7 + 0.3 * i)
    ink = length * width / (max(2.0, length) * max(0.8, width))   # keeps the covered area when sizes hit their floor
    return RainParams(
        density=(6.0 + 46.0 * i) * share / res**2 * ink, density_jitter=0.15,
        length=max(2.0, length), length_jitter=0.35, width=max(0.8, width), width_jitter=0.3,
        brightness=min(1.0, p.streak * (0.16 + 0.3 * i) * (1.0 - 0.45 * z)), brightness_jitter=0.6,
        angle=angle, angle_jitter=3.0, layers=1, kernels=8,
        soften=max(0.4, res * (1.3 - 0.9 * z)), taper=0.45,
    )


def sample_accumulation(height: int, width: int, params: AccumulationParams, rng: np.random.Generator) -> AccumulationSample:
    """Draw one image's streak layers, depth proxy, veil and airlight (NumPy; child streams of ``rng``)."""
    p = params
    image_rng, depth_rng, *layer_rngs = child_generators(rng, 10)
    layers = p.layers or 2 + int(round(3 * p.intensity))
    res = frame_side(height, width, p.frame) / REF_SIDE
    u = image_rng.random(3 + layers)
    angle = p.angle + p.angle_range * (2 * u[0] - 1)
    d = depth_proxy(height, width, depth_rng)
    total = np.zeros((height, width), np.float64)
    for t in range(layers):
        lp = layer_params(t, layers, p, res, angle + 8.0 * (2 * u[3 + t] - 1))
        s = render_streaks(sample_streaks(height, width, lp, layer_rngs[t % len(layer_rngs)]))
        total += smoothstep((d - 0.7 * (t + 0.5) / layers) / 0.12) * s
    alpha = np.exp(-1.5 * p.veil * p.intensity**1.5 * d)
    grey = p.airlight + 0.05 * (2 * u[1] - 1)
    airlight = np.clip(np.array([grey - 0.015, grey, grey + 0.02]) * (1 + 0.02 * (2 * u[2] - 1)), 0, 1)
    return AccumulationSample(quantize(np.minimum(total, 1.0))[:, :, None], quantize(alpha)[:, :, None], quantize(airlight),
                       float(1.2 * p.blur * p.intensity * res))


def accumulation_rain(image: np.ndarray, params: AccumulationParams, rng: np.random.Generator) -> np.ndarray:
    """Heavy rain on one (H, W, 3) RGB image, uint8 or float in [0, 1]; same shape and dtype."""
    if params.intensity == 0:
        return image.copy()
    x = as_float32(image)
    s = sample_accumulation(x.shape[0], x.shape[1], params, rng)
    y = gaussian_blur(x, s.sigma) + s.streaks
    return like(y * s.alpha + (1 - s.alpha) * s.airlight, image)


def accumulation_rain_torch(images: torch.Tensor, params: AccumulationParams, generators: Sequence[np.random.Generator]) -> torch.Tensor:
    """Torch twin of :func:`accumulation_rain` for (B, 3, H, W) float32 in [0, 1]; differentiable."""
    if params.intensity == 0:
        return images.clone()
    h, w = images.shape[-2:]
    samples = [sample_accumulation(h, w, params, g) for g in generators]
    dev = images.device
    streaks = torch.from_numpy(np.stack([s.streaks[:, :, 0] for s in samples])[:, None]).to(dev)
    alpha = torch.from_numpy(np.stack([s.alpha[:, :, 0] for s in samples])[:, None]).to(dev)
    air = torch.from_numpy(np.stack([s.airlight for s in samples])).to(dev).view(-1, 3, 1, 1)
    y = gaussian_blur_torch(images, samples[0].sigma) + streaks
    return (y * alpha + (1 - alpha) * air).clamp(0, 1)


@register_rain("accumulation")
class Accumulation(RainModel):
    """Heavy rain with accumulation (JORDER 2017) and depth-aware streaks and fog (RainCityscapes 2019)."""

    Params = AccumulationParams

    def _rain(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return accumulation_rain(image, self.params, rng)

    def _rain_torch(self, images: torch.Tensor, generators: Sequence[np.random.Generator]) -> torch.Tensor:
        return accumulation_rain_torch(images, self.params, generators)
