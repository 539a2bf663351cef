"""``garg_nayar``: physically based rain streaks after Garg & Nayar.

Sources: K. Garg, S. K. Nayar, "Photorealistic rendering of rain streaks" (SIGGRAPH 2006) and
"Vision and rain" (IJCV 2007; CVPR 2004 "Detection and removal of rain from videos").

Model, per image (drops fall through the view frustum of a pinhole camera, focal ``f`` px):

* rain rate ``R = 2.5·(4·intensity)^2.5`` mm/h (light 2.5, medium 14, heavy 39, storm 80);
* drop diameters from Marshall–Palmer ``N(D) = N0·exp(−Λ·D)``, ``N0 = 8000 m⁻³mm⁻¹``,
  ``Λ = 4.1·R^−0.21 mm⁻¹``, D in [0.5, 6] mm; the number of drops in the frustum between
  ``near`` and ``far`` is ``∫N(D)dD · volume`` (depths uniform in volume, so far drops dominate);
* terminal velocity (Atlas et al. 1973) ``v = 9.65 − 10.3·exp(−0.6·D)`` m/s;
* a drop at depth z draws a streak of length ``f·(v·T + D)/z`` px (T = exposure) and width
  ``f·D/z`` px, tilted by the wind angle; it covers a pixel for ``τ = D/v`` of the exposure, so
  its opacity is ``visibility · τ/T · min(1, width)`` (``visibility``, default 10, is a calibration
  gain — camera tone curves and sensor response — set so that intensity 0.25 / 0.75 give about
  Rain100L's / Rain100H's PSNR-Y, 26.6 / 15.8 dB on COCO128 at 480 px);
* drops out of the depth of field are defocused: Gaussian of std ≈ blur-circle/4,
  blur circle ``aperture·f·|1/z − 1/focus|`` px (energy kept, so near streaks are long, wide,
  faint and soft, far ones fine and dense);
* a drop refracts a wide field of view: its radiance ``E`` is a blurred average of the scene
  around it, lifted towards the bright sky (``lift``), plus a small specular term — streaks take
  the scene's colour;
* compositing is in (gamma-2) linear light: ``O² = (1 − α)·B² + α·E²`` with α the streak opacity
  layer, then the rain's own extinction veils the scene: visibility ``V ≈ 11.2·R^−0.67`` km gives
  ``t = exp(−3.912·scene_depth/V)`` and ``O² ← O²·t + A²·(1 − t)``.

The opacity layer uses the exact integer streak renderer of :mod:`taskderain.rain.streaks`
(a bank of kernels over depth × diameter bins). Geometry is drawn with NumPy; the torch path
moves the opacity layer to the images' device and does the same float32 maths (differentiable).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch

from ..streaks import VALUE_PEAK, StreakSample, kernel_taps, render_streaks, streak_kernel
from .base import RainModel
from .ops import as_float32, box_blur, box_blur_torch, child_generators, frame_side, like
from .registry import register_rain
from .validate import check_fields, check_range

#: Marshall–Palmer intercept, m⁻³ mm⁻¹.
N0 = 8000.0
#: Diameter bins of the kernel bank, mm (their ends are the rendered range).
D_EDGES = np.array([0.5, 1.0, 1.6, 2.5, 6.0])
#: Depth bins of the kernel bank (log-spaced between near and far).
Z_BINS = 8
#: Opacity of a drop value of VALUE_PEAK (the layer's full scale).
A_REF = 0.5
#: Std of the environment blur, fraction of the long side.
ENV_SIGMA = 0.06
#: Airlight of the rain veil (display units).
AIRLIGHT = 0.8
EPS = 1e-12


def rain_rate(intensity: float) -> float:
    """Rain rate in mm/h for ``intensity`` in [0, 1]: ``2.5·(4·intensity)^2.5``."""
    return 2.5 * (4.0 * intensity) ** 2.5


def mp_slope(rate: float) -> float:
    """Marshall–Palmer slope ``Λ = 4.1·R^−0.21`` in mm⁻¹ for rain rate R in mm/h."""
    return 4.1 * rate ** -0.21


def terminal_velocity(diameter: np.ndarray) -> np.ndarray:
    """Atlas et al. terminal velocity in m/s of drops of ``diameter`` mm."""
    return 9.65 - 10.3 * np.exp(-0.6 * np.asarray(diameter, np.float64))


def number_density(rate: float) -> float:
    """Drops per m³ with D in [0.5, 6] mm under Marshall–Palmer at rate R mm/h."""
    lam = mp_slope(rate)
    return N0 / lam * (math.exp(-lam * D_EDGES[0]) - math.exp(-lam * D_EDGES[-1]))


@dataclass(frozen=True)
class GargNayarParams:
    """Parameters of ``garg_nayar`` (lengths in metres unless stated).

    Attributes:
        intensity: in [0, 1]; sets the rain rate (see module docstring).
        angle: wind tilt of the streaks, degrees from vertical. angle_range: per-image ± offset.
        scale: factor on the exposure time (streak length).
        exposure: exposure time T, s. focal: focal length in units of the frame's long side.
        near, far: depth range of rendered drops. focus: focus distance. aperture: lens aperture, mm.
        density: factor on the Marshall–Palmer number density.
        visibility: gain on the time-fraction opacity τ/T. lift: pull of the drop radiance towards
            white (sky light gathered by refraction), in [0, 1]. specular: added drop radiance.
        scene_depth: distance of the scene veiled by the rain's extinction (0 = no veil).
        frame: long side (px) of the full frame the image is cut from (None = the image itself);
            give it when raining crops (e.g. 96 px training patches) so the rain keeps the frame's scale.
    """

    intensity: float = 0.5
    angle: float = 0.0
    angle_range: float = 10.0
    scale: float = 1.0
    exposure: float = 1 / 125
    focal: float = 1.0
    near: float = 0.3
    far: float = 4.0
    focus: float = 6.0
    aperture: float = 4.0
    density: float = 1.0
    visibility: float = 10.0
    lift: float = 0.5
    specular: float = 0.04
    scene_depth: float = 80.0
    frame: Optional[float] = None

    def __post_init__(self) -> None:
        check_fields(self, {"exposure": (1e-4, 0.1), "focal": (0.2, 5), "near": (0.05, 10), "focus": (0.1, float("inf")),
                            "aperture": (0, 50), "density": (0, 10), "visibility": (0, 50), "lift": (0, 1),
                            "specular": (0, 1), "scene_depth": (0, 10000)})
        check_range(type(self).__name__, "far", self.far, self.near, 50)


@dataclass(frozen=True)
class GargNayarSample:
    """One image's draws: the streak opacity layer α (H, W) float32 in [0, A_REF] and the veil 1 − t."""

    opacity: np.ndarray
    haze: np.float32


