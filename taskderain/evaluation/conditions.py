"""Rain conditions of an evaluation: the clean reference plus named presets, rain-zoo families or an intensity sweep.

``--rain heavy,light``, ``--rain garg_nayar@0.75,raindrops,mix`` and ``--intensity 0:1:5`` all
become a list of :class:`RainCondition`, sorted by intensity and always starting with ``clean``
(intensity 0, no rain). An intensity that coincides with a preset's (0.25 light, 0.5 medium,
0.75 heavy, 1 storm) *is* that preset — same name, bit-identical parameters — so a sweep reuses
the cache of a preset run. Zoo families (:mod:`taskderain.rain.spec`) carry their model.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..rain import PRESET_INTENSITY, PRESETS, RainParams, add_rain, image_seed, rain_params
from ..rain.spec import describe_rain, rain_from_spec, rain_label, split_specs

CLEAN = "clean"


@dataclass(frozen=True)
class RainCondition:
    """One rain condition: a name for tables, its place on the intensity scale, and its rain —
    streak-model ``params`` (presets, intensity sweeps) or a zoo ``model`` (a family, the mix)."""

    name: str
    intensity: float
    params: RainParams
    model: Any = None

    @property
    def is_clean(self) -> bool:
        return self.model is None and self.params.is_identity

    def rain_key(self) -> Dict[str, Any]:
        """What identifies the rain in cache keys (the streak fields alone for presets, as before the zoo)."""
        return dataclasses.asdict(self.params) if self.model is None else describe_rain(self.model)

    def apply(self, image: np.ndarray, image_id: str, seed: int) -> np.ndarray:
        """The evaluation rain of one (H, W, 3) uint8 image: seed ``image_seed(image_id, seed)``."""
        if self.is_clean:
            return image
        if self.model is None:
            return add_rain(image, self.params, image_seed(str(image_id), seed))[0]
        return self.model.apply(image, image_seed(str(image_id), seed))

    @property
    def changes_tone(self) -> bool:
        """Whether the rain has camera effects, so that the reference of :meth:`pair` is not the clean image."""
        return self.model is not None and bool(getattr(self.model, "changes_tone", False))

    def pair(self, image: np.ndarray, image_id: str, seed: int) -> Tuple[np.ndarray, np.ndarray]:
        """(:meth:`apply`, what a derainer's output is scored against) from one rendering: the clean
        image, or — for rain with camera effects — the clean image through the same camera tone
        (``RainModel.apply_pair``)."""
        if not self.changes_tone:
            return self.apply(image, image_id, seed), image
        return self.model.apply_pair(image, image_seed(str(image_id), seed))

    def describe(self) -> Dict[str, Any]:
        """JSON-friendly record: name, intensity and the rain's every parameter."""
        rain = {"params": dataclasses.asdict(self.params)} if self.model is None else {"rain": describe_rain(self.model)}
        return {"name": self.name, "intensity": self.intensity, **rain}


def clean_condition() -> RainCondition:
    """The reference: intensity 0, no rain."""
    return RainCondition(CLEAN, 0.0, RainParams())


def condition_at(intensity: float) -> RainCondition:
    """The condition at ``intensity`` in [0, 1]: ``clean``, a preset's name, or ``i0.40``-style."""
    if intensity == 0:
        return clean_condition()
    for name, at in PRESET_INTENSITY.items():
        if math.isclose(intensity, at, abs_tol=1e-9):
            return RainCondition(name, at, PRESETS[name])
    return RainCondition(f"i{intensity:.2f}", float(intensity), rain_params(intensity=float(intensity)))


def parse_rain(text: str) -> List[RainCondition]:
    """``"heavy,light"`` → [clean, light, heavy]; zoo specs too (``garg_nayar@0.5``, ``mix``,
    ``raindrops:{size: 2}``); ``clean`` may be listed, it is always included.

    Raises:
        ValueError / KeyError: an unknown preset or family (the known ones are listed), a bad
            parameter, or an empty list.
    """
    names = split_specs(text)
    if not names:
        raise ValueError(f"--rain needs presets or rain families separated by commas ({', '.join(PRESETS)}, "
                         f"garg_nayar@0.75, mix, ...), got {text!r}")
    conditions = []
    for name in names:
        if name == CLEAN:
            continue
        if name in PRESETS:
            conditions.append(condition_at(PRESET_INTENSITY[name]))
            continue
        conditions.append(zoo_condition(name))
    return with_clean(conditions)


def zoo_condition(spec: Any) -> RainCondition:
    """The condition of one rain-zoo spec (string or mapping), on the intensity scale at the
    model's intensity (the middle of a mix's range).

    Raises:
        ValueError: an unknown family or a bad parameter, naming the spec.
    """
    try:
        model = rain_from_spec(spec)
    except (KeyError, TypeError, ValueError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        raise ValueError(f"--rain {spec!r}: {message}") from None
    value = getattr(model.params, "intensity", 0.0)
    intensity = float(np.mean(value)) if isinstance(value, (tuple, list)) else float(value)
    return RainCondition(rain_label(spec), intensity, RainParams(), model)


def parse_intensity(text: str) -> List[RainCondition]:
    """``"START:STOP:N"`` (N evenly spaced, ends included) or ``"0.2,0.6"`` → conditions with clean first.

    ``0:1:5`` gives 0, 0.25, 0.5, 0.75, 1 = clean, light, medium, heavy, storm.

    Raises:
        ValueError: malformed text, N < 1, or a value outside [0, 1].
    """
    usage = "--intensity takes START:STOP:N (e.g. 0:1:5) or a comma list of values in [0, 1]"
    try:
        if ":" in text:
            start, stop, count = text.split(":")
            n = int(count)
            if n < 1:
                raise ValueError
            values = [float(start)] if n == 1 else [float(start) + (float(stop) - float(start)) * i / (n - 1)
                                                     for i in range(n)]
        else:
            values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{usage}, got {text!r}") from None
    bad = [v for v in values if not 0 <= v <= 1]
    if bad or not values:
        raise ValueError(f"{usage}; {bad[0] if bad else 'nothing'} is not in [0, 1] (got {text!r})")
    return with_clean([condition_at(round(v, 9)) for v in values])


def with_clean(conditions: Sequence[RainCondition]) -> List[RainCondition]:
    """Unique conditions sorted by intensity, the clean reference first."""
    unique: Dict[str, RainCondition] = {CLEAN: clean_condition()}
    for c in conditions:
        unique.setdefault(c.name, c)
    return sorted(unique.values(), key=lambda c: c.intensity)


def conditions_from_config(rain: Dict[str, Any]) -> List[RainCondition]:
    """The conditions of a pipeline config's ``rain`` section (preset, intensity or a zoo ``model`` spec) plus clean."""
    if rain.get("model"):
        return parse_rain(rain["model"]) if isinstance(rain["model"], str) else with_clean([zoo_condition(rain["model"])])
    intensity: Optional[float] = rain.get("intensity")
    if intensity is not None:
        return with_clean([condition_at(float(intensity))])
    return parse_rain(rain.get("preset") or "heavy")
