"""Registry of derainer presets: a name maps to an architecture class and a config record."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Type

from ..registry import Registry
from .base import Derainer


@dataclass(frozen=True)
class DerainerEntry:
    """One registered preset: ``cls(**config())`` builds it."""

    name: str
    cls: Type[Derainer]
    config: Callable[[], Dict[str, Any]]
    description: str


def _builtins() -> None:
    # Architecture modules register themselves on import.
    from . import identity, mspfn, prenet  # noqa: F401


_REGISTRY: Registry[DerainerEntry] = Registry("derainer", _builtins)


def register_derainer(name: str, cls: Type[Derainer]) -> Callable:
    """Decorator for a function returning the preset's config dict (its docstring describes it)."""

    def wrap(fn: Callable[[], Dict[str, Any]]) -> Callable[[], Dict[str, Any]]:
        doc = (fn.__doc__ or "").strip().splitlines()
        _REGISTRY.add(name, DerainerEntry(name, cls, fn, doc[0] if doc else ""))
        return fn

    return wrap


def get_entry(name: str) -> DerainerEntry:
    """The registry entry for ``name``; a clear error lists the known names."""
    return _REGISTRY.get(name)


def list_derainers() -> List[str]:
    """Names of all registered derainer presets, sorted."""
    return _REGISTRY.names()


def build_derainer(name: str, **overrides: Any) -> Derainer:
    """Instantiate preset ``name`` with random weights; ``overrides`` replace config fields."""
    entry = get_entry(name)
    config = {**entry.config(), **overrides}
    try:
        model = entry.cls(**config)
    except TypeError as exc:
        raise TypeError(f"bad option for derainer {name!r}: {exc}") from None
    model.config = config
    model.preset = name
    return model

