"""``mix``: per image, a seeded draw of the rain family, its intensity, angle, scale and camera effects.

For training derainers that generalise across rain models, and for leave-one-family-out tests
(``create_rain("mix", exclude=["raindrops"])``). Image seed ``s`` always gets the same draw, in
any batch: ``g = as_generator(s)`` gives six uniforms, in order — family (over the list, in
proportion to ``weights``; uniform by default),
intensity (uniform in ``intensity``), angle (uniform in ± ``angle_range`` degrees), scale
(log-uniform in ``scale``), camera on (probability ``camera_prob``, and only if the drawn
intensity is > 0, so "no rain" draws are clean images), camera strength (uniform in
``camera_strength``) — then one integer seeds the family's own draws. Families without an
``angle`` or ``scale`` field ignore those draws.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch

from ..blend import check_image
from ..seeding import SeedLike, as_generator
from ..synthesis_torch import SeedsLike
from .base import RainModel, build_params, check_batch, generators_for
from .camera import CameraEffects
from .registry import create_rain, list_rains, register_rain
from .validate import check_pair, check_range


def _names(value: Any, field: str) -> Tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"MixParams.{field} must be a list of family names, got {value!r}")
    return tuple(value)


def _weights(value: Any) -> Dict[str, float]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise ValueError(f"MixParams.weights must map family names to weights, got {value!r}")
    for name, w in value.items():
        if isinstance(w, bool) or not isinstance(w, (int, float, np.integer, np.floating)) or not np.isfinite(w) or w < 0:
            raise ValueError(f"MixParams.weights[{name!r}] must be a finite number >= 0, got {w!r}")
    return {k: float(v) for k, v in value.items()}


@dataclass(frozen=True)
class MixParams:
    """Parameters of ``mix``.

    Attributes:
        families: family names to draw from; empty = every registered family except ``mix``.
        exclude: family names to leave out.
        weights: relative draw weights by family name, e.g. ``{"streaks": 3}``; a family not named
            weighs 1 (equal weights draw exactly as no weights do).
        intensity: (low, high) in [0, 1], or one number for a fixed intensity.
        angle_range: wind angle drawn in ± this many degrees.
        scale: (low, high) range of the length / size scale (log-uniform).
        camera_prob: probability in [0, 1] that camera effects apply.
        camera_strength: (low, high) range of :attr:`CameraEffects.strength`.
        frame: long side (px) of the full frame the images are cut from, passed to the families
            that scale with the frame (None = each image itself); see :func:`with_frame`.
    """

    families: Tuple[str, ...] = ()
    exclude: Tuple[str, ...] = ()
    weights: Dict[str, float] = dataclasses.field(default_factory=dict)
    intensity: Tuple[float, float] = (0.0, 1.0)
    angle_range: float = 20.0
    scale: Tuple[float, float] = (0.75, 1.33)
    camera_prob: float = 0.5
    camera_strength: Tuple[float, float] = (0.2, 1.0)
    frame: Optional[float] = None

    def __post_init__(self) -> None:
        owner = "MixParams"
        object.__setattr__(self, "families", _names(self.families, "families"))
        object.__setattr__(self, "exclude", _names(self.exclude, "exclude"))
        object.__setattr__(self, "weights", _weights(self.weights))
        value = self.intensity
        if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
            value = (value, value)
        object.__setattr__(self, "intensity", check_pair(owner, "intensity", value, 0, 1))
        check_range(owner, "angle_range", self.angle_range, 0, 60)
        object.__setattr__(self, "scale", check_pair(owner, "scale", self.scale, 0.1, 5))
        check_range(owner, "camera_prob", self.camera_prob, 0, 1)
        object.__setattr__(self, "camera_strength", check_pair(owner, "camera_strength", self.camera_strength, 0, 1))
        if self.frame is not None:
            check_range(owner, "frame", self.frame, 8, 100000)


@dataclass(frozen=True)
class MixDraw:
    """What one image gets: family, its parameters, camera effects (or None) and the family's seed."""

    family: str
    params: Dict[str, float]
    camera: Optional[CameraEffects]
    seed: int


