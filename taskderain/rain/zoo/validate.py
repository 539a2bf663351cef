"""Parameter checks of the rain zoo: errors that name the parameter and the allowed range."""

from __future__ import annotations

from typing import Any, Dict, Tuple

import numpy as np


def check_range(owner: str, name: str, value: Any, low: float, high: float = float("inf")) -> None:
    """ValueError ``owner.name must be a number in [low, high]`` unless ``value`` is such a number."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not low <= value <= high:
        bound = f"[{low}, {high}]" if high != float("inf") else f">= {low}"
        raise ValueError(f"{owner}.{name} must be a number {bound}, got {value!r}")


def check_pair(owner: str, name: str, value: Any, low: float, high: float) -> Tuple[float, float]:
    """``(a, b)`` with ``low <= a <= b <= high`` from a two-number sequence; ValueError naming ``name`` otherwise."""
    ok = isinstance(value, (list, tuple)) and len(value) == 2
    if ok:
        try:
            for v in value:
                check_range(owner, name, v, low, high)
        except ValueError:
            ok = False
    if not ok or value[0] > value[1]:
        raise ValueError(f"{owner}.{name} must be (low, high) with {low} <= low <= high <= {high}, got {value!r}")
    return float(value[0]), float(value[1])


#: bounds of the fields most families share
COMMON_BOUNDS: Dict[str, Tuple[float, float]] = {"intensity": (0, 1), "angle": (-60, 60), "angle_range": (0, 60),
                                                 "scale": (0.1, 5)}


def check_fields(params: Any, bounds: Dict[str, Tuple[float, float]]) -> None:
    """Check a family's parameter record: every field named in ``bounds`` (and :data:`COMMON_BOUNDS`)
    within its range, and ``frame`` (when given) a long side of 8 px or more."""
    owner = type(params).__name__
    if getattr(params, "frame", None) is not None:
        check_range(owner, "frame", params.frame, 8, 100000)
    for name, (low, high) in {**COMMON_BOUNDS, **bounds}.items():
        if hasattr(params, name):
            check_range(owner, name, getattr(params, name), low, high)
