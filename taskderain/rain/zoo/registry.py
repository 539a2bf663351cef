"""Registry of rain families: a name maps to a :class:`RainModel` class or a factory (timm style)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, List, Type, Union

from ...registry import Registry
from .base import RainModel

Builder = Union[Type[RainModel], Callable[..., RainModel]]


@dataclass(frozen=True)
class RainEntry:
    """One registered family: ``build(**params)`` makes the model; ``description`` is its docstring's first line."""

    name: str
    build: Callable[..., RainModel]
    description: str


def _builtins() -> None:
    # Family modules register themselves on import.
    from . import accumulation, drizzle, garg_nayar, mix, raindrops, streaks  # noqa: F401


_REGISTRY: Registry[RainEntry] = Registry("rain family", _builtins)


def register_rain(name: str) -> Callable[[Builder], Builder]:
    """Decorator registering a :class:`RainModel` subclass (built with ``cls.create(**params)``)
    or a factory ``fn(**params) -> RainModel`` under ``name``."""

    def wrap(obj: Builder) -> Builder:
        is_class = isinstance(obj, type) and issubclass(obj, RainModel)
        if not (is_class or callable(obj)):
            raise TypeError(f"register_rain({name!r}) needs a RainModel subclass or a factory, got {obj!r}")
        doc = (obj.__doc__ or "").strip().splitlines()
        _REGISTRY.add(name, RainEntry(name, obj.create if is_class else obj, doc[0] if doc else ""))
        if is_class:  # only once registered: a refused class keeps its name
            obj.name = name
        return obj

    return wrap


def get_rain_entry(name: str) -> RainEntry:
    """The entry of family ``name``; a KeyError lists the known ones."""
    return _REGISTRY.get(name)


def list_rains() -> List[str]:
    """Names of all registered rain families (including ``mix``), sorted."""
    return _REGISTRY.names()


def create_rain(name: str, **params: Any) -> RainModel:
    """Build rain family ``name`` with its parameters, e.g. ``create_rain("garg_nayar", intensity=0.75)``.

    Raises:
        KeyError: unknown family (the known ones are listed).
        TypeError: an unknown parameter (the valid ones are listed). ValueError: a bad value
            (the parameter is named).
    """
    model = get_rain_entry(name).build(**params)
    if not isinstance(model, RainModel):
        raise TypeError(f"the factory of rain family {name!r} returned {type(model).__name__}, not a RainModel")
    return model

