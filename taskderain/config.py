"""Checked YAML configuration shared by pipelines and training: schema walk, overrides, YAML reading.

A schema is ``{section: {key: (accepted types, default)}}`` plus top-level ``{key: (types,
default)}``; ``None`` among the types means the key may be null. Unknown keys and values of the
wrong type are a :class:`ConfigError` naming the file and the dotted key, so a typo never falls
back to a default silently. Numbers written ``1e-3`` (a string to YAML 1.1) are read as floats.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any, Dict, Iterable, Optional, Tuple

import yaml

from .types import PathLike

Field = Tuple[tuple, Any]
Number = (int, float)
_FLOAT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")


class ConfigError(ValueError):
    """A config file or override with an unknown key, a value of the wrong type or a bad value."""


def _type_names(types: tuple) -> str:
    return " or ".join("null" if t is None else t.__name__ for t in types)


def check_value(value: Any, types: tuple, key: str, where: str) -> Any:
    """``value`` if it has one of ``types`` (bool is not an int here); else a ConfigError naming ``key``."""
    if value is None and None in types:
        return None
    real = tuple(t for t in types if t is not None)
    if float in real and isinstance(value, str) and _FLOAT.match(value.strip()):
        value = float(value)
    if not isinstance(value, real) or (isinstance(value, bool) and bool not in real):
        raise ConfigError(f"{where}: '{key}' must be {_type_names(types)}, got {type(value).__name__} {value!r}")
    return value


def validate_schema(raw: Any, sections: Dict[str, Dict[str, Field]], top_level: Dict[str, Field],
                    where: str, optional_sections: Iterable[str] = ()) -> Dict[str, Any]:
    """Check ``raw`` against the schema and fill in defaults; returns a new dict.

    Sections in ``optional_sections`` may be null or absent (→ ``None``); the others default to
    all-default mappings.
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping of sections, got {type(raw).__name__}")
    optional = set(optional_sections)
    known = set(sections) | set(top_level)
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown key '{unknown[0]}' (known: {', '.join(sorted(known))})")
    config = {k: check_value(raw.get(k, copy.deepcopy(d)), t, k, where) for k, (t, d) in top_level.items()}
    for section, fields in sections.items():
        value = raw.get(section, None if section in optional else {})
        if value is None and section in optional:
            config[section] = None
            continue
        if not isinstance(value, dict):
            kind = "a mapping (or null)" if section in optional else "a mapping"
            raise ConfigError(f"{where}: '{section}' must be {kind}, got {type(value).__name__}")
        bad = sorted(set(value) - set(fields))
        if bad:
            raise ConfigError(f"{where}: unknown key '{section}.{bad[0]}' (known: {', '.join(sorted(fields))})")
        config[section] = {k: check_value(value.get(k, copy.deepcopy(d)), t, f"{section}.{k}", where)
                           for k, (t, d) in fields.items()}
    return config


Range = Tuple[Any, Any]  # inclusive (low, high); None = unbounded on that side


def check_ranges(config: Dict[str, Any], ranges: Dict[str, Range], where: str) -> None:
    """Check dotted keys (``"detector.conf"``) of a validated config against inclusive bounds.

    Null values and absent (null) sections pass. Raises a :class:`ConfigError` naming the key,
    e.g. ``'detector.conf' must be in [0, 1], got 1.5``.
    """
    for key, (low, high) in ranges.items():
        node: Any = config
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is None:
            continue
        if (low is not None and node < low) or (high is not None and node > high):
            bound = (f"in [{low}, {high}]" if low is not None and high is not None
                     else f">= {low}" if low is not None else f"<= {high}")
            raise ConfigError(f"{where}: '{key}' must be {bound}, got {node!r}")


def parse_overrides(items: Iterable[str]) -> Dict[str, Any]:
    """``["detector.conf=0.4", "half=true"]`` → nested dict; values are parsed as YAML (scalars and flow
    collections such as ``[0.5, 1]`` or ``{name: mix}``); text that is not valid YAML stays a string."""
    nested: Dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not key=value (e.g. detector.conf=0.4)")
        key, _, text = item.partition("=")
        node = nested
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: '{part}' is already set to a value")
        try:
            node[parts[-1]] = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError:  # not a YAML scalar or flow collection: the text itself (e.g. mix:{exclude: [a]})
            node[parts[-1]] = text.strip()
    return nested


def merge(base: Dict[str, Any], overrides: Dict[str, Any]) -> Dict[str, Any]:
    """Deep-merge ``overrides`` into a copy of ``base``."""
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def read_yaml(path: PathLike, what: str = "YAML") -> Dict[str, Any]:
    """A YAML mapping from ``path``; missing file, parse errors and non-mappings are clear errors."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"cannot parse {path}: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping, got {type(raw).__name__}")
    return raw


def resolve_relative(config: Dict[str, Any], keys: Iterable[Tuple[str, str]], base: Path) -> None:
    """Make relative paths at ``(section, key)`` absolute against ``base`` where such a file exists there."""
    for section, key in keys:
        node = config.get(section)
        value = node.get(key) if node else None
        if value and not Path(value).is_absolute() and (base / value).exists():
            node[key] = str(base / value)


def first_difference(old: Any, new: Any, key: str = "") -> Optional[Tuple[str, Any, Any]]:
    """``(dotted key, old value, new value)`` of the first place two settings dicts differ; None when equal."""
    if isinstance(old, dict) and isinstance(new, dict):
        for k in sorted(set(old) | set(new), key=str):
            found = first_difference(old.get(k), new.get(k), f"{key}.{k}" if key else str(k))
            if found:
                return found
        return None
    return None if old == new else (key, old, new)
