"""``Registry``: the one name → object table behind every extension point (derainer presets,
rain families, task heads, loss terms, training tasks).

Built-ins register themselves when their modules are imported; a registry imports them on first
use (``builtins``: a function importing them all, or ``{name: module}`` importing one module per
name when that name is asked for), so ``import taskderain`` stays cheap. Plug-ins call
:meth:`Registry.add` (or a module's ``register_*`` decorator, which does). Unknown names raise a
``KeyError`` that lists the known ones; a name registered twice for another object raises.
"""

from __future__ import annotations

import importlib
from typing import Callable, Dict, Generic, Iterator, List, Mapping, Optional, TypeVar, Union

T = TypeVar("T")


class Registry(Generic[T]):
    """A named table of ``kind`` objects (``"derainer"``, ``"rain family"``, ...).

    Args:
        kind: what the names are, for messages (``unknown derainer 'x'; available: ...``).
        builtins: a function importing every built-in module, or ``{name: module}`` for
            built-ins imported one by one when their name is looked up.
    """

    def __init__(self, kind: str, builtins: Union[Callable[[], None], Mapping[str, str], None] = None) -> None:
        self.kind = kind
        self._items: Dict[str, T] = {}
        self._load_all = builtins if callable(builtins) else None
        self._lazy: Dict[str, str] = dict(builtins) if isinstance(builtins, Mapping) else {}
        self._loaded = self._load_all is None

    def add(self, name: str, obj: T) -> T:
        """Register ``obj`` as ``name`` (again with the same object is allowed) and return it.

        Raises:
            ValueError: ``name`` already holds another object.
        """
        if self._items.get(name, obj) is not obj:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._items[name] = obj
        return obj

    def remove(self, name: str) -> T:
        """Unregister ``name`` and return its object (tests, plug-in reloads)."""
        return self._items.pop(name)

    def get(self, name: str) -> T:
        """The object of ``name``; a KeyError lists the known names."""
        self._ensure(name)
        try:
            return self._items[name]
        except KeyError:
            raise KeyError(f"unknown {self.kind} {name!r}; available: {', '.join(self.names())}") from None

    def names(self) -> List[str]:
        """Every registered name (built-ins included), sorted."""
        self._ensure(None)
        return sorted(set(self._items) | set(self._lazy))

    def __contains__(self, name: object) -> bool:
        self._ensure(None)
        return isinstance(name, str) and (name in self._items or name in self._lazy)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def _ensure(self, name: Optional[str]) -> None:
        if not self._loaded:
            self._loaded = True  # first: the imports register into this very table
            try:
                self._load_all()  # type: ignore[misc]
            except BaseException:
                self._loaded = False
                raise
        if name is not None and name not in self._items and name in self._lazy:
            importlib.import_module(self._lazy[name])

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self._items)} registered)"
