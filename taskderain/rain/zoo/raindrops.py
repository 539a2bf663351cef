"""``raindrops``: adherent raindrops on a lens or windscreen.

Source: R. Qian et al., "Attentive generative adversarial network for raindrop removal from a
single image" (AttentiveGAN, CVPR 2018): ``I = (1 − M) ⊙ B + R``, with M the drop mask and R
the drops' own appearance. A drop stuck on glass in front of the lens is a small fish-eye lens:
it shows a flipped, wide-angle view of the scene around it, out of focus, with soft edges and a
dark rim where light is refracted out of the view (cf. Roser & Geiger 2009).

Model, per image:

* drops of radius ``r`` (0.9 %–6.4 % of the frame's long side × ``scale``, many small and few large),
  slightly elongated downwards by gravity and tilted; a third are merged blobs of 2–3 ellipses
  (metaballs ``F = Σ_j max(0, 1 − q_j)²``, q the ellipse's normalised squared distance);
  drops are added until they cover ``0.45·coverage·intensity^1.4`` of the frame;
* mask ``M = smoothstep(F / softness)`` (soft, defocused boundary); where drops overlap the
  one with the larger F wins;
* refraction: pixel p of a drop with centre c and radius ρ shows the background at
  ``c − fov·(p − c)·(1 + ¼·|p − c|²/ρ²)`` (flipped, ``fov``× wider, fish-eye), sampled
  bilinearly from the background blurred by a Gaussian of std ``0.75 %·blur`` of the long side,
  lifted towards white by ``lift`` (a drop gathers sky light);
* appearance ``R = M ⊙ (shade · view + highlight)``: shade darkens the rim by up to ``rim``,
  a small specular highlight sits at the upper left.

Geometry (M, shade, highlight and the sampling plan) is drawn with NumPy; the torch path moves it
to the images' device and does the same blur, gather and blend in float32 (differentiable).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np
import torch

from .base import RainModel
from .ops import (as_float32, bilinear_plan, frame_side, gather_bilinear, gather_bilinear_torch, gaussian_blur, gaussian_blur_torch, like,
                  quantize, smoothstep)
from .registry import register_rain
from .validate import check_fields

#: Most drops drawn per image (the draws do not depend on how many are used).
MAX_DROPS = 400
#: Radius range, fraction of the frame's long side.
R_MIN, R_MAX = 0.009, 0.064


@dataclass(frozen=True)
class RaindropsParams:
    """Parameters of ``raindrops``.

    Attributes:
        intensity: in [0, 1]; sets the covered fraction and (mildly) the drop size.
        scale: factor on the drop radii. coverage: factor on the covered fraction.
        fov: how many times wider than the drop the (flipped) region it shows is.
        blur: factor on the defocus of the refracted view. softness: edge width on F, in (0, 1].
        rim: rim darkening in [0, 1]. highlight: specular peak in [0, 1]. lift: pull towards white.
        frame: long side (px) of the full frame the image is cut from (None = the image itself);
            give it when raining crops (e.g. 96 px training patches) so the rain keeps the frame's scale.
    """

    intensity: float = 0.5
    scale: float = 1.0
    coverage: float = 1.0
    fov: float = 2.5
    blur: float = 1.0
    softness: float = 0.45
    rim: float = 0.3
    highlight: float = 0.12
    lift: float = 0.1
    frame: Optional[float] = None

    def __post_init__(self) -> None:
        check_fields(self, {"coverage": (0, 2.2), "fov": (0.1, 10), "blur": (0, 10), "softness": (0.01, 1), "rim": (0, 1),
                            "highlight": (0, 1), "lift": (0, 1)})


@dataclass(frozen=True)
class RaindropsSample:
    """One image's drops: dense (H, W) float32 mask / shade / highlight, the flat indices of drop
    pixels (N,), their bilinear plan into the background ((N, 4) indices and weights) and the blur std."""

    mask: np.ndarray
    shade: np.ndarray
    highlight: np.ndarray
    index: np.ndarray
    plan: Tuple[np.ndarray, np.ndarray]
    sigma: float


def _components(u: np.ndarray, r: float, cx: float, cy: float) -> list:
    """Ellipses (cx, cy, ax, ay, tilt) of one drop from its 13 uniforms: a main body + 0–2 merged blobs."""
    tilt = (u[5] - 0.5) * 0.6
    comps = [(cx, cy, r * (0.85 + 0.2 * u[3]), r * (1.0 + 0.25 * u[4]), tilt)]
    extra = int(u[6] < 0.35) + int(u[6] < 0.12)
    for k in range(extra):
        phi = math.pi / 2 + (u[7 + 3 * k] - 0.5) * math.pi
        dist = (0.55 + 0.35 * u[8 + 3 * k]) * r
        rr = (0.45 + 0.3 * u[9 + 3 * k]) * r
        comps.append((cx + dist * math.cos(phi), cy + dist * math.sin(phi), rr, rr * 1.1, tilt))
    return comps


def sample_raindrops(height: int, width: int, params: RaindropsParams, rng: np.random.Generator) -> RaindropsSample:
    """Draw one image's drops and build their mask, shading and refraction plan (NumPy, float64 → quantised)."""
    p = params
    u = rng.random((MAX_DROPS, 13))
    side = frame_side(height, width, p.frame)
    size = p.scale * (0.75 + 0.5 * p.intensity)
    radius = np.maximum(1.5, side * size * R_MIN * (R_MAX / R_MIN) ** (u[:, 0] ** 1.6))
    area = math.pi * radius**2 * (1.0 + 0.3 * (u[:, 6] < 0.35))
    target = 0.45 * p.coverage * p.intensity**1.4 * height * width
    count = min(MAX_DROPS, int(np.searchsorted(np.cumsum(area), target)) + 1) if target > 0 else 0
    best = np.zeros((height, width))
    cy_map, cx_map, rad_map = np.zeros((height, width)), np.zeros((height, width)), np.ones((height, width))
    for k in range(count):
        cx, cy = u[k, 1] * width, u[k, 2] * height
        comps = _components(u[k], float(radius[k]), cx, cy)
        reach = max(max(c[2], c[3]) for c in comps) + 1
        x0 = max(0, int(math.floor(min(c[0] for c in comps) - reach)))
        x1 = min(width, int(math.ceil(max(c[0] for c in comps) + reach)) + 1)
        y0 = max(0, int(math.floor(min(c[1] for c in comps) - reach)))
        y1 = min(height, int(math.ceil(max(c[1] for c in comps) + reach)) + 1)
        if x0 >= x1 or y0 >= y1:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1] + 0.5
        field = np.zeros(yy.shape)
        weights = np.array([c[2] * c[3] for c in comps])
        for ex, ey, ax, ay, tilt in comps:
            cs, sn = math.cos(tilt), math.sin(tilt)
            dx, dy = xx - ex, yy - ey
            q = ((dx * cs + dy * sn) / ax) ** 2 + ((dy * cs - dx * sn) / ay) ** 2
            field += np.maximum(0.0, 1.0 - q) ** 2
        win = field > best[y0:y1, x0:x1]
        best[y0:y1, x0:x1][win] = field[win]
        cy_map[y0:y1, x0:x1][win] = float(np.dot(weights, [c[1] for c in comps]) / weights.sum())
        cx_map[y0:y1, x0:x1][win] = float(np.dot(weights, [c[0] for c in comps]) / weights.sum())
        rad_map[y0:y1, x0:x1][win] = math.sqrt(weights.sum())
    mask = smoothstep(best / p.softness)
    index = np.flatnonzero(mask > 0)
    yy, xx = np.divmod(index, width)
    py, px = yy + 0.5, xx + 0.5
    cy, cx, rad = cy_map.ravel()[index], cx_map.ravel()[index], rad_map.ravel()[index]
    dy, dx = py - cy, px - cx
    fisheye = p.fov * (1.0 + 0.25 * (dy * dy + dx * dx) / (rad * rad))
    plan = bilinear_plan(cy - dy * fisheye - 0.5, cx - dx * fisheye - 0.5, height, width)
    shade = np.ones((height, width))
    shade.ravel()[index] = 1.0 - p.rim * (1.0 - smoothstep(best.ravel()[index] / 0.5))
    hy, hx = py - (cy - 0.35 * rad), px - (cx - 0.3 * rad)
    spot = np.maximum(0.0, 1.0 - (hy * hy + hx * hx) / (0.22 * rad) ** 2) ** 2
    highlight = np.zeros((height, width))
    highlight.ravel()[index] = p.highlight * spot
    sigma = 0.0075 * p.blur * side
    return RaindropsSample(quantize(mask), quantize(shade), quantize(highlight), index, plan, float(sigma))


