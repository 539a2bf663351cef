"""Rain as users write it: one spec for ``synth --rain``, ``eval --rain`` and the training config.

A spec names a calibrated streak preset or a rain-zoo family, optionally with parameters:

- ``"heavy"`` — a preset of the streak model (``light``, ``medium``, ``heavy``, ``storm``);
- ``"garg_nayar"`` — a zoo family at its default intensity; ``"garg_nayar@0.5"`` at intensity 0.5;
- ``"mix"`` — :class:`~taskderain.rain.zoo.mix.RainMix`, a seeded per-image draw of family,
  intensity, angle, scale and camera effects; ``"mix:{exclude: [raindrops], intensity: [0.5, 1]}"``
  gives parameters as a YAML flow mapping;
- in YAML configs the same as a mapping: ``{name: mix, exclude: [raindrops]}``.

:func:`rain_from_spec` builds the :class:`~taskderain.rain.zoo.RainModel`;
:func:`describe_rain` is its canonical JSON record (manifests, cache keys, reports).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Mapping, Union

import yaml

from .params import PRESET_INTENSITY

RainSpec = Union[str, Mapping[str, Any]]


def parse_rain_spec(spec: RainSpec) -> Dict[str, Any]:
    """``{"name": ..., **params}`` from a spec string or mapping (see the module docstring).

    Raises:
        ValueError: an empty name, a malformed ``@intensity`` or parameter mapping.
    """
    if isinstance(spec, Mapping):
        out = dict(spec)
        if not isinstance(out.get("name"), str) or not out["name"]:
            raise ValueError(f"a rain mapping needs 'name' (a preset or a rain family), got {dict(spec)!r}")
        return out
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"a rain spec is a preset or family name (e.g. heavy, garg_nayar@0.5, mix), got {spec!r}")
    text = spec.strip()
    name, sep, rest = text.partition(":")
    params: Dict[str, Any] = {}
    if sep:
        try:
            loaded = yaml.safe_load(rest)
        except yaml.YAMLError as exc:
            raise ValueError(f"rain spec {spec!r}: cannot parse the parameters after ':' ({exc})") from None
        if not isinstance(loaded, dict):
            raise ValueError(f"rain spec {spec!r}: after ':' give a YAML mapping, e.g. mix:{{exclude: [raindrops]}}")
        params = loaded
    name, at, intensity = name.partition("@")
    if at:
        try:
            params["intensity"] = float(intensity)
        except ValueError:
            raise ValueError(f"rain spec {spec!r}: '@' must be followed by an intensity in [0, 1]") from None
    return {"name": name.strip(), **params}


def rain_from_spec(spec: RainSpec) -> Any:
    """The :class:`~taskderain.rain.zoo.RainModel` of a spec; presets are the ``streaks`` family.

    Raises:
        KeyError: an unknown preset / family (the known ones are listed).
        TypeError / ValueError: a bad parameter (named).
    """
    from .zoo import create_rain, list_rains

    parsed = parse_rain_spec(spec)
    name = parsed.pop("name")
    if name in PRESET_INTENSITY:
        if parsed:
            raise ValueError(f"rain preset {name!r} takes no parameters (got {sorted(parsed)}); use the "
                             f"'streaks' family for a modified streak model")
        return create_rain("streaks", preset=name)
    if name not in list_rains():
        raise KeyError(f"unknown rain {name!r}: use a preset ({', '.join(PRESET_INTENSITY)}) or a rain family "
                       f"({', '.join(list_rains())})")
    return create_rain(name, **parsed)


def describe_rain(model: Any) -> Dict[str, Any]:
    """JSON record of a rain model: family name, every parameter and the camera effects."""
    camera = getattr(model, "camera", None)
    return {"family": model.name, "params": _plain(dataclasses.asdict(model.params)),
            "camera": None if camera is None else _plain(dataclasses.asdict(camera))}


def rain_label(spec: RainSpec) -> str:
    """A short name for tables and file names: ``heavy``, ``garg_nayar@0.50``, ``mix``."""
    parsed = parse_rain_spec(spec)
    name = parsed["name"]
    intensity = parsed.get("intensity")
    extra = sorted(k for k in parsed if k not in ("name", "intensity"))
    label = name if not isinstance(intensity, (int, float)) else f"{name}@{float(intensity):.2f}"
    return label + (f"({','.join(extra)})" if extra else "")


def split_specs(text: str) -> List[str]:
    """``"light,mix:{exclude: [a, b]},raindrops@0.5"`` → the specs, splitting on commas outside brackets."""
    parts, depth, current = [], 0, []
    for char in text:
        depth += char in "[{("
        depth -= char in "]})"
        if char == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    parts.append("".join(current).strip())
    return [p for p in parts if p]


def _plain(value: Any) -> Any:
    """Tuples → lists, recursively (the record as it reads back from JSON)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
