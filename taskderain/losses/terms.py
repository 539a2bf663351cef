"""Named, weighted loss terms of task-driven training: a registry plus user terms by import path.

A training config's ``loss`` section lists the terms; the step's loss is ``Σ weight · term``,
and every term's unweighted value is logged (``log.csv`` column ``loss_<name>``, TensorBoard
``train/loss_<name>``)::

    loss:
      restoration: 1.0                       # a registered term, by name
      detection: 0.01                        # every detection head's loss (sum of its terms)
      detector: 0.01                         # or one head, by its pipeline name
      feature: {fn: my_pkg.losses:feature_l1, weight: 0.1, layers: [15, 18]}   # your own term

A term is a function ``term(step, **options) -> scalar tensor`` (or None when it does not
apply to this batch, e.g. no labels), given a :class:`Step`: the pipeline, the collated batch,
the rainy input, the derained output (computed once, with gradients) and the clean images. A
class works too: it is instantiated once with the options and called as ``term(step)``; a
registered term may carry ``applies(pipeline) -> bool`` (left out, unlogged, when False); if it
has ``state_dict`` / ``load_state_dict`` its state goes into the training checkpoint, so exact
resume still holds. Register your own with :func:`register_loss_term`, or name it by import path
(``module:attribute``) under ``fn``: no fork of the trainer.

Built-in terms:

* ``restoration``: :func:`~taskderain.losses.mspfn_loss` of the derained vs the clean images
  (Charbonnier + 0.05 · Laplacian edge term, MSPFN's loss); only while the derainer trains.
* ``psnr``: :func:`~taskderain.losses.psnr_loss`, minus the batch's mean per-image PSNR in dB
  (logged as such: ``loss_psnr`` −31.2 is 31.2 dB); balances light- and heavy-rain images. Per
  pixel its gradient is ``8.69 / RMSE`` times a Charbonnier loss's (~150–500x at 35–25 dB), so a
  weight of about 0.003 puts it beside ``restoration: 1``; only while the derainer trains.
* ``detection`` / ``segmentation``: the sum of the loss terms of every head of that task
  (:meth:`~taskderain.stages.TaskHead.loss`, per image): ultralytics' box + cls + dfl, smp's
  Dice + CE.
* ``<head name>``: that head's loss alone (any head of the pipeline, e.g. ``detector``).
* ``detector_features``, ``detection_consistency``, ``targeted_restoration``: the task-driven
  terms of :mod:`taskderain.losses.task_terms` (perceptual, consistency, targeted-adversarial).
* ``anchor``: :class:`~taskderain.losses.anchor.StartAnchor`, the low frequencies of the derained
  output held at those of the derainer's start (a frozen copy), against fine-tuning drift.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, ContextManager, Dict, List, Mapping, Optional, Tuple

import torch

from ..registry import Registry
from .restoration import mspfn_loss, psnr_loss

TermFn = Callable[..., Optional[torch.Tensor]]
_REGISTRY: Registry[TermFn] = Registry("loss term")


@dataclass
class Step:
    """What a loss term sees in one training step (one micro-batch).

    Attributes:
        pipeline: the :class:`~taskderain.pipeline.Pipeline` being trained (``pipeline.heads``).
        batch: the collated batch (``img``, ``clean``, labels: ``cls``, ``bboxes``, ``semantic``...).
        rainy: (B,3,H,W) the derainer's input, on the training device.
        derained: (B,3,H,W) float32 derainer output, with gradients when the derainer trains.
        clean: (B,3,H,W) the clean images, or None.
        step: the optimizer step being computed (0-based).
        amp_dtype: the autocast dtype of the run (None: fp32); :meth:`autocast` enters it.
    """

    pipeline: Any
    batch: Dict[str, Any]
    rainy: torch.Tensor
    derained: torch.Tensor
    clean: Optional[torch.Tensor] = None
    step: int = 0
    amp_dtype: Optional[torch.dtype] = None
    _head_losses: Dict[str, Dict[str, torch.Tensor]] = field(default_factory=dict, repr=False)

    def autocast(self) -> ContextManager:
        """The run's autocast context (bf16 with ``amp: true``), for terms that run a network."""
        from ..inference import autocast

        return autocast(self.derained.device, self.amp_dtype)

    @property
    def derainer_trains(self) -> bool:
        return derainer_trains(self.pipeline)

    def head_loss(self, name: str) -> Optional[Dict[str, torch.Tensor]]:
        """``pipeline.head(name).loss(derained, batch)`` (float32 terms, computed once per step), or
        None when the batch lacks the head's labels."""
        if name not in self._head_losses:
            head = self.pipeline.head(name)
            if not head.has_labels(self.batch):
                return None
            with self.autocast():
                self._head_losses[name] = {k: v.float() for k, v in head.loss(self.derained, self.batch).items()}
        return self._head_losses[name]


