"""Name -> factory registries, one per kind of part (networks, losses, datasets, ...).

Parts register themselves with a decorator; configs and CLI choices are read from
the registry keys, so adding a part never means editing a list somewhere else.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Iterator, TypeVar

from .errors import UnknownName

T = TypeVar("T")


def _origin(obj: Any) -> str:
    """Where an object was defined: ``module.qualname``; for a holder of parts (a loss's two
    functions, a family's two classes), where its parts were defined, else its value."""
    if hasattr(obj, "__qualname__"):
        return f"{obj.__module__}.{obj.__qualname__}"
    parts = [_origin(v) for v in getattr(obj, "__dict__", {}).values() if hasattr(v, "__qualname__")]
    return " + ".join(parts) or repr(obj)


class Registry:
    """A named mapping from string keys to objects, validated on registration."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: Dict[str, Any] = {}

    def register(self, name: str, obj: Any = None) -> Callable[[T], T] | Any:
        """Register ``obj`` under ``name``; without ``obj``, return a decorator."""
        if obj is not None:
            self._add(name, obj)
            return obj

        def decorator(fn: T) -> T:
            self._add(name, fn)
            return fn

        return decorator

    def _add(self, name: str, obj: Any) -> None:
        if not name or name != name.strip():
            raise ValueError(f"{self.kind} registry: invalid name {name!r}")
        old = self._items.get(name)
        if old is not None and _origin(old) != _origin(obj):
            raise ValueError(
                f"{self.kind} registry: {name!r} is already registered by {_origin(old)}; "
                f"{_origin(obj)} needs another name")
        # The same definition run again (a notebook cell re-run, a module reloaded) replaces the old one.
        self._items[name] = obj

    def get(self, name: str) -> Any:
        try:
            return self._items[name]
        except KeyError:
            raise UnknownName(
                f"unknown {self.kind} {name!r}; choose one of: {', '.join(sorted(self._items))} (a part of your "
                "own registers when its module is imported: name the module in the config's plugins)"
            ) from None

    def __contains__(self, name: str) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))

    def names(self) -> list[str]:
        return sorted(self._items)

    def items(self):
        return sorted(self._items.items())

    def __len__(self) -> int:
        return len(self._items)
