"""Rain conditions of an evaluation: the clean reference plus named presets or an intensity sweep.

``--rain heavy,light`` and ``--intensity 0:1:5`` both become a list of :class:`RainCondition`,
sorted by intensity and always starting with ``clean`` (intensity 0, no rain). An intensity that
coincides with a preset's (0.25 light, 0.5 medium, 0.75 heavy, 1 storm) *is* that preset — same
name, bit-identical parameters — so a sweep reuses the cache of a preset run.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

from ..rain import PRESET_INTENSITY, PRESETS, RainParams, rain_params

CLEAN = "clean"


@dataclass(frozen=True)
class RainCondition:
    """One rain condition: a name for tables, its place on the intensity scale and its parameters."""

    name: str
    intensity: float
    params: RainParams

    @property
    def is_clean(self) -> bool:
        return self.params.is_identity

    def describe(self) -> Dict[str, Any]:
        """JSON-friendly record: name, intensity and every :class:`RainParams` field."""
        return {"name": self.name, "intensity": self.intensity, "params": dataclasses.asdict(self.params)}


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
    """``"heavy,light"`` → [clean, light, heavy]; ``clean`` may be listed, it is always included.

    Raises:
        ValueError: an unknown preset (the known ones are listed) or an empty list.
    """
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise ValueError(f"--rain needs preset names separated by commas ({', '.join(PRESETS)}), got {text!r}")
    unknown = [n for n in names if n not in PRESETS and n != CLEAN]
    if unknown:
        raise ValueError(f"--rain: unknown rain preset(s) {', '.join(map(repr, unknown))}; "
                         f"available: {CLEAN}, {', '.join(PRESETS)}")
    return with_clean([condition_at(PRESET_INTENSITY[n]) for n in names if n != CLEAN])


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
    """The conditions of a pipeline config's ``rain`` section (preset or intensity) plus clean."""
    intensity: Optional[float] = rain.get("intensity")
    if intensity is not None:
        return with_clean([condition_at(float(intensity))])
    return parse_rain(rain.get("preset") or "heavy")