@register_rain("mix")
class RainMix(RainModel):
    """A seeded per-image mixture of the rain families (family, intensity, angle, scale, camera)."""

    Params = MixParams

    def __init__(self, params: Optional[MixParams] = None, camera: Any = None) -> None:
        if camera is not None:
            raise TypeError("mix draws its camera effects per image: use camera_prob= and camera_strength=, not camera=")
        super().__init__(params)
        known = [n for n in list_rains() if n != "mix"]
        for name in self.params.families + self.params.exclude + tuple(self.params.weights):
            if name not in known:
                raise KeyError(f"unknown rain family {name!r} in mix; available: {', '.join(known)}")
        chosen = self.params.families or tuple(known)
        self.families: List[str] = [n for n in chosen if n not in self.params.exclude]
        if not self.families:
            raise ValueError(f"mix has no family left: families={list(chosen)}, exclude={list(self.params.exclude)}")
        weights = np.array([self.params.weights.get(n, 1.0) for n in self.families])
        if weights.sum() <= 0:
            raise ValueError(f"mix: every family left ({', '.join(self.families)}) has weight 0")
        self._cumulative = np.cumsum(weights) / weights.sum()

    @property
    def intensity(self) -> float:
        """The highest intensity this mix draws."""
        return self.params.intensity[1]

    @property
    def changes_tone(self) -> bool:
        """Whether some draws have camera effects (their targets keep the camera's tone)."""
        return self.params.camera_prob > 0 and self.params.intensity[1] > 0 and self.params.camera_strength[1] > 0

    def draw(self, seed: SeedLike) -> MixDraw:
        """The draw of the image with this seed (int, SeedSequence or Generator, which is advanced)."""
        p, rng = self.params, as_generator(seed)
        u = rng.random(6)
        family = self.families[min(int(np.searchsorted(self._cumulative, u[0], side="right")), len(self.families) - 1)]
        intensity = p.intensity[0] + (p.intensity[1] - p.intensity[0]) * float(u[1])
        values = {"intensity": intensity, "angle": p.angle_range * (2 * float(u[2]) - 1),
                  "scale": p.scale[0] * (p.scale[1] / p.scale[0]) ** float(u[3])}
        camera = None
        if u[4] < p.camera_prob and intensity > 0:
            lo, hi = p.camera_strength
            camera = CameraEffects(strength=lo + (hi - lo) * float(u[5]))
        return MixDraw(family, values, camera, int(rng.integers(0, 2**63)))

    def model(self, draw: MixDraw) -> RainModel:
        """The family model a draw stands for."""
        base = create_rain(draw.family, intensity=draw.params["intensity"])
        names = {f.name for f in dataclasses.fields(base.params)}
        extra = {k: v for k, v in draw.params.items() if k in names and k != "intensity"}
        if self.params.frame is not None and "frame" in names:
            extra["frame"] = self.params.frame
        return type(base)(dataclasses.replace(base.params, **extra), camera=draw.camera)

    def apply(self, image: np.ndarray, seed: SeedLike) -> np.ndarray:
        """The drawn family's rain on one (H, W, 3) uint8/float image; same shape and dtype."""
        check_image(image)
        d = self.draw(seed)
        return self.model(d).apply(image, d.seed)

    def apply_pair(self, image: np.ndarray, seed: SeedLike) -> Tuple[np.ndarray, np.ndarray]:
        """(rainy, target) of the drawn family (:meth:`RainModel.apply_pair`)."""
        check_image(image)
        d = self.draw(seed)
        return self.model(d).apply_pair(image, d.seed)

    def apply_pair_torch(self, images: torch.Tensor, seeds: SeedsLike) -> Tuple[torch.Tensor, torch.Tensor]:
        """Per image, the drawn family's :meth:`RainModel.apply_pair_torch`."""
        check_batch(images)
        pairs = []
        for i, g in enumerate(generators_for(seeds, images.shape[0])):
            d = self.draw(g)
            pairs.append(self.model(d).apply_pair_torch(images[i : i + 1], [d.seed]))
        return torch.cat([p[0] for p in pairs]), torch.cat([p[1] for p in pairs])

    def apply_torch(self, images: torch.Tensor, seeds: SeedsLike) -> torch.Tensor:
        """Per image, the drawn family's torch path on (B, 3, H, W) float in [0, 1]."""
        check_batch(images)
        out = []
        for i, g in enumerate(generators_for(seeds, images.shape[0])):
            d = self.draw(g)
            out.append(self.model(d).apply_torch(images[i : i + 1], [d.seed]))
        return torch.cat(out)

    @classmethod
    def create(cls, camera: Any = None, **params: Any) -> "RainMix":
        return cls(build_params("mix", MixParams, params), camera=camera)
