"""Pipeline configuration: a YAML file with a fixed schema, plus ``key=value`` overrides.

Sections: ``derainer``, ``heads`` (named task heads, each ``{type: yolo | smp | torchvision | <yours>,
...options}``), ``rain`` and the inference settings at the top level. Every key is checked against :data:`SCHEMA` (see :mod:`taskderain.config`) and :data:`RANGES`: an
unknown key, a value of the wrong type or out of range is an error that names the file and the
dotted key, before any work.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Iterable, Optional, Tuple

from ..config import (ConfigError, Number, PathLike, check_ranges, merge, parse_overrides, read_yaml,
                      resolve_relative, validate_schema)
from ..inference import DEFAULT_MAX_PIXELS, check_tiling
from ..stages.head import read_heads

__all__ = ["ConfigError", "SCHEMA", "TOP_LEVEL", "load_config", "validate"]

#: section → {key: (accepted types, default)}; ``None`` in the types means the key may be null.
SCHEMA: Dict[str, Dict[str, Tuple[tuple, Any]]] = {
    "derainer": {
        "name": ((str,), "identity"),
        "weights": ((str, None), None),
        "options": ((dict,), {}),
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
#: value bounds (inclusive), checked before any work (each head type checks its own: TaskHead.RANGES)
RANGES = {"batch": (1, None)}
def validate(raw: Dict[str, Any], where: str = "pipeline config") -> Dict[str, Any]:
    """Check ``raw`` against the schema, its value ranges and the tiling rule; fill in defaults."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping of sections, got {type(raw).__name__}")
    raw = dict(raw)
    heads = read_heads(raw, where)
    config = validate_schema(raw, SCHEMA, TOP_LEVEL, where)
    config["heads"] = heads
    check_ranges(config, RANGES, where)
    try:
        check_tiling(config["tile"], config["overlap"], config["max_pixels"])
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None
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
    from ..spec import is_spec, load_spec

    if is_spec(raw):  # a spec with a train section: the same file runs what it trains
        return load_spec(merge(raw, extra or {}), overrides, base=Path(path).parent).pipeline_config()
    if path is not None and not raw:
        raise ConfigError(f"{path}: the pipeline YAML is empty; give at least a 'derainer' (and 'heads'), "
                          "e.g. pipelines/mspfn-yolov8n.yaml")
    config = validate(merge(merge(raw, extra or {}), parse_overrides(overrides)), where)
    if path is not None:
        resolve_relative(config, [("derainer", "weights")], Path(path).parent)
        resolve_relative(config["heads"], [(name, "weights") for name in config["heads"]], Path(path).parent)
    return config
