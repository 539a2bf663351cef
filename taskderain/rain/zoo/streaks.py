"""``streaks``: taskderain's calibrated streak rain (Rain100L / Rain100H presets) as a zoo family.

Source: the Photoshop-style recipe behind Rain100L/H (Yang et al., CVPR 2017) as implemented by
:func:`taskderain.rain.add_rain`: sparse drops smeared by oriented motion-blur kernels, added to
the image, under a uniform veil. ``create_rain("streaks", preset="heavy").apply(image, seed)`` is
exactly ``add_rain(image, rain_params("heavy"), seed)[0]``.

With camera effects the same streak layer is composited in float32 with the zoo's twin blur
(:mod:`~taskderain.rain.zoo.ops`) instead of OpenCV's 8-bit one, so that the NumPy and torch paths
hand the camera the same float image (and the NumPy bytes stay machine-independent); that
differs from ``add_rain`` by at most 1/255 where the preset blurs the background.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np
import torch

from ..params import PRESET_INTENSITY, PRESETS, RainParams, rain_params
from ..synthesis import add_rain
from ..streaks import render_streaks, sample_streaks
from ..synthesis_torch import add_rain_torch
from .base import RainModel, build_params
from .ops import gaussian_blur, gaussian_blur_torch
from .registry import register_rain
from .validate import check_range


@dataclass(frozen=True)
class StreaksParams:
    """Parameters of ``streaks``.

    Attributes:
        intensity: in [0, 1] through :func:`rain_params` (0.25 light … 1 storm); set from ``preset``.
        preset: ``light``, ``medium``, ``heavy`` or ``storm`` (wins over ``intensity``), or None.
        angle: mean streak direction, degrees from vertical (``RainParams.angle``).
        scale: factor on the streak length.
    """

    intensity: float = 0.5
    preset: Optional[str] = None
    angle: float = 0.0
    scale: float = 1.0

    def __post_init__(self) -> None:
        if self.preset is not None:
            if self.preset not in PRESETS:
                raise ValueError(f"StreaksParams.preset must be one of {', '.join(PRESETS)} or None, got {self.preset!r}")
            object.__setattr__(self, "intensity", PRESET_INTENSITY[self.preset])
        check_range("StreaksParams", "intensity", self.intensity, 0, 1)
        check_range("StreaksParams", "angle", self.angle, -60, 60)
        check_range("StreaksParams", "scale", self.scale, 0.1, 5)

    def rain_params(self) -> RainParams:
        """The :class:`RainParams` these stand for (exactly the preset's when angle 0 and scale 1)."""
        base = rain_params(self.preset) if self.preset is not None else rain_params(intensity=float(self.intensity))
        changes: dict = {}
        if self.angle != 0:
            changes["angle"] = float(self.angle)
        if self.scale != 1:
            changes["length"] = base.length * float(self.scale)
        return base.replace(**changes) if changes else base


def streaks_rain(image: np.ndarray, params: StreaksParams, rng: np.random.Generator) -> np.ndarray:
    """``add_rain(image, params.rain_params(), rng)[0]``: (H, W, 3) uint8/float → same."""
    return add_rain(image, params.rain_params(), rng)[0]


def streaks_rain_torch(images: torch.Tensor, params: StreaksParams, generators: Sequence[np.random.Generator]) -> torch.Tensor:
    """``add_rain_torch`` on (B, 3, H, W) float in [0, 1]; within 1/255 of :func:`streaks_rain`."""
    return add_rain_torch(images, params.rain_params(), list(generators))[0]


def _blend_np(x: np.ndarray, s: np.ndarray, p: RainParams) -> np.ndarray:
    y = gaussian_blur(x, p.blur)
    y = y + s if p.blend == "add" else y + s * (1 - y)
    if p.haze > 0:
        y = y * np.float32(1 - p.haze) + np.float32(p.haze * p.airlight)
    return np.clip(y, 0, 1)


def _blend_torch(x: torch.Tensor, s: torch.Tensor, p: RainParams) -> torch.Tensor:
    y = gaussian_blur_torch(x, p.blur)
    y = y + s if p.blend == "add" else y + s * (1 - y)
    if p.haze > 0:
        y = y * float(np.float32(1 - p.haze)) + float(np.float32(p.haze * p.airlight))
    return y.clamp(0, 1)


def streaks_rain_float(image: np.ndarray, params: StreaksParams, rng: np.random.Generator) -> np.ndarray:
    """The streak rain of (H, W, 3) float32 with the twin blur (the path camera effects take); float32."""
    p = params.rain_params()
    h, w = image.shape[:2]
    s = render_streaks(sample_streaks(h, w, p, rng))[:, :, None]
    return _blend_np(image, s, p)


def streaks_rain_float_torch(images: torch.Tensor, params: StreaksParams, generators: Sequence[np.random.Generator]) -> torch.Tensor:
    """Torch twin of :func:`streaks_rain_float` for (B, 3, H, W) float32."""
    p = params.rain_params()
    h, w = images.shape[-2:]
    s = np.stack([render_streaks(sample_streaks(h, w, p, g)) for g in generators])[:, None]
    return _blend_torch(images, torch.from_numpy(s).to(images.device), p)


@register_rain("streaks")
class Streaks(RainModel):
    """Calibrated streak rain (Rain100L/H recipe): white motion-blurred drops + uniform veil."""

    Params = StreaksParams

    @classmethod
    def create(cls, camera: Any = None, **params: Any) -> "Streaks":
        if "preset" in params and params["preset"] is not None and "intensity" in params:
            raise ValueError("streaks: give preset= or intensity=, not both")
        return cls(build_params("streaks", StreaksParams, params), camera=camera)

    def _rain(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return streaks_rain(image, self.params, rng)

    def _rain_float(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return streaks_rain_float(image, self.params, rng)

    def _rain_torch(self, images: torch.Tensor, generators: Sequence[np.random.Generator]) -> torch.Tensor:
        if self._camera_on():
            return streaks_rain_float_torch(images, self.params, generators)
        return streaks_rain_torch(images, self.params, generators)
