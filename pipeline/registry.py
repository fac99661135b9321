"""Registries of backends: a name in a project file -> the class that does the work.

A registry lists each backend as ``"package.module:Class"`` and imports it
the first time it is asked for, so a project loads the one backend it names
and not the others' libraries. A better model is one new module and one
line in its registry; tests and plug-ins add entries with :meth:`Registry.register`.
"""

from __future__ import annotations

import importlib
from typing import Generic, TypeVar

from pydantic_core import PydanticCustomError

T = TypeVar("T")


class Registry(Generic[T]):
    """Backends of one kind (``kind``: 'separation', 'diarization') by name; ``default`` is the first."""

    def __init__(self, kind: str, entries: dict[str, str]) -> None:
        self.kind = kind
        self._entries = dict(entries)
        self._loaded: dict[str, T] = {}

    @property
    def default(self) -> str:
        return next(iter(self._entries))

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def register(self, name: str, target: str) -> None:
        """Add (or replace) backend ``name``, given as ``"module:Class"``."""
        self._entries[name] = target
        self._loaded.pop(name, None)

    def unregister(self, name: str) -> None:
        self._entries.pop(name)
        self._loaded.pop(name, None)

    def get(self, name: str) -> T:
        """The backend ``name`` (its class, instantiated once)."""
        if name not in self._loaded:
            module, _, attribute = self._entries[name].partition(":")
            self._loaded[name] = getattr(importlib.import_module(module), attribute)()
        return self._loaded[name]

    def check(self, name: str) -> str:
        """``name`` if registered; otherwise the error pydantic reports as 'not one of' the names."""
        if name not in self._entries:
            expected = ", ".join(repr(n) for n in self._entries)
            raise PydanticCustomError("literal_error", "Input should be {expected}", {"expected": expected})
        return name

    def taking(self, key: str) -> list[str]:
        """Names of the backends whose parameters include ``key`` (imports them all: for error messages)."""
        return [name for name in self._entries if key in self.get(name).Params.model_fields]
