"""One spec for ``run``, ``eval`` and ``train``: typed sections from one YAML, strict, with ``key=value`` overrides.

A spec has the sections ``derainer``, ``heads`` (named entries, each with a ``type``), ``rain``,
the inference settings at the top level (``device``, ``half``, ``tile``...) and, optionally, a
``train`` section (``mode``, ``data``, ``optim``, ``loss`` and the schedule: ``steps``, ``epochs``,
``time``, ``val_every``...). The derainer a run trains is the ``derainer`` section, the rain it
trains on the ``rain`` section — the same that ``eval`` scores by default::

    derainer: {name: mspfn_lite, weights: allweather}
    heads:
      detector: {type: yolo, weights: yolov8n.pt}
    rain: {model: mix, seed: 0}
    train:
      mode: cascade
      steps: 500
      data: {detection: coco128.yaml, imgsz: 320, batch: 4}
      loss: {restoration: 1.0, detector_features: 0.1}

:func:`load_spec` reads it into a :class:`Spec` of dataclass records, checking every key against
the pipeline schema (:mod:`taskderain.pipeline.config`) and, with a ``train`` section, the
training schema (:mod:`taskderain.train.config`); errors name the file and the dotted key.
Overrides use the spec's keys (``derainer.weights=x``, ``train.steps=10``); the schedule keys
may be given bare as well (``steps=10 resume=true time=1.5``, as ultralytics' CLI).
:meth:`Spec.pipeline_config` and :meth:`Spec.train_config` give what the builders take.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, Mapping, Optional, Union

from .config import ConfigError, merge, parse_overrides, read_yaml
from .inference import DEFAULT_MAX_PIXELS
from .types import PathLike

#: rain-section key → the training data key it becomes
RAIN_TO_DATA = {"model": "rain", "preset": "rain_preset", "intensity": "rain_intensity", "seed": "rain_seed"}
#: bare override keys that belong to the train section (ultralytics-style ``steps=10 resume=true``)
TRAIN_SHORTHAND = ("mode", "out", "steps", "epochs", "time", "resume", "seed", "amp")


@dataclass(frozen=True)
class DerainerSection:
    name: str = "identity"
    weights: Optional[str] = None
    options: Dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class HeadSection:
    """One named head: its registered ``type`` and the options its class takes."""

    name: str
    type: str
    options: Dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RainSection:
    preset: Optional[str] = "heavy"
    intensity: Any = None
    model: Any = None
    seed: int = 0


@dataclass(frozen=True)
class RuntimeSection:
    device: str = "auto"
    half: bool = False
    tile: Optional[int] = None
    overlap: int = 64
    max_pixels: Optional[int] = DEFAULT_MAX_PIXELS
    batch: int = 1


@dataclass(frozen=True)
class TrainSection:
    """The training task and its schedule; ``data`` / ``optim`` / ``loss`` as the training schema checks them."""

    mode: str
    out: str
    data: Dict[str, Any]
    optim: Dict[str, Any]
    loss: Dict[str, Any]
    steps: Optional[int] = None
    epochs: Optional[int] = None
    time: Optional[float] = None
    seed: int = 0
    amp: bool = False
    resume: bool = False
    schedule: Dict[str, Any] = field(default_factory=dict)  # accumulate, grad_clip, save_every, val_every, ...
    heads: Dict[str, HeadSection] = field(default_factory=dict)  # with the training defaults (validation NMS)


@dataclass(frozen=True)
class Spec:
    derainer: DerainerSection
    heads: Dict[str, HeadSection]
    rain: RainSection
    runtime: RuntimeSection
    train: Optional[TrainSection] = None
    source: str = "spec"

    def pipeline_config(self) -> Dict[str, Any]:
        """The validated pipeline config dict (:func:`~taskderain.pipeline.build_pipeline` takes it)."""
        return {"derainer": {"name": self.derainer.name, "weights": self.derainer.weights,
                             "options": dict(self.derainer.options)},
                "heads": _head_dicts(self.heads),
                "rain": {"preset": self.rain.preset, "intensity": self.rain.intensity, "model": self.rain.model,
                         "seed": self.rain.seed},
                **{k: getattr(self.runtime, k) for k in RuntimeSection.__dataclass_fields__}}

    def train_config(self) -> Dict[str, Any]:
        """The validated training config dict (:func:`~taskderain.train.train` takes it).

        Raises:
            ConfigError: the spec has no ``train`` section.
        """
        if self.train is None:
            raise ConfigError(f"{self.source}: no 'train' section (mode, data, optim, ...): nothing to train")
        t = self.train
        return {"mode": t.mode, "out": t.out, "steps": t.steps, "epochs": t.epochs, "time": t.time, "seed": t.seed,
                "amp": t.amp, "resume": t.resume, **copy.deepcopy(t.schedule), "device": self.runtime.device,
                "model": {"name": self.derainer.name, "weights": self.derainer.weights,
                          "options": dict(self.derainer.options)},
                "data": copy.deepcopy(t.data), "optim": copy.deepcopy(t.optim), "loss": copy.deepcopy(t.loss),
                "heads": _head_dicts(t.heads)}


def _head_sections(heads: Mapping[str, Mapping[str, Any]]) -> Dict[str, HeadSection]:
    return {n: HeadSection(n, h["type"], {k: v for k, v in h.items() if k != "type"}) for n, h in heads.items()}


def _head_dicts(heads: Mapping[str, HeadSection]) -> Dict[str, Dict[str, Any]]:
    return {n: {"type": h.type, **copy.deepcopy(h.options)} for n, h in heads.items()}


def is_spec(raw: Mapping[str, Any]) -> bool:
    """Whether a YAML mapping is a spec with a ``train`` section (else a pipeline YAML or an old training YAML)."""
    return isinstance(raw, Mapping) and isinstance(raw.get("train"), Mapping)


def override_tree(overrides: Iterable[str]) -> Dict[str, Any]:
    """``key=value`` overrides of a spec as a nested mapping. Besides the spec's own keys, the
    training schema's spelling is accepted: bare schedule keys (``steps=10``) and the names of
    every training-config key (``optim.lr=…``, ``save_every=…``) go to ``train``, ``model.*`` to
    ``derainer``, ``data.rain*`` to ``rain`` and the rest of ``data.*`` to ``train.data``."""
    from .train.config import SCHEMA as TRAIN_SCHEMA, TOP_LEVEL as TRAIN_TOP

    tree = parse_overrides(overrides)
    moved: Dict[str, Any] = {}
    if "model" in tree:
        moved["derainer"] = tree.pop("model")
    data = tree.pop("data", None)
    if isinstance(data, dict):
        rain = {k: data.pop(v) for k, v in RAIN_TO_DATA.items() if v in data}
        if rain:
            moved["rain"] = rain
        if data:
            moved.setdefault("train", {})["data"] = data
    for key in list(tree):
        if key in TRAIN_SHORTHAND or key == "loss" or (key in TRAIN_TOP and key != "device") or \
                (key in TRAIN_SCHEMA and key != "model"):
            moved.setdefault("train", {})[key] = tree.pop(key)
    return merge(tree, moved)


def training_raw(raw: Mapping[str, Any], where: str) -> Dict[str, Any]:
    """A spec mapping (with ``train``) → the raw training config: derainer → ``model``, rain →
    ``data.rain*``, the heads and ``device`` as they are, the ``train`` keys at the top."""
    from .pipeline.config import SCHEMA as PIPELINE_SCHEMA, TOP_LEVEL as PIPELINE_TOP

    known = {"train", "heads", "detector", "segmenter", *PIPELINE_SCHEMA, *PIPELINE_TOP}
    for key in raw:
        if key not in known:
            hint = f" ('{key}' belongs in the 'train' section: train.{key})" if key in ("loss", "optim", "data") else ""
            raise ConfigError(f"{where}: unknown top-level key '{key}'{hint}; a spec has "
                              f"{', '.join(sorted(known))}")
    train = dict(raw["train"])
    data = dict(train.pop("data", None) or {})
    for key in RAIN_TO_DATA.values():
        if key in data:
            raise ConfigError(f"{where}: 'train.data.{key}' belongs in the top-level 'rain' section "
                              f"({', '.join(f'rain.{k}' for k in RAIN_TO_DATA)}): the rain trained on is the rain "
                              "eval scores")
    rain = raw.get("rain") or {}
    if not isinstance(rain, Mapping):
        raise ConfigError(f"{where}: 'rain' must be a mapping, got {type(rain).__name__}")
    for key, value in rain.items():
        if key not in RAIN_TO_DATA:
            raise ConfigError(f"{where}: unknown key 'rain.{key}' (one of {', '.join(RAIN_TO_DATA)})")
        data[RAIN_TO_DATA[key]] = value
    out = {**train, "data": data}
    if "derainer" in raw:
        out["model"] = raw["derainer"]
    for key in ("heads", "detector", "segmenter", "device"):
        if key in raw:
            out[key] = raw[key]
    return out


def load_spec(source: Union[PathLike, Mapping[str, Any], None] = None, overrides: Iterable[str] = (),
              base: Optional[PathLike] = None) -> Spec:
    """Read a spec YAML (or take a mapping), apply ``key=value`` overrides, validate every section.

    Relative weights / data paths resolve against the YAML's folder (``base`` for a mapping) when
    they exist there.

    Raises:
        FileNotFoundError: no such YAML. ConfigError: bad YAML, unknown key, wrong type or value.
    """
    from .pipeline.config import validate as validate_pipeline
    from .train.config import train_config_from_raw

    if isinstance(source, Mapping):
        raw, where, folder = copy.deepcopy(dict(source)), "spec", None if base is None else Path(base)
    elif source is not None:
        raw, where, folder = read_yaml(source, "spec YAML"), str(source), Path(source).parent
    else:
        raw, where, folder = {}, "spec", None
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping of sections, got {type(raw).__name__}")
    raw = merge(raw, override_tree(overrides))
    train = None
    if "train" in raw:
        if not is_spec(raw):
            raise ConfigError(f"{where}: 'train' must be a mapping (mode, data, optim, ...)")
        t = train_config_from_raw(training_raw(raw, where), where, folder)
        schedule = {k: t[k] for k in ("accumulate", "grad_clip", "freeze_bn", "save_every", "val_every", "best_metric",
                                      "tensorboard", "keep_freed_memory", "callbacks")}
        train = TrainSection(t["mode"], t["out"], t["data"], t["optim"], t["loss"], t["steps"], t["epochs"],
                             t["time"], t["seed"], t["amp"], t["resume"], schedule, _head_sections(t["heads"]))
        raw = {k: v for k, v in raw.items() if k != "train"}
        if "derainer" not in raw:  # the derainer trained is the one the spec runs
            raw["derainer"] = {"name": t["model"]["name"], "weights": t["model"]["weights"],
                               "options": t["model"]["options"]}
        if isinstance((raw.get("rain") or {}).get("intensity"), list):  # a training range: eval scores its top
            raw["rain"] = {**raw["rain"], "intensity": max(raw["rain"]["intensity"])}
    p = validate_pipeline(raw, where)
    if folder is not None:
        from .config import resolve_relative

        resolve_relative(p, [("derainer", "weights")], folder)
        resolve_relative(p["heads"], [(n, k) for n in p["heads"] for k in ("weights", "cfg")], folder)
    heads = _head_sections(p["heads"])
    runtime = RuntimeSection(**{k: p[k] for k in RuntimeSection.__dataclass_fields__})
    return Spec(DerainerSection(**p["derainer"]), heads, RainSection(**p["rain"]), runtime, train, where)
