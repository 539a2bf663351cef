"""``TaskHead``: what every task stage after the derainer is, and the ``register_head`` registry.

A head takes (B, 3, H, W) float images in [0, 1] straight from a derainer and gives

* ``forward(images)``: its raw, differentiable output;
* ``predict(images)``: one prediction per image, in the pixels of ``images`` (eval mode, no autograd):
  :class:`~taskderain.stages.Detections` for ``task = "detection"``, a (H, W) long class-id mask
  for ``task = "segmentation"``; ``predict_for_metrics(images)`` the same under the metric protocol;
* ``loss(images, batch)``: ``{term: scalar}``, each term a mean over the images (per image, so a
  weight does not depend on the batch size), differentiable with respect to ``images``; it reads
  only ``batch_keys`` of the collated batch;
* ``evaluator(names)``: a fresh metric accumulator for its predictions (pycocotools' COCOeval for
  detection heads, the confusion-matrix mIoU for segmentation heads), whose ``compute()`` gives
  ``metric_names``.

Heads register themselves by a type name, as derainers do::

    @register_head("my_detector")
    class MyDetector(TaskHead):
        task = "detection"
        ...
        @classmethod
        def from_spec(cls, **options): ...

and ``create_head("my_detector", **options)`` builds one; a pipeline spec names it as
``heads: {det: {type: my_detector, ...}}``. The built-in types are imported on first use.
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar, Dict, List, Mapping, Optional, Tuple, Type, TypeVar

import torch

from ..registry import Registry
from .freezing import FreezableStage

#: the tasks a head can have: which evaluator, metrics and batch keys it stands for.
TASKS = ("detection", "segmentation")
#: built-in head types → the module that registers them (imported on first use).
BUILTIN_HEADS = {
    "yolo": "taskderain.stages.detector",
    "smp": "taskderain.stages.segmenter",
    "torchvision": "taskderain.stages.torchvision_detector",
}

H = TypeVar("H", bound=Type["TaskHead"])
_REGISTRY: Registry[Type["TaskHead"]] = Registry("head type", BUILTIN_HEADS)


class TaskHead(FreezableStage):
    """Base of the task heads (see the module docstring); freeze / unfreeze from :class:`FreezableStage`.

    Class attributes:
        type_name: the registry name (set by :func:`register_head`).
        OPTIONS: the spec options ``from_spec`` takes, with types and defaults.
        task: ``"detection"`` or ``"segmentation"``.
        default_name: the name a pipeline gives the head when none is given (``detector``, ``segmenter``).
        batch_keys: keys of the collated batch its loss reads.
        metric_names: the validation metrics its evaluator reports (higher is better).
    """

    type_name: ClassVar[str] = ""
    #: spec options: {key: (accepted types, default)} as in taskderain.config (None = may be null);
    #: unknown keys in a spec entry are errors naming ``heads.<name>.<key>``.
    OPTIONS: ClassVar[Dict[str, Tuple[tuple, Any]]] = {}
    #: inclusive (low, high) bounds of numeric options (None = unbounded), checked with the spec
    RANGES: ClassVar[Dict[str, Tuple[Any, Any]]] = {}
    task: ClassVar[str] = ""
    default_name: ClassVar[str] = "head"
    batch_keys: ClassVar[Tuple[str, ...]] = ()
    metric_names: ClassVar[Tuple[str, ...]] = ()

    def forward(self, images: torch.Tensor) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def predict(self, images: torch.Tensor) -> List[Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def loss(self, images: torch.Tensor, batch: Mapping[str, Any]) -> Dict[str, torch.Tensor]:  # pragma: no cover
        raise NotImplementedError

    def predict_for_metrics(self, images: torch.Tensor, letterboxed: bool = False) -> List[Any]:
        """:meth:`predict` as the metric protocol wants it (e.g. a detector's low-confidence,
        multi-label NMS without a time limit); what the evaluator scores. ``letterboxed=True``: the
        images are already on the evaluator's canvas (ultralytics' validator letterbox, H and W
        multiples of 32): a head with a letterbox of its own skips it; results are in their pixels."""
        return self.predict(images)

    def save(self, path: Any, metadata: Optional[Mapping[str, Any]] = None, half: bool = False) -> Any:
        """Write the head as a stand-alone checkpoint its type loads back (``weights=path``); returns the path."""
        raise NotImplementedError(f"head type {self.type_name!r} cannot save itself")

    def evaluator(self, names: Optional[Mapping[int, str]] = None) -> Any:
        """A fresh metric accumulator for this head's predictions (see the module docstring)."""
        from ..metrics import DetectionEvaluator, SegmentationEvaluator

        if self.task == "detection":
            return DetectionEvaluator(names if names is not None else getattr(self, "names", None))
        return SegmentationEvaluator(self.num_classes, self.ignore_index)

    def has_labels(self, batch: Mapping[str, Any]) -> bool:
        """Whether ``batch`` carries what :meth:`loss` reads."""
        return all(k in batch for k in self.batch_keys)

    @classmethod
    def from_spec(cls, **options: Any) -> "TaskHead":
        """Build from a pipeline spec entry's options (everything but ``type``)."""
        return cls(**options)

    @classmethod
    def complete_spec(cls, spec: Dict[str, Any], key: str) -> Dict[str, Any]:
        """Check a spec entry's options together (e.g. ``weights`` or ``cfg``, not both) and fill
        what they imply; ``key`` is ``heads.<name>`` for messages. Raises ValueError naming the key."""
        return spec