def _kernel_bank(f: float, t: float, angle: float, p: GargNayarParams, jitter: np.ndarray, long_side: int):
    z_edges = np.geomspace(p.near, p.far, Z_BINS + 1)
    z_mid = np.sqrt(z_edges[:-1] * z_edges[1:])
    d_mid = np.sqrt(D_EDGES[:-1] * D_EDGES[1:])
    taps, energy = [], []
    for i, z in enumerate(z_mid):
        blur_circle = p.aperture * 1e-3 * f * abs(1 / z - 1 / p.focus)
        sigma = math.sqrt(0.5**2 + (blur_circle / 4) ** 2)
        for j, d in enumerate(d_mid):
            length = min(f * (float(terminal_velocity(d)) * t + d * 1e-3) / z, 0.5 * long_side)
            width = max(1.0, f * d * 1e-3 / z)
            a = angle + jitter[i * d_mid.size + j]
            soft = streak_kernel(length, width, a, sigma, 0.3)
            crisp = streak_kernel(length, width, a, 0.5, 0.3)
            taps.append(kernel_taps(soft))
            energy.append(float(crisp.sum() / soft.sum()))
    return z_edges, taps, np.array(energy)


def sample_garg_nayar(height: int, width: int, params: GargNayarParams, rng: np.random.Generator) -> GargNayarSample:
    """Draw the drops of one (height, width) image and render their opacity layer (NumPy, exact).

    Three child streams from ``rng``: image (wind angle), kernels (per-bin turbulence ±3°), drops
    (per drop: diameter, depth, row, column — the first n rows do not depend on n, so more rain
    only adds drops).
    """
    p = params
    image_rng, kernel_rng, drop_rng = child_generators(rng, 3)
    rate = rain_rate(p.intensity)
    lam = mp_slope(rate)
    side = frame_side(height, width, p.frame)
    f = p.focal * side
    t = p.exposure * p.scale
    angle = p.angle + p.angle_range * (2 * image_rng.random() - 1)
    jitter = 3.0 * (2 * kernel_rng.random(Z_BINS * (D_EDGES.size - 1)) - 1)
    z_edges, taps, energy = _kernel_bank(f, t, angle, p, jitter, side)
    pad = max(max(int(np.abs(k.dy).max(initial=0)), int(np.abs(k.dx).max(initial=0))) for k in taps)
    volume = height * width / f**2 * (p.far**3 - p.near**3) / 3
    area_factor = (height + 2 * pad) * (width + 2 * pad) / (height * width)
    count = int(np.rint(number_density(rate) * p.density * volume * area_factor))
    u = drop_rng.random((count, 4))
    span = 1 - math.exp(-lam * (D_EDGES[-1] - D_EDGES[0]))
    d = D_EDGES[0] - np.log1p(-u[:, 0] * span) / lam
    z = np.cbrt(p.near**3 + u[:, 1] * (p.far**3 - p.near**3))
    y = (np.floor(u[:, 2] * (height + 2 * pad)) - pad).astype(np.int32)
    x = (np.floor(u[:, 3] * (width + 2 * pad)) - pad).astype(np.int32)
    zi = np.clip(np.searchsorted(z_edges, z) - 1, 0, Z_BINS - 1)
    di = np.clip(np.searchsorted(D_EDGES, d) - 1, 0, D_EDGES.size - 2)
    kernel_id = (zi * (D_EDGES.size - 1) + di).astype(np.int32)
    coverage = np.minimum(1.0, f * d * 1e-3 / z)
    alpha = p.visibility * (d * 1e-3) / (terminal_velocity(d) * t) * coverage * energy[kernel_id]
    value = np.clip(np.rint(alpha / A_REF * VALUE_PEAK), 0, VALUE_PEAK).astype(np.int32)
    keep = value > 0
    sample = StreakSample(height, width, pad, taps, kernel_id[keep], y[keep], x[keep], value[keep])
    opacity = render_streaks(sample) * np.float32(A_REF)
    visibility_km = 11.2 * rate ** -0.67
    haze = 1 - math.exp(-3.912 * p.scene_depth / (1000 * visibility_km))
    return GargNayarSample(opacity.astype(np.float32), np.float32(haze))


