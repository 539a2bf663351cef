"""The rain parameter record, the named presets and the continuous ``intensity`` scale.

Presets are data (timm style): ``light`` is calibrated to Rain100L's rainy inputs (mean PSNR-Y
26.9 dB on the Rain100L test images), ``heavy`` to Rain100H's (13.6 dB); ``medium`` lies between
them and ``storm`` beyond. ``intensity`` in [0, 1] interpolates the fields linearly between the
anchors none (0) → light (0.25) → medium (0.5) → heavy (0.75) → storm (1).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

BLENDS = ("add", "screen")


@dataclass(frozen=True)
class RainParams:
    """Everything that shapes synthetic rain; the seed decides only where the streaks fall.

    ``RainParams()`` is no rain (density 0); start from :func:`rain_params` and ``replace``.

    Counts and lengths are in pixels of the image, angles in degrees from vertical (positive
    leans the top of a streak to the right, "/"), intensities in [0, 1] of full scale. "Per
    image", "per layer" and "per kernel" jitters are factors or offsets drawn uniformly from
    ``[-jitter, +jitter]`` (relative for factors) out of the seeded generator.

    Attributes:
        density: streaks per 100x100 px, all layers together (0 = no streaks).
        density_jitter: per-image relative spread of ``density``.
        length: streak length, px.
        length_jitter: per-kernel relative spread of ``length``.
        width: streak thickness, px.
        width_jitter: per-kernel relative spread of ``width``.
        brightness: peak intensity of a streak, in [0, 1].
        brightness_jitter: per-streak relative spread of ``brightness``.
        angle: mean direction, degrees from vertical.
        angle_range: per-image offset of the direction, ± degrees.
        angle_jitter: per-kernel offset around the layer's direction, ± degrees.
        layers: rain layers, each with its own direction (several for heavy rain).
        layer_spread: per-layer offset of the direction, ± degrees.
        kernels: motion-blur kernels drawn per layer (variety of angle, length, width).
        soften: Gaussian sigma softening each streak, px.
        taper: fraction of each half-length over which a streak fades in and out, in [0, 1].
        blur: Gaussian sigma of the background blur, px (0 = none).
        haze: veil strength ``1 - t`` of ``I = J·t + A·(1 - t)``, in [0, 1].
        airlight: grey level ``A`` of the veil, in [0, 1].
        blend: ``"add"`` (``J + S``, as Rain100L/H were made) or ``"screen"`` (``J + S·(1 - J)``).
    """

    density: float = 0.0
    density_jitter: float = 0.0
    length: float = 20.0
    length_jitter: float = 0.3
    width: float = 1.0
    width_jitter: float = 0.2
    brightness: float = 0.3
    brightness_jitter: float = 0.5
    angle: float = 0.0
    angle_range: float = 0.0
    angle_jitter: float = 0.0
    layers: int = 1
    layer_spread: float = 0.0
    kernels: int = 12
    soften: float = 0.5
    taper: float = 0.5
    blur: float = 0.0
    haze: float = 0.0
    airlight: float = 0.9
    blend: str = "add"

    def __post_init__(self) -> None:
        nonneg = ("density", "density_jitter", "length", "length_jitter", "width", "width_jitter",
                  "brightness", "brightness_jitter", "angle_range", "angle_jitter", "layer_spread", "soften", "blur")
        for name in nonneg:
            if not getattr(self, name) >= 0:
                raise ValueError(f"RainParams.{name} must be >= 0, got {getattr(self, name)!r}")
        for name in ("density_jitter", "length_jitter", "width_jitter", "brightness_jitter"):
            if getattr(self, name) > 1:
                raise ValueError(f"RainParams.{name} is a relative spread in [0, 1], got {getattr(self, name)!r}")
        for name in ("brightness", "taper", "haze", "airlight"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"RainParams.{name} must lie in [0, 1], got {getattr(self, name)!r}")
        for name in ("layers", "kernels"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"RainParams.{name} must be an int >= 1, got {value!r}")
        if self.blend not in BLENDS:
            raise ValueError(f"RainParams.blend must be one of {BLENDS}, got {self.blend!r}")

    @property
    def is_identity(self) -> bool:
        """True when these parameters leave every image unchanged."""
        return (self.density == 0 or self.brightness == 0) and self.haze == 0 and self.blur == 0

    def replace(self, **changes: Any) -> "RainParams":
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)


_LIGHT = RainParams(
    density=27.0, density_jitter=0.4, length=28.0, length_jitter=0.6, width=1.0, width_jitter=0.5,
    brightness=0.215, brightness_jitter=0.8, angle=0.0, angle_range=22.0, angle_jitter=3.0,
    layers=1, soften=0.5, taper=0.4,
)
_MEDIUM = _LIGHT.replace(
    density=36.0, length=34.0, width=1.5, brightness=0.28, angle_jitter=4.0, layers=2, layer_spread=12.0,
    soften=0.6, blur=0.3, haze=0.08, airlight=0.85,
)
_HEAVY = _LIGHT.replace(
    density=36.0, density_jitter=0.2, length=45.0, length_jitter=0.5, width=2.2, brightness=0.385,
    brightness_jitter=0.7, angle_range=25.0, angle_jitter=4.0, layers=4, layer_spread=25.0,
    soften=0.9, blur=0.6, haze=0.25, airlight=0.85,
)
_STORM = _HEAVY.replace(
    density=48.0, length=56.0, width=2.6, brightness=0.45, layers=5, layer_spread=30.0, blur=1.0, haze=0.4,
)
_NONE = _LIGHT.replace(density=0.0)

#: Named presets, from light to storm (the order of ``intensity``).
PRESETS: Dict[str, RainParams] = {"light": _LIGHT, "medium": _MEDIUM, "heavy": _HEAVY, "storm": _STORM}
#: Intensity of each preset on the continuous scale; 0 is no rain.
PRESET_INTENSITY: Dict[str, float] = {"light": 0.25, "medium": 0.5, "heavy": 0.75, "storm": 1.0}


def list_presets() -> List[str]:
    """Preset names from the lightest to the heaviest."""
    return list(PRESETS)


def _interpolate(a: RainParams, b: RainParams, w: float) -> RainParams:
    values = {}
    for field in dataclasses.fields(RainParams):
        x, y = getattr(a, field.name), getattr(b, field.name)
        if isinstance(x, str):
            values[field.name] = x if w < 0.5 else y
        elif isinstance(x, int) and not isinstance(x, bool):
            values[field.name] = int(round(x + (y - x) * w))
        else:
            values[field.name] = x + (y - x) * w
    return RainParams(**values)


def params_at_intensity(intensity: float) -> RainParams:
    """Parameters at ``intensity`` in [0, 1]: 0 = no rain, 0.25 light, 0.5 medium, 0.75 heavy, 1 storm."""
    if isinstance(intensity, bool) or not isinstance(intensity, (int, float)) or not 0 <= intensity <= 1:
        raise ValueError(f"rain intensity must be a number in [0, 1] (0 = no rain, 1 = storm), got {intensity!r}")
    anchors = [(0.0, _NONE)] + [(PRESET_INTENSITY[name], PRESETS[name]) for name in PRESETS]
    for (x0, p0), (x1, p1) in zip(anchors, anchors[1:]):
        if intensity <= x1:
            return _interpolate(p0, p1, (intensity - x0) / (x1 - x0))
    return anchors[-1][1]


def intensity_range(value: Any) -> Tuple[float, float]:
    """``(low, high)`` from a two-number sequence with ``0 <= low <= high <= 1`` (a range of
    :func:`params_at_intensity` intensities to draw from).

    Raises:
        ValueError: anything else (the message shows the value).
    """
    ok = (isinstance(value, (list, tuple)) and len(value) == 2
          and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in value))
    if not ok or not 0 <= value[0] <= value[1] <= 1:
        raise ValueError(f"an intensity range must be [low, high] with 0 <= low <= high <= 1, got {value!r}")
    return float(value[0]), float(value[1])


def rain_params(preset: Optional[str] = None, intensity: Optional[float] = None, **overrides: Any) -> RainParams:
    """The parameters of a named ``preset`` or of a continuous ``intensity``, with field overrides.

    Args:
        preset: one of :func:`list_presets` (``light``, ``medium``, ``heavy``, ``storm``).
        intensity: number in [0, 1]; see :func:`params_at_intensity`.
        **overrides: :class:`RainParams` fields to change, e.g. ``length=30``.

    Raises:
        ValueError: both or neither of ``preset`` / ``intensity``, an unknown preset (the known ones
            are listed), an intensity outside [0, 1], or a bad field value.
    """
    if (preset is None) == (intensity is None):
        raise ValueError(f"give exactly one of preset= ({', '.join(PRESETS)}) or intensity= (0..1)")
    if preset is not None:
        if preset not in PRESETS:
            raise ValueError(f"unknown rain preset {preset!r}; available: {', '.join(PRESETS)}")
        params = PRESETS[preset]
    else:
        params = params_at_intensity(intensity)
    unknown = set(overrides) - {f.name for f in dataclasses.fields(RainParams)}
    if unknown:
        raise ValueError(f"unknown RainParams field(s) {sorted(unknown)}; see help(RainParams)")
    return params.replace(**overrides) if overrides else params
