"""Pipeline configuration: a YAML file with a fixed schema, plus ``key=value`` overrides.

Every key is checked against :data:`SCHEMA` (see :mod:`taskderain.config`): an unknown key or a
value of the wrong type is an error that names the file and the dotted key.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, Iterable, Optional, Tuple

from ..config import (ConfigError, Number, PathLike, merge, parse_overrides, read_yaml, resolve_relative,
                      validate_schema)

__all__ = ["ConfigError", "SCHEMA", "TOP_LEVEL", "load_config", "validate"]

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


def validate(raw: Dict[str, Any], where: str = "pipeline config") -> Dict[str, Any]:
    """Check ``raw`` against the schema and fill in defaults; returns a new dict."""
    config = validate_schema(raw, SCHEMA, TOP_LEVEL, where, OPTIONAL_SECTIONS)
    det = config["detector"]
    if det is not None and det["weights"] is None and det["cfg"] is None:
        det["weights"] = os.environ.get("TASKDERAIN_YOLO") or None
        if det["weights"] is None:
            raise ConfigError(f"{where}: 'detector' needs 'weights' (a YOLO checkpoint) or 'cfg' (a model YAML); "
                              "or set TASKDERAIN_YOLO to a checkpoint path")
    return config


def load_config(path: Optional[PathLike] = None, overrides: Iterable[str] = (),
                extra: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Read a pipeline YAML, apply ``extra`` (a dict) and ``key=value`` overrides, validate.

    Relative ``weights`` paths are resolved against the YAML's folder when such a file exists
    there (so a pipeline folder can ship its weights); other names pass on unchanged (e.g.
    ``yolov8n.pt`` for ultralytics' own resolution).
    """
    raw = read_yaml(path, "pipeline YAML") if path is not None else {}
    where = str(path) if path is not None else "pipeline config"
    config = validate(merge(merge(raw, extra or {}), parse_overrides(overrides)), where)
    if path is not None:
        resolve_relative(config, [(s, "weights") for s in ("derainer", "detector", "segmenter")], Path(path).parent)
    return config