def raindrops_rain(image: np.ndarray, params: RaindropsParams, rng: np.random.Generator) -> np.ndarray:
    """Raindrops on one (H, W, 3) RGB image, uint8 or float in [0, 1]; same shape and dtype."""
    if params.intensity == 0:
        return image.copy()
    x = as_float32(image)
    h, w = x.shape[:2]
    s = sample_raindrops(h, w, params, rng)
    view = gather_bilinear(gaussian_blur(x, s.sigma), *s.plan)
    view = view + (1 - view) * np.float32(params.lift)
    drops = np.zeros((h * w, 3), np.float32)
    drops[s.index] = view
    drops = drops.reshape(h, w, 3) * s.shade[:, :, None] + s.highlight[:, :, None]
    m = s.mask[:, :, None]
    return like(x * (1 - m) + drops * m, image)


def raindrops_rain_torch(images: torch.Tensor, params: RaindropsParams, generators: Sequence[np.random.Generator]) -> torch.Tensor:
    """Torch twin of :func:`raindrops_rain` for (B, 3, H, W) float32 in [0, 1]; differentiable."""
    if params.intensity == 0:
        return images.clone()
    b, _, h, w = images.shape
    dev = images.device
    out = []
    for i, g in enumerate(generators):
        s = sample_raindrops(h, w, params, g)
        x = images[i]
        view = gather_bilinear_torch(gaussian_blur_torch(x[None], s.sigma)[0], *s.plan)
        view = view + (1 - view) * float(np.float32(params.lift))
        idx = torch.from_numpy(s.index).to(dev)
        drops = torch.zeros(3, h * w, device=dev, dtype=x.dtype).index_put((torch.arange(3, device=dev)[:, None], idx[None]), view)
        drops = drops.view(3, h, w) * torch.from_numpy(s.shade).to(dev) + torch.from_numpy(s.highlight).to(dev)
        m = torch.from_numpy(s.mask).to(dev)
        out.append((x * (1 - m) + drops * m).clamp(0, 1))
    return torch.stack(out)


@register_rain("raindrops")
class Raindrops(RainModel):
    """Adherent raindrops (AttentiveGAN 2018): soft blobs showing a flipped, defocused, wide view of the scene."""

    Params = RaindropsParams

    def _rain(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return raindrops_rain(image, self.params, rng)

    def _rain_torch(self, images: torch.Tensor, generators: Sequence[np.random.Generator]) -> torch.Tensor:
        return raindrops_rain_torch(images, self.params, generators)
