"""Pipeline configuration: a YAML file with a fixed schema, plus ``key=value`` overrides.

Every key is checked against :data:`SCHEMA` (see :mod:`taskderain.config`) and :data:`RANGES`: an
unknown key, a value of the wrong type or out of range is an error that names the file and the
dotted key, before any work.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, Iterable, Optional, Tuple

from ..config import (ConfigError, Number, PathLike, check_ranges, merge, parse_overrides, read_yaml,
                      resolve_relative, validate_schema)
from ..inference import DEFAULT_MAX_PIXELS, check_tiling

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
    "rain": {                                # the rain `taskderain eval` uses by default
        "preset": ((str, None), "heavy"),
        "intensity": (Number + (None,), None),
        "model": ((str, dict, None), None),  # or rain-zoo specs: garg_nayar@0.75, mix (taskderain.rain.spec)
        "seed": ((int,), 0),
    },
}
TOP_LEVEL: Dict[str, Tuple[tuple, Any]] = {
    "device": ((str,), "auto"),
    "half": ((bool,), False),
    "tile": ((int, None), None),             # derain in tiles of N px; null: automatic above max_pixels
    "overlap": ((int,), 64),                 # pixels shared by neighbouring tiles
    "max_pixels": ((int, None), DEFAULT_MAX_PIXELS),  # images above this are tiled; 0 or null: never
    "batch": ((int,), 1),
}
OPTIONAL_SECTIONS = ("detector", "segmenter")  # null or absent = no such stage
#: value bounds (inclusive), checked before any work
RANGES = {"detector.conf": (0, 1), "detector.iou": (0, 1), "detector.imgsz": (1, None),
          "detector.max_det": (1, None), "segmenter.num_classes": (1, None), "batch": (1, None)}


def validate(raw: Dict[str, Any], where: str = "pipeline config") -> Dict[str, Any]:
    """Check ``raw`` against the schema, its value ranges and the tiling rule; fill in defaults."""
    config = validate_schema(raw, SCHEMA, TOP_LEVEL, where, OPTIONAL_SECTIONS)
    check_ranges(config, RANGES, where)
    try:
        check_tiling(config["tile"], config["overlap"], config["max_pixels"])
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None
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
    if path is not None and not raw:
        raise ConfigError(f"{path}: the pipeline YAML is empty; give at least a 'derainer' (and a 'detector' "
                          "and/or 'segmenter'), e.g. pipelines/mspfn-yolov8n.yaml")
    config = validate(merge(merge(raw, extra or {}), parse_overrides(overrides)), where)
    if path is not None:
        resolve_relative(config, [(s, "weights") for s in ("derainer", "detector", "segmenter")], Path(path).parent)
    return config
