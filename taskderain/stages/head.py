"""``TaskHead``: what every task stage after the derainer is, and the ``register_head`` registry.

A head takes (B, 3, H, W) float images in [0, 1] straight from a derainer and gives

* ``forward(images)``: its raw, differentiable output;
* ``predict(images)``: one prediction per image, in the pixels of ``images`` (eval mode, no autograd):
  :class:`~taskderain.stages.Detections` for ``task = "detection"``, a (H, W) long class-id mask
  for ``task = "segmentation"``;
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

import importlib
from typing import Any, Callable, ClassVar, Dict, List, Mapping, Optional, Tuple, Type, TypeVar

import torch

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
_REGISTRY: Dict[str, Type["TaskHead"]] = {}


class TaskHead(FreezableStage):
    """Base of the task heads (see the module docstring); freeze / unfreeze from :class:`FreezableStage`.

    Class attributes:
        type_name: the registry name (set by :func:`register_head`).
        task: ``"detection"`` or ``"segmentation"``.
        default_name: the name a pipeline gives the head when none is given (``detector``, ``segmenter``).
        batch_keys: keys of the collated batch its loss reads.
        metric_names: the validation metrics its evaluator reports (higher is better).
    """

    type_name: ClassVar[str] = ""
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


def register_head(type_name: str) -> Callable[[H], H]:
    """Class decorator registering a :class:`TaskHead` under ``type_name``."""

    def wrap(cls: H) -> H:
        if not (isinstance(cls, type) and issubclass(cls, TaskHead)):
            raise TypeError(f"register_head({type_name!r}) decorates TaskHead subclasses, got {cls!r}")
        if cls.task not in TASKS:
            raise ValueError(f"head {type_name!r}: task must be one of {', '.join(TASKS)}, got {cls.task!r}")
        if _REGISTRY.get(type_name, cls) is not cls:
            raise ValueError(f"head type {type_name!r} is registered twice")
        cls.type_name = type_name
        _REGISTRY[type_name] = cls
        return cls

    return wrap


def head_class(type_name: str) -> Type[TaskHead]:
    """The class registered as ``type_name`` (built-ins imported on first use); a KeyError lists the types."""
    if type_name not in _REGISTRY and type_name in BUILTIN_HEADS:
        importlib.import_module(BUILTIN_HEADS[type_name])
    try:
        return _REGISTRY[type_name]
    except KeyError:
        raise KeyError(f"unknown head type {type_name!r}; available: {', '.join(list_heads())}") from None


def list_heads() -> List[str]:
    """Registered head types (the built-ins included), sorted."""
    return sorted(set(_REGISTRY) | set(BUILTIN_HEADS))


def create_head(type_name: str, **options: Any) -> TaskHead:
    """``head_class(type_name).from_spec(**options)``; a TypeError names the type on bad options."""
    cls = head_class(type_name)
    try:
        return cls.from_spec(**options)
    except TypeError as exc:
        raise TypeError(f"head {type_name!r}: {exc}") from None
