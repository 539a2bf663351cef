"""Pipeline configuration: a YAML file with a fixed schema, plus ``key=value`` overrides.

Every key is checked against :data:`SCHEMA`: an unknown key or a value of the wrong type is an
error that names the file and the dotted key, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Dict, Iterable, Optional, Tuple, Union

import yaml

PathLike = Union[str, os.PathLike]
Number = (int, float)

#: section → {key: (accepted types, default)}; ``None`` in the types means the key may be null.
SCHEMA: Dict[str, Dict[str, Tuple[tuple, Any]]] = {
    "derainer": {
        "name": ((str,), "identity"),
        "weights": ((str, None), None),
        "options": ((dict,), {}),
    },
    "detector": {
        "weights": ((str, None), None),
        "cfg": ((str, None), None),
        "nc": ((int, None), None),
        "imgsz": ((int,), 640),
        "conf": (Number, 0.25),
        "iou": (Number, 0.7),
        "max_det": ((int,), 300),
    },
    "segmenter": {
        "arch": ((str,), "Unet"),
        "encoder": ((str,), "resnet18"),
        "num_classes": ((int, None), None),
        "weights": ((str, None), None),
        "ignore_index": ((int,), 255),
    },
    "rain": {
        "preset": ((str, None), "heavy"),
        "intensity": (Number + (None,), None),
        "seed": ((int,), 0),
    },
}
TOP_LEVEL: Dict[str, Tuple[tuple, Any]] = {
    "device": ((str,), "auto"),
    "half": ((bool,), False),
    "tile": ((int, None), None),
    "batch": ((int,), 1),
}
OPTIONAL_SECTIONS = ("detector", "segmenter")  # null or absent = no such stage


class ConfigError(ValueError):
    """A pipeline YAML or override with an unknown key or a value of the wrong type."""


def _type_names(types: tuple) -> str:
    return " or ".join("null" if t is None else t.__name__ for t in types)


def _check(value: Any, types: tuple, key: str, where: str) -> Any:
    if value is None and None in types:
        return None
    real = tuple(t for t in types if t is not None)
    ok = isinstance(value, real) and not (isinstance(value, bool) and bool not in real)
    if not ok:
        raise ConfigError(f"{where}: '{key}' must be {_type_names(types)}, got {type(value).__name__} {value!r}")
    return value


def validate(raw: Dict[str, Any], where: str = "pipeline config") -> Dict[str, Any]:
    """Check ``raw`` against the schema and fill in defaults; returns a new dict."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping of sections, got {type(raw).__name__}")
    known = set(SCHEMA) | set(TOP_LEVEL)
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown key '{unknown[0]}' (known: {', '.join(sorted(known))})")
    config: Dict[str, Any] = {}
    for key, (types, default) in TOP_LEVEL.items():
        config[key] = _check(raw.get(key, default), types, key, where)
    for section, fields in SCHEMA.items():
        value = raw.get(section, {} if section not in OPTIONAL_SECTIONS else None)
        if value is None:
            config[section] = None
            continue
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: '{section}' must be a mapping (or null), got {type(value).__name__}")
        bad = sorted(set(value) - set(fields))
        if bad:
            raise ConfigError(f"{where}: unknown key '{section}.{bad[0]}' (known: {', '.join(sorted(fields))})")
        config[section] = {k: _check(value.get(k, copy.deepcopy(d)), t, f"{section}.{k}", where)
                           for k, (t, d) in fields.items()}
    det = config["detector"]
    if det is not None and det["weights"] is None and det["cfg"] is None:
        det["weights"] = os.environ.get("TASKDERAIN_YOLO") or None
        if det["weights"] is None:
            raise ConfigError(f"{where}: 'detector' needs 'weights' (a YOLO checkpoint) or 'cfg' (a model YAML); "
                              "or set TASKDERAIN_YOLO to a checkpoint path")
    return config


def parse_overrides(items: Iterable[str]) -> Dict[str, Any]:
    """``["detector.conf=0.4", "half=true"]`` → nested dict; values are parsed as YAML scalars."""
    nested: Dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not key=value (e.g. detector.conf=0.4)")
        key, _, text = item.partition("=")
        node = nested
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = yaml.safe_load(text) if text.strip() else None
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


def load_config(path: Optional[PathLike] = None, overrides: Iterable[str] = (),
                extra: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Read a pipeline YAML, apply ``extra`` (a dict) and ``key=value`` overrides, validate.

    Relative ``weights`` paths are resolved against the YAML's folder when such a file exists
    there (so a pipeline folder can ship its weights); other names pass on unchanged (e.g.
    ``yolov8n.pt`` for ultralytics' own resolution).
    """
    raw: Dict[str, Any] = {}
    where = "pipeline config"
    if path is not None:
        path = Path(path)
        where = str(path)
        if not path.is_file():
            raise FileNotFoundError(f"pipeline YAML not found: {path}")
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"cannot parse {path}: {exc}") from None
    raw = merge(merge(raw, extra or {}), parse_overrides(overrides))
    config = validate(raw, where)
    if path is not None:
        for section in ("derainer", "detector", "segmenter"):
            node = config.get(section)
            if node and node.get("weights") and not Path(node["weights"]).is_absolute():
                local = path.parent / node["weights"]
                if local.exists():
                    node["weights"] = str(local)
    return config