def _drop_radiance(x: np.ndarray, p: GargNayarParams) -> np.ndarray:
    env = box_blur(x, ENV_SIGMA * frame_side(x.shape[0], x.shape[1], p.frame))
    return np.minimum(env + (1 - env) * np.float32(p.lift) + np.float32(p.specular), np.float32(1))


def garg_nayar_rain(image: np.ndarray, params: GargNayarParams, rng: np.random.Generator) -> np.ndarray:
    """Garg–Nayar rain on one (H, W, 3) RGB image, uint8 or float in [0, 1]; same shape and dtype."""
    if params.intensity == 0:
        return image.copy()
    x = as_float32(image)
    s = sample_garg_nayar(x.shape[0], x.shape[1], params, rng)
    e = _drop_radiance(x, params)
    a = s.opacity[:, :, None]
    b2, e2 = x * x, e * e
    o2 = b2 + (e2 - b2) * a
    o2 = o2 * (np.float32(1) - s.haze) + np.float32(AIRLIGHT * AIRLIGHT) * s.haze
    return like(np.sqrt(np.maximum(o2, np.float32(EPS))), image)


def garg_nayar_rain_torch(images: torch.Tensor, params: GargNayarParams, generators: Sequence[np.random.Generator]) -> torch.Tensor:
    """Torch twin of :func:`garg_nayar_rain` for (B, 3, H, W) float32 in [0, 1]; differentiable."""
    if params.intensity == 0:
        return images.clone()
    h, w = images.shape[-2:]
    samples = [sample_garg_nayar(h, w, params, g) for g in generators]
    a = torch.from_numpy(np.stack([s.opacity for s in samples])[:, None]).to(images.device)
    haze = torch.tensor([float(s.haze) for s in samples], device=images.device).view(-1, 1, 1, 1)
    env = box_blur_torch(images, ENV_SIGMA * frame_side(h, w, params.frame))
    e = torch.clamp_max(env + (1 - env) * float(np.float32(params.lift)) + float(np.float32(params.specular)), 1.0)
    b2, e2 = images * images, e * e
    o2 = b2 + (e2 - b2) * a
    o2 = o2 * (1 - haze) + float(np.float32(AIRLIGHT * AIRLIGHT)) * haze
    return torch.sqrt(o2.clamp_min(EPS)).clamp(0, 1)


@register_rain("garg_nayar")
class GargNayar(RainModel):
    """Physically based streaks (Garg & Nayar 2006): Marshall–Palmer drops, depth, defocus, refraction."""

    Params = GargNayarParams

    def _rain(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return garg_nayar_rain(image, self.params, rng)

    def _rain_torch(self, images: torch.Tensor, generators: Sequence[np.random.Generator]) -> torch.Tensor:
        return garg_nayar_rain_torch(images, self.params, generators)