def register_head(type_name: str) -> Callable[[H], H]:
    """Class decorator registering a :class:`TaskHead` under ``type_name``."""

    def wrap(cls: H) -> H:
        if not (isinstance(cls, type) and issubclass(cls, TaskHead)):
            raise TypeError(f"register_head({type_name!r}) decorates TaskHead subclasses, got {cls!r}")
        if cls.task not in TASKS:
            raise ValueError(f"head {type_name!r}: task must be one of {', '.join(TASKS)}, got {cls.task!r}")
        _REGISTRY.add(type_name, cls)
        cls.type_name = type_name
        return cls

    return wrap


def head_class(type_name: str) -> Type[TaskHead]:
    """The class registered as ``type_name`` (built-ins imported on first use); a KeyError lists the types."""
    return _REGISTRY.get(type_name)


def list_heads() -> List[str]:
    """Registered head types (the built-ins included), sorted."""
    return _REGISTRY.names()


def head_spec(name: str, entry: Any, where: str = "config") -> Dict[str, Any]:
    """A checked ``heads.<name>`` entry: ``{"type": ..., **options with defaults}`` (see ``OPTIONS``).

    Raises:
        ConfigError: no or an unknown ``type``, an unknown option or a value of the wrong type,
            naming ``heads.<name>.<key>``.
    """
    from ..config import ConfigError, check_value

    key = f"heads.{name}"
    if not isinstance(entry, Mapping):
        raise ConfigError(f"{where}: '{key}' must be a mapping with a 'type' ({', '.join(list_heads())}), "
                          f"got {type(entry).__name__}")
    entry = dict(entry)
    kind = entry.pop("type", None)
    if not isinstance(kind, str):
        raise ConfigError(f"{where}: '{key}.type' must name a head type ({', '.join(list_heads())}), got {kind!r}")
    try:
        cls = head_class(kind)
    except KeyError as exc:
        raise ConfigError(f"{where}: '{key}.type': {exc.args[0]}") from None
    if cls.OPTIONS:
        unknown = sorted(set(entry) - set(cls.OPTIONS))
        if unknown:
            raise ConfigError(f"{where}: unknown key '{key}.{unknown[0]}' for head type {kind!r} "
                              f"(known: {', '.join(sorted(cls.OPTIONS))})")
        entry = {k: check_value(entry.get(k, default), types, f"{key}.{k}", where)
                 for k, (types, default) in cls.OPTIONS.items()}
    return {"type": kind, **entry}


#: the sections of earlier versions, each one head: name → type (read into ``heads``)
LEGACY_HEADS = {"detector": "yolo", "segmenter": "smp"}


def read_heads(raw: Dict[str, Any], where: str,
               defaults: Optional[Mapping[str, Mapping[str, Any]]] = None) -> Dict[str, Dict[str, Any]]:
    """``heads`` of a raw config (popped from it): ``{name: {type, ...}}`` checked per type
    (:func:`~taskderain.stages.head.head_spec`). A ``detector:`` / ``segmenter:`` section (the
    layout before named heads, or an override such as ``detector.weights=x``) is the head of that
    name (type ``yolo`` / ``smp`` unless ``heads`` says otherwise); ``null`` (or ``{}``) removes it.
    ``defaults``: per head type, option values that replace the type's own defaults here (e.g.
    training validates with ``conf: 0.001``).

    Raises:
        ConfigError: naming ``heads.<name>.<key>`` (see :func:`head_spec`).
    """
    from ..config import ConfigError, check_ranges

    heads = raw.pop("heads", None)
    if heads is None:
        heads = {}
    if not isinstance(heads, dict):
        raise ConfigError(f"{where}: 'heads' must be a mapping of name: {{type: ..., ...}}, got {type(heads).__name__}")
    heads = {str(k): v for k, v in heads.items()}
    for name, kind in LEGACY_HEADS.items():
        if name not in raw:
            continue
        value = raw.pop(name)
        if value is None or (value == {} and name not in heads):  # null / an empty section: no such head
            heads.pop(name, None)
            continue
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: '{name}' must be a mapping (or null), got {type(value).__name__}")
        base = heads.get(name) if isinstance(heads.get(name), dict) else {"type": kind}
        heads[name] = {**base, **value}
    out = {}
    for name, entry in heads.items():
        if entry is None:
            continue
        if not name or "." in name or name == "derainer":
            raise ConfigError(f"{where}: head name {name!r} is not allowed (no dots, not 'derainer')")
        if isinstance(entry, Mapping) and isinstance(entry.get("type"), str):
            entry = {**(defaults or {}).get(entry["type"], {}), **entry}
        spec = head_spec(name, entry, where)
        ranges = getattr(head_class(spec["type"]), "RANGES", {})
        check_ranges({"heads": {name: spec}}, {f"heads.{name}.{k}": r for k, r in ranges.items()}, where)
        try:
            spec = head_class(spec["type"]).complete_spec(spec, f"heads.{name}")
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        out[name] = spec
    return out


def create_head(type_name: str, **options: Any) -> TaskHead:
    """``head_class(type_name).from_spec(**options)``; a TypeError names the type on bad options."""
    cls = head_class(type_name)
    try:
        return cls.from_spec(**options)
    except TypeError as exc:
        raise TypeError(f"head {type_name!r}: {exc}") from None
