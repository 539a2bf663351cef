"""Training configuration: a YAML file with a fixed schema, plus ``key=value`` overrides.

Checked with :mod:`taskderain.config` like the pipeline YAML: an unknown key or a value of the
wrong type is a :class:`ConfigError` naming the file and the dotted key. Defaults follow the
MSPFN recipe (Jiang et al., CVPR 2020, and their released training code): 96 px patches, batch 12, Adam β (0.9, 0.999),
``lr = 5e-4 · 0.8^(step / 20000) + 1e-6``. A minimal YAML::

    out: runs/mspfn_lite-rain100l
    steps: 100000                 # optimizer steps (or epochs: N; with both, the first reached ends)
    model: {name: mspfn_lite}
    data: {paired: data/Rain100L/train, val: data/Rain100L/test, val_crop: 256}
    # or online rain on clean images, the last 10 % held out for validation:
    # data: {images: data/clean, rain_preset: heavy, rain_seed: 0, val_split: 0.1}
    # rain_intensity: [0.1, 0.45] instead of a preset draws a new intensity for every image
    # rain: mix  (or garg_nayar@0.75, {name: mix, exclude: [raindrops]}): a rain-zoo model instead

Set ``time: 0.5`` (hours, as ultralytics' ``time=``) to stop after a wall-clock budget: the run
ends after the step that crosses it, validated and saved, and ``resume=true`` with more time or
steps continues it exactly.

Numbers written ``1e-3`` (a string to YAML 1.1) are read as floats.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Iterable, Optional, Tuple, Union

from ..config import (ConfigError, Number, PathLike, check_ranges, merge, parse_overrides, read_yaml,
                      resolve_relative, validate_schema)

if TYPE_CHECKING:
    from ..rain.params import RainParams

#: training modes (see :mod:`taskderain.train.tasks` for the task-driven ones).
MODES = ("restoration", "cascade", "joint", "detector_on_rain", "segmenter")
#: modes trained on a detection data YAML with task losses.
TASK_MODES = ("cascade", "joint", "detector_on_rain", "segmenter")
#: what each task mode trains, as data: whether the derainer trains, which head tasks the pipeline
#: keeps, which of them train (the others are frozen: eval mode, no gradients), which it needs, and
#: whether it trains on clean images (no rain).
MODE_STAGES: Dict[str, Dict[str, Any]] = {
    "cascade": {"derainer": True, "heads": ("detection", "segmentation"), "train_heads": (),
                "requires": ("detection",), "doc": "the derainer trains, the heads are frozen"},
    "joint": {"derainer": True, "heads": ("detection", "segmentation"), "train_heads": ("detection", "segmentation"),
              "requires": ("detection",), "doc": "the derainer and the heads train"},
    "detector_on_rain": {"derainer": False, "heads": ("detection",), "train_heads": ("detection",),
                         "requires": ("detection",), "doc": "the detector alone is fine-tuned on rain"},
    "segmenter": {"derainer": False, "heads": ("segmentation",), "train_heads": ("segmentation",),
                  "requires": ("segmentation",), "doc": "the segmenter alone is trained", "clean": True},
}
#: validation metrics that can pick ``best.pt`` (all: higher is better).
BEST_METRICS = ("psnr_y", "map50_95", "map50", "miou")

#: section → {key: (accepted types, default)}; ``None`` in the types means the key may be null.
SCHEMA: Dict[str, Dict[str, Tuple[tuple, Any]]] = {
    "model": {
        "name": ((str,), "mspfn_lite"),
        "weights": ((str, None), None),      # initial weights (fine-tuning)
        "options": ((dict,), {}),            # config overrides, e.g. {width: 8}
    },
    "data": {
        "paired": ((str, None), None),       # paired rainy/clean root (see data.paired.find_pairs)
        "images": ((str, None), None),       # OR a clean image folder: rain is synthesised online
        "rain": ((str, dict, None), None),   # a rain-zoo spec (garg_nayar@0.5, mix, {name: mix, exclude: [...]}):
                                             # replaces rain_preset / rain_intensity (taskderain.rain.spec)
        "rain_preset": ((str, None), "heavy"),
        "rain_intensity": (Number + (list, None), None),  # [low, high]: a new intensity per image (restoration)
        "rain_seed": ((int,), 0),
        "val": ((str, None), None),          # paired root (or, with data.images, a clean folder)
        "val_split": (Number, 0),            # <1: fraction, >=1: count of the training images held out (the last ones)
        "val_crop": ((int, None), None),     # centre crop of validation images; null = whole images
        "patch_size": ((int,), 96),
        "repeat": ((int,), 1),               # data.images: passes over the images per epoch (small sets)
        "batch": ((int,), 12),
        "workers": ((int,), 0),
        # task modes (cascade, joint, detector_on_rain):
        "detection": ((str, None), None),    # ultralytics data YAML
        "train_split": ((str,), "train"),
        "val_split_name": ((str, None), None),  # a split of the YAML for validation (else data.val_split holds out)
        "imgsz": ((int,), 320),              # letterbox size (multiple of 32)
        "clean_prob": (Number, 0.0),         # probability of a clean (rain-free) training image
        "masks": ((str, None), None),        # class-id mask folder (by image stem) for the segmentation loss
        "class_map": ((str, None), None),    # YAML with classes: {id: name} mapping mask ids to indices
    },
    "optim": {
        "lr": (Number, 5e-4),
        "decay": (Number, 0.8),              # lr factor per decay_steps optimizer steps
        "decay_steps": ((int,), 20000),
        "min_lr": (Number, 1e-6),            # added to the decayed lr
        "betas": ((list,), [0.9, 0.999]),
        "weight_decay": (Number, 0.0),
        "lr_detector": (Number, 1e-4),       # detector param group (joint, detector_on_rain)
        "lr_segmenter": (Number, 1e-4),      # segmenter param group (joint)
    },
}
TOP_LEVEL: Dict[str, Tuple[tuple, Any]] = {
    "mode": ((str,), "restoration"),
    "out": ((str,), "runs/train"),
    "steps": ((int, None), None),            # optimizer steps in all; null = epochs decide
    "epochs": ((int, None), None),
    "accumulate": ((int,), 1),               # micro-batches per optimizer step
    "grad_clip": (Number + (None,), None),   # max global grad norm
    "freeze_bn": ((bool,), False),           # joint / detector_on_rain: trained heads keep their BatchNorm statistics
    "seed": ((int,), 0),
    "device": ((str,), "auto"),
    "amp": ((bool,), False),                 # bf16 autocast (CPU and CUDA; no grad scaler needed)
    "save_every": ((int,), 0),               # last.pt every N steps (0: only at epoch ends)
    "val_every": ((int,), 1),                # validate every N epochs
    "best_metric": ((str,), "psnr_y"),
    "time": (Number + (None,), None),        # training budget in hours (ultralytics' time=): stop after it
    "resume": ((bool,), False),              # continue from OUT/last.pt
    "tensorboard": ((bool,), False),         # also log to OUT/tensorboard (needs the tensorboard package)
    "keep_freed_memory": ((bool,), True),
    "callbacks": ((list,), []),              # import paths of Callback classes (taskderain.train.callbacks)    # CPU: reuse freed memory instead of page-faulting it back (allocator.py)
}

#: task modes' loss terms unless the config sets them (total = Σ weight · term; see taskderain.losses.terms):
#: mspfn_loss order 0.01-0.1; detection = ultralytics' loss per image, order 1-10; Dice + CE, order 1.
DEFAULT_LOSS = {"restoration": 1.0, "detection": 0.01, "segmentation": 0.01}
#: mode ``restoration`` with a ``loss`` section: MSPFN's loss plus the section's pixel terms (e.g.
#: ``psnr``); without one it trains with MSPFN's loss alone (DEFAULT_LOSS recorded, as before).
RESTORATION_LOSS = {"restoration": 1.0}

#: keys that must match the checkpoint when resuming (the rest may change, e.g. steps).
RESUME_KEYS = ("mode", "model", "data", "optim", "loss", "heads", "accumulate", "seed", "grad_clip", "amp",
               "freeze_bn")
#: option defaults of the heads in training that differ from inference: validation NMS at the mAP
#: protocol's low confidence
TRAIN_HEAD_DEFAULTS = {"yolo": {"conf": 0.001}}


#: value bounds (inclusive) checked with the schema, before any work
RANGES: Dict[str, Tuple[Any, Any]] = {}  # the heads check their own (TaskHead.RANGES)


def validate(raw: Dict[str, Any], where: str = "train config") -> Dict[str, Any]:
    """Check ``raw`` against the schema, fill in defaults and check values; returns a new dict.

    ``loss`` is the open section of named terms (:func:`~taskderain.losses.terms.parse_loss_section`),
    on top of :data:`DEFAULT_LOSS` (mode restoration: of :data:`RESTORATION_LOSS`, pixel terms only)."""
    from ..losses.terms import parse_loss_section

    from ..stages.head import read_heads

    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping of sections, got {type(raw).__name__}")
    raw = dict(raw)
    loss = raw.pop("loss", None)
    heads = read_heads(raw, where, TRAIN_HEAD_DEFAULTS)
    config = validate_schema(raw, SCHEMA, TOP_LEVEL, where)
    config["heads"] = heads
    _check_mode(config, where)
    if loss and config["mode"] == "restoration":  # pixel terms only: no heads to add
        config["loss"] = {**RESTORATION_LOSS, **parse_loss_section(loss, where)}
    elif loss and config["mode"] not in TASK_MODES:
        raise ConfigError(f"{where}: 'loss' lists the terms of modes restoration, {', '.join(TASK_MODES)}; "
                          f"mode {config['mode']!r} computes its own loss")
    else:
        config["loss"] = {**DEFAULT_LOSS, **parse_loss_section(loss, where)}
    check_ranges(config, RANGES, where)
    _check_values(config, where)
    return config


def _fail(where: str, key: str, message: str) -> None:
    raise ConfigError(f"{where}: '{key}' {message}")


def _check_mode(c: Dict[str, Any], where: str) -> None:
    from .training_task import list_training_tasks

    modes = [*MODES, *(m for m in list_training_tasks() if m not in MODES)]  # built-ins, then plug-ins
    if c["mode"] not in modes:
        _fail(where, "mode", f"must be one of {', '.join(modes)}, got {c['mode']!r}")


def _check_values(c: Dict[str, Any], where: str) -> None:
    from .training_task import training_task_class

    _check_mode(c, where)
    if c["best_metric"] not in BEST_METRICS:
        _fail(where, "best_metric", f"must be one of {', '.join(BEST_METRICS)}, got {c['best_metric']!r}")
    if c["mode"] not in TASK_MODES and c["best_metric"] != "psnr_y":
        _fail(where, "best_metric", f"mode {c['mode']!r} validates psnr_y only, got {c['best_metric']!r}")
    if c["steps"] is None and c["epochs"] is None:
        _fail(where, "steps", "or 'epochs' must be set (how long to train)")
    for key in ("steps", "epochs"):
        if c[key] is not None and c[key] < 1:
            _fail(where, key, f"must be >= 1, got {c[key]}")
    for key, low in (("accumulate", 1), ("save_every", 0), ("val_every", 1)):
        if c[key] < low:
            _fail(where, key, f"must be >= {low}, got {c[key]}")
    if c["time"] is not None and c["time"] <= 0:
        _fail(where, "time", f"must be > 0 hours or null, got {c['time']}")
    if c["grad_clip"] is not None and c["grad_clip"] <= 0:
        _fail(where, "grad_clip", f"must be > 0 or null, got {c['grad_clip']}")
    d = c["data"]
    if c["mode"] in TASK_MODES:
        _check_task(c, where)
    elif c["mode"] not in MODES:
        training_task_class(c["mode"]).check_config(c, where)  # a plug-in task checks its own data
    elif (d["paired"] is None) == (d["images"] is None):
        _fail(where, "data.paired", "or 'data.images' must be set, not both (paired root, or clean images + online rain)")
    if d["repeat"] != 1 and d["images"] is None:
        _fail(where, "data.repeat", "is for online rain on data.images (restoration mode)")
    for key, low in (("patch_size", 1), ("batch", 1), ("workers", 0), ("repeat", 1)):
        if d[key] < low:
            _fail(where, f"data.{key}", f"must be >= {low}, got {d[key]}")
    if d["val_split"] < 0 or (d["val_split"] >= 1 and d["val_split"] != int(d["val_split"])):
        _fail(where, "data.val_split", f"must be a fraction in [0, 1) or a whole count, got {d['val_split']}")
    if d["val"] is not None and d["val_split"]:
        _fail(where, "data.val", "and 'data.val_split' exclude each other; set one")
    if d["val_crop"] is not None and d["val_crop"] < 1:
        _fail(where, "data.val_crop", f"must be >= 1 or null, got {d['val_crop']}")
    if isinstance(d["rain_intensity"], list) and (d["images"] is None or c["mode"] in TASK_MODES):
        _fail(where, "data.rain_intensity", "as a [low, high] range is for online rain in mode 'restoration' "
              "(data.images); give one number")
    if d["rain"] is not None and d["rain_intensity"] is not None:
        _fail(where, "data.rain", "and 'data.rain_intensity' exclude each other (a zoo family has its own intensity)")
    if d["images"] is not None or c["mode"] in TASK_MODES:
        try:
            rain_spec(d)
        except (KeyError, ValueError, TypeError) as exc:
            message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
            key = "data.rain'" if d["rain"] is not None else "data.rain_preset' / 'data.rain_intensity'"
            raise ConfigError(f"{where}: '{key} invalid: {message}") from None
    o = c["optim"]
    for key in ("lr_detector", "lr_segmenter"):
        if o[key] <= 0:
            _fail(where, f"optim.{key}", f"must be > 0, got {o[key]}")
    betas = o["betas"]
    if len(betas) != 2 or not all(isinstance(b, Number) and not isinstance(b, bool) and 0 <= b < 1 for b in betas):
        _fail(where, "optim.betas", f"must be two numbers in [0, 1), got {betas!r}")
    for key in ("lr", "decay", "decay_steps"):
        if o[key] <= 0:
            _fail(where, f"optim.{key}", f"must be > 0, got {o[key]}")
    for key in ("min_lr", "weight_decay"):
        if o[key] < 0:
            _fail(where, f"optim.{key}", f"must be >= 0, got {o[key]}")


def rain_spec(data: Dict[str, Any]) -> Union["RainParams", Tuple[float, float], Any]:
    """The rain of ``config["data"]``: a rain-zoo model (``data.rain``, see :mod:`taskderain.rain.spec`),
    fixed :class:`~taskderain.rain.RainParams` (``rain_preset`` or one ``rain_intensity``) or an
    intensity range ``(low, high)`` (``rain_intensity: [low, high]``).

    Raises:
        ValueError: an unknown preset, an intensity outside [0, 1] or a range that is not two
            increasing numbers.
    """
    from ..rain.params import intensity_range, rain_params

    if data.get("rain") is not None:
        from ..rain.spec import rain_from_spec

        return rain_from_spec(data["rain"])
    intensity = data["rain_intensity"]
    if isinstance(intensity, list):
        return intensity_range(intensity)
    return rain_params(data["rain_preset"] if intensity is None else None, intensity)


def _check_task(c: Dict[str, Any], where: str) -> None:
    """Checks of the task modes: a detection YAML, a detector, a consistent segmenter and loss weights."""
    d, mode = c["data"], c["mode"]
    if d["detection"] is None:
        _fail(where, "data.detection", f"(an ultralytics data YAML) is required in mode {mode!r}")
    for key in ("paired", "images", "val"):
        if d[key] is not None:
            _fail(where, f"data.{key}", f"is for mode 'restoration'; mode {mode!r} reads data.detection")
    if d["imgsz"] < 32 or d["imgsz"] % 32:
        _fail(where, "data.imgsz", f"must be a positive multiple of 32, got {d['imgsz']}")
    if not 0 <= d["clean_prob"] <= 1:
        _fail(where, "data.clean_prob", f"must be a probability in [0, 1], got {d['clean_prob']}")
    if d["val_split_name"] is not None and d["val_split"]:
        _fail(where, "data.val_split_name", "and 'data.val_split' exclude each other; set one")
    if (d["masks"] is None) != (d["class_map"] is None) and d["class_map"] is not None:
        _fail(where, "data.class_map", "needs 'data.masks' (the mask folder)")
    from ..stages.head import head_class

    stages = MODE_STAGES[mode]
    tasks = {name: head_class(h["type"]).task for name, h in c["heads"].items()}
    for name, task in tasks.items():
        if task not in stages["heads"]:
            _fail(where, f"heads.{name}", f"(a {task} head) is not used in mode {mode!r} ({stages['doc']})")
    for task in stages["requires"]:
        if task not in tasks.values():
            _fail(where, "heads", f"needs a {task} head in mode {mode!r}, e.g. "
                  + ("detector: {type: yolo, weights: yolov8n.pt}" if task == "detection" else
                     "segmenter: {type: smp, arch: Unet, num_classes: N}"))
    has_seg = "segmentation" in tasks.values()
    if has_seg and d["masks"] is None:
        _fail(where, "data.masks", "(a mask folder) is required when a segmenter is configured")
    from ..losses.terms import list_loss_terms

    known = [*list_loss_terms(), *c["heads"]]  # registered terms and the heads' names
    for name, value in c["loss"].items():
        if name not in known and not (isinstance(value, dict) and value.get("fn")):
            raise ConfigError(f"{where}: unknown key 'loss.{name}' (a loss term: one of {', '.join(known)}, "
                              f"or {{fn: package.module:function, weight: w}})")
    validated = {"psnr_y": stages["derainer"], "map50_95": "detection" in tasks.values(),
                 "map50": "detection" in tasks.values(), "miou": has_seg}
    if not validated[c["best_metric"]]:
        need = {"psnr_y": "a derainer", "miou": "a segmenter"}.get(c["best_metric"], "a detector")
        usable = ", ".join(k for k, on in validated.items() if on)
        _fail(where, "best_metric", f"{c['best_metric']!r} needs {need}; mode {mode!r} validates {usable}")


def load_train_config(config: Union[PathLike, Dict[str, Any], None] = None,
                      overrides: Iterable[str] = ()) -> Dict[str, Any]:
    """Read a training YAML (or take a dict), apply ``key=value`` overrides, validate.

    Relative ``data.*`` / ``model.weights`` paths in a YAML resolve against the YAML's folder
    when they exist there.

    Raises:
        FileNotFoundError: no such YAML. ConfigError: bad YAML, unknown key, wrong type or value.
    """
    from ..spec import is_spec, override_tree, training_raw

    if isinstance(config, dict):
        raw, where, base = copy.deepcopy(config), "train config", None
    elif config is not None:
        raw, where, base = read_yaml(config, "train YAML"), str(config), Path(config).parent
    else:
        raw, where, base = {}, "train config", None
    if is_spec(raw):  # one spec (taskderain.spec): derainer / rain / heads sections and a train section
        raw = training_raw(merge(raw, override_tree(overrides)), where)
    else:
        raw = merge(raw, parse_overrides(overrides))
    return train_config_from_raw(raw, where, base)


def train_config_from_raw(raw: Dict[str, Any], where: str, base: Optional[Path] = None) -> Dict[str, Any]:
    """Validate a raw training mapping; relative paths resolve against ``base`` where they exist there."""
    out = validate(raw, where)
    if base is not None:
        resolve_relative(out, [("data", "paired"), ("data", "images"), ("data", "val"), ("model", "weights"),
                               ("data", "detection"), ("data", "masks"), ("data", "class_map")], base)
        resolve_relative(out["heads"], [(n, k) for n in out["heads"] for k in ("weights", "cfg")], base)
    return out


def with_heads(config: Dict[str, Any]) -> Dict[str, Any]:
    """``config`` with a ``heads`` section: as it is, or — a run's config from before named heads —
    its ``detector`` / ``segmenter`` sections read as the heads of those names (unset ones left out)."""
    if "heads" in config:
        return config
    from ..stages.head import read_heads

    legacy = {}
    det, seg = config.get("detector") or {}, config.get("segmenter") or {}
    if det.get("weights") or det.get("cfg"):
        legacy["detector"] = det
    if seg.get("weights") or seg.get("arch"):
        legacy["segmenter"] = seg
    return {**{k: v for k, v in config.items() if k not in ("detector", "segmenter")},
            "heads": read_heads(legacy, "train config (checkpoint)", TRAIN_HEAD_DEFAULTS)}


def lr_at(step: int, optim: Dict[str, Any], base: Optional[float] = None) -> float:
    """Learning rate after ``step`` optimizer steps: ``lr · decay^(step / decay_steps) + min_lr``.

    ``base`` replaces ``optim.lr`` (the per-stage groups: ``optim.lr_detector``, ``optim.lr_segmenter``).
    """
    lr = optim["lr"] if base is None else base
    return lr * optim["decay"] ** (step / optim["decay_steps"]) + optim["min_lr"]
