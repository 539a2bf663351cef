"""Training callbacks: hooks into the :class:`~taskderain.train.loop.Trainer` without forking it.

Subclass :class:`Callback` and override the hooks you need; pass instances to
``train(config, callbacks=[...])`` or name them in the config by import path::

    callbacks:
      - my_pkg.hooks:EarlyStop                         # a class, built with no arguments
      - {fn: my_pkg.hooks:EarlyStop, patience: 3}      # or with options

Hooks run on every rank under torchrun (``trainer.rank`` tells them apart), in list order:

* ``on_step_end(trainer)``: after every optimizer step (after any save); ``trainer.last_parts``
  holds the step's loss terms. Setting ``trainer.total_steps = trainer.step`` ends the run.
* ``on_validation_end(trainer, metrics)``: after each validation (``{metric: value}``).
* ``on_epoch_end(trainer)``: after an epoch's validation, before its checkpoint.
* ``on_checkpoint(trainer, path)``: after ``last.pt`` / ``best.pt`` is written.

A callback with state returns it from ``state_dict()`` (tensors, numbers, lists, dicts) and takes
it back in ``load_state_dict(state)``: it is stored in every checkpoint, so ``resume=true``
continues the callback exactly where it was.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Union


class Callback:
    """Base class of training callbacks (every hook does nothing by default)."""

    def on_step_end(self, trainer: Any) -> None:
        pass

    def on_validation_end(self, trainer: Any, metrics: Dict[str, float]) -> None:
        pass

    def on_epoch_end(self, trainer: Any) -> None:
        pass

    def on_checkpoint(self, trainer: Any, path: Path) -> None:
        pass

    def state_dict(self) -> Dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        pass


class StepFunction(Callback):
    """``fn(trainer)`` after every optimizer step (the ``train(callback=...)`` form)."""

    def __init__(self, fn: Callable[[Any], None]) -> None:
        self.fn = fn

    def on_step_end(self, trainer: Any) -> None:
        self.fn(trainer)


CallbackSpec = Union[str, Mapping[str, Any], Callback]


def build_callbacks(specs: Iterable[CallbackSpec], where: str = "train config") -> List[Callback]:
    """Callbacks from config entries (import path, or ``{fn: path, **options}``) or instances.

    Raises:
        ConfigError: an entry that does not import or does not give a :class:`Callback`.
    """
    from ..config import ConfigError
    from ..losses.terms import import_object

    out: List[Callback] = []
    for i, spec in enumerate(specs or ()):
        if isinstance(spec, Callback):
            out.append(spec)
            continue
        entry = {"fn": spec} if isinstance(spec, str) else dict(spec) if isinstance(spec, Mapping) else None
        if entry is None or not isinstance(entry.get("fn"), str):
            raise ConfigError(f"{where}: 'callbacks[{i}]' must be an import path or {{fn: path, ...options}}, got {spec!r}")
        path = entry.pop("fn")
        try:
            obj = import_object(path, "callback")
            made = obj(**entry) if inspect.isclass(obj) else obj
        except (ImportError, AttributeError, ValueError, TypeError) as exc:
            raise ConfigError(f"{where}: 'callbacks[{i}]': {exc}") from None
        if not isinstance(made, Callback):
            raise ConfigError(f"{where}: 'callbacks[{i}]' ({path}) is not a taskderain.train.Callback "
                              f"(got {type(made).__name__})")
        out.append(made)
    return out


def callback_states(callbacks: Sequence[Callback]) -> List[Dict[str, Any]]:
    """Every callback's ``state_dict()``, in order (for the checkpoint)."""
    return [c.state_dict() for c in callbacks]


def load_callback_states(callbacks: Sequence[Callback], states: Optional[Sequence[Mapping[str, Any]]]) -> None:
    """Give each callback its stored state back (a checkpoint without states leaves them as built)."""
    for callback, state in zip(callbacks, states or ()):
        callback.load_state_dict(state)