def derainer_trains(pipeline: Any) -> bool:
    """Whether the pipeline's derainer has trainable parameters."""
    return any(p.requires_grad for p in pipeline.derainer.parameters())


def register_loss_term(name: str) -> Callable[[TermFn], TermFn]:
    """Decorator registering a term function (or class) under ``name``."""

    def wrap(fn: TermFn) -> TermFn:
        return _REGISTRY.add(name, fn)

    return wrap


def get_loss_term(name: str) -> TermFn:
    """The registered term ``name``; a KeyError lists the names."""
    return _REGISTRY.get(name)


def list_loss_terms() -> List[str]:
    """Names of the registered terms (head names are terms too, per pipeline)."""
    return _REGISTRY.names()


def import_object(path: str, what: str = "loss term") -> Any:
    """The object at ``"package.module:attribute"`` (a dotted attribute path is allowed after the colon).

    Raises:
        ValueError: not ``module:attribute``; ImportError / AttributeError naming the path.
    """
    module, sep, attr = path.partition(":")
    if not sep or not module or not attr:
        raise ValueError(f"{what} {path!r} must be an import path 'package.module:attribute'")
    try:
        obj: Any = importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f"{what} {path!r}: cannot import module {module!r}: {exc}") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise AttributeError(f"{what} {path!r}: module {module!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise TypeError(f"{what} {path!r} is not callable ({type(obj).__name__})")
    return obj


@dataclass(frozen=True)
class TermSpec:
    """One validated entry of the ``loss`` section: name, weight, the function's import path or
    registered name, and its options."""

    name: str
    weight: float
    fn: Optional[str] = None
    options: Tuple[Tuple[str, Any], ...] = ()


def parse_loss_section(raw: Any, where: str = "train config") -> Dict[str, Any]:
    """Check a ``loss`` section (``{name: weight}`` or ``{name: {weight, fn, **options}}``) and return
    it normalised to ``{name: weight}`` / ``{name: {"weight": w, "fn": path, **options}}``.

    An entry with ``fn`` must import (so a typo fails before training). Raises a ``ConfigError``
    naming ``loss.<name>``.
    """
    from ..config import ConfigError

    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: 'loss' must be a mapping of term: weight, got {type(raw).__name__}")
    out: Dict[str, Any] = {}
    for name, value in raw.items():
        key = f"loss.{name}"
        if not isinstance(name, str) or not name or "." in name:
            raise ConfigError(f"{where}: loss term name {name!r} must be a non-empty string without dots")
        entry = dict(value) if isinstance(value, Mapping) else {"weight": value}
        weight = entry.get("weight", 1.0)
        if isinstance(weight, str):
            try:
                weight = float(weight)
            except ValueError:
                pass
        if not isinstance(weight, (int, float)) or isinstance(weight, bool) or not weight == weight or weight < 0:
            raise ConfigError(f"{where}: '{key}' weight must be a number >= 0, got {weight!r}")
        entry["weight"] = float(weight)
        fn = entry.get("fn")
        if fn is not None:
            if not isinstance(fn, str):
                raise ConfigError(f"{where}: '{key}.fn' must be an import path 'package.module:function', got {fn!r}")
            try:
                import_object(fn)
            except (ImportError, AttributeError, ValueError, TypeError) as exc:
                raise ConfigError(f"{where}: '{key}.fn': {exc}") from None
        elif set(entry) - {"weight"} and name not in _REGISTRY:
            raise ConfigError(f"{where}: '{key}' has options but no 'fn' and is not a registered term "
                              f"({', '.join(list_loss_terms())})")
        out[name] = entry["weight"] if set(entry) == {"weight"} else entry
    return out


class LossTerms:
    """The terms of a ``loss`` section bound to a pipeline: call it on a :class:`Step`.

    Terms with weight 0 are not computed. ``state_dict`` / ``load_state_dict`` carry the state of
    stateful (class) terms for the checkpoint.

    Raises:
        KeyError: a name that is neither registered, a head of the pipeline, nor given an ``fn``.
    """

    def __init__(self, section: Mapping[str, Any], pipeline: Any) -> None:
        self.terms: Dict[str, Tuple[float, Callable[[Step], Optional[torch.Tensor]]]] = {}
        self.objects: Dict[str, Any] = {}
        heads = dict(pipeline.heads) if pipeline is not None else {}
        for name, value in section.items():
            entry = dict(value) if isinstance(value, Mapping) else {"weight": float(value)}
            weight = float(entry.pop("weight", 1.0))
            fn_path = entry.pop("fn", None)
            if weight == 0:
                continue
            if fn_path is not None:
                self.terms[name] = (weight, self._bind(name, import_object(fn_path), entry))
            elif name in _REGISTRY and not getattr(_REGISTRY.get(name), "applies", lambda p: True)(pipeline):
                continue  # e.g. a segmentation term without a segmentation head
            elif name in _REGISTRY:
                self.terms[name] = (weight, self._bind(name, _REGISTRY.get(name), entry))
            elif name in heads:
                self.terms[name] = (weight, _head_term(name))
            else:
                raise KeyError(f"loss.{name}: not a registered loss term ({', '.join(list_loss_terms())}), "
                               f"not a head of the pipeline ({', '.join(heads) or 'none'}), and no 'fn' given")

    def _bind(self, name: str, fn: Any, options: Dict[str, Any]) -> Callable[[Step], Optional[torch.Tensor]]:
        _check_options(name, fn, options)
        if inspect.isclass(fn):
            try:
                obj = fn(**options)
            except (TypeError, ValueError) as exc:
                raise KeyError(f"loss.{name}: {exc}") from None
            self.objects[name] = obj
            return obj
        return (lambda step: fn(step, **options)) if options else fn

    @property
    def names(self) -> List[str]:
        return list(self.terms)

    def __call__(self, step: Step) -> Tuple[torch.Tensor, Dict[str, float]]:
        """``(Σ weight · term, {name: unweighted value})`` of the terms that apply to this step.

        Raises:
            ValueError: a term returned something that is not a scalar tensor.
        """
        total: Optional[torch.Tensor] = None
        parts: Dict[str, float] = {}
        for name, (weight, fn) in self.terms.items():
            value = fn(step)
            if value is None:
                continue
            if not isinstance(value, torch.Tensor) or value.numel() != 1:
                raise ValueError(f"loss term {name!r} must return a scalar tensor (or None), got "
                                 f"{type(value).__name__}{tuple(value.shape) if isinstance(value, torch.Tensor) else ''}")
            value = value.float().reshape(())
            parts[name] = float(value.detach())
            total = weight * value if total is None else total + weight * value
        if total is None:
            total = step.derained.sum() * 0.0
        return total, parts

    def state_dict(self) -> Dict[str, Any]:
        return {n: o.state_dict() for n, o in self.objects.items() if hasattr(o, "state_dict")}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for name, value in state.items():
            if name in self.objects and hasattr(self.objects[name], "load_state_dict"):
                self.objects[name].load_state_dict(value)


def _check_options(name: str, fn: Any, options: Mapping[str, Any]) -> None:
    """KeyError naming ``loss.<name>`` and what it takes when ``options`` has a key ``fn`` does not take."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):  # no signature to check against
        return
    if not inspect.isclass(fn):
        params = params[1:]  # the step
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return
    takes = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    unknown = sorted(set(options) - set(takes))
    if unknown:
        raise KeyError(f"loss.{name}: unknown option(s) {', '.join(unknown)}; it takes "
                       f"{', '.join(takes) or 'no options'} (and weight)")


def _head_term(name: str) -> Callable[[Step], Optional[torch.Tensor]]:
    def term(step: Step) -> Optional[torch.Tensor]:
        parts = step.head_loss(name)
        return None if parts is None else sum(parts.values())

    return term


def _task_term(task: str) -> Callable[[Step], Optional[torch.Tensor]]:
    def term(step: Step) -> Optional[torch.Tensor]:
        values = [step.head_loss(n) for n, h in step.pipeline.heads.items() if h.task == task]
        values = [sum(v.values()) for v in values if v is not None]
        return sum(values) if values else None

    term.__doc__ = f"The sum of the losses of every {task} head."
    term.applies = lambda pipeline: any(h.task == task for h in pipeline.heads.values())  # type: ignore[attr-defined]
    return term


def _pixel_term(loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], doc: str) -> TermFn:
    """A term of the derained vs the clean images (None without clean images or a trained derainer)."""

    def term(step: Step) -> Optional[torch.Tensor]:
        if step.clean is None or not step.derainer_trains:
            return None
        return loss(step.derained.float(), step.clean)

    term.__doc__ = doc
    term.applies = derainer_trains  # type: ignore[attr-defined]
    return term


restoration = register_loss_term("restoration")(
    _pixel_term(mspfn_loss, "MSPFN's loss of the derained vs the clean images, while the derainer trains."))
psnr = register_loss_term("psnr")(
    _pixel_term(psnr_loss, "Minus the mean per-image PSNR (dB) of the derained vs the clean images, while the "
                           "derainer trains."))
register_loss_term("detection")(_task_term("detection"))
register_loss_term("segmentation")(_task_term("segmentation"))

from . import anchor, task_terms  # noqa: E402,F401  (registers anchor, detector_features, detection_consistency, ...)
