"""One kind of registry for every name mgbench looks things up by (architectures, prefix loaders,
training methods, corruptions, condition types and their summaries), as timm's model registry and
lm-evaluation-harness's task registry: a decorator registers, a second registration of a name is
refused, and an unknown name is an :class:`~mgbench.errors.InputError` of one line that says
what to use instead.

A registry may name *plugins*: modules that register a name when imported. Looking that name up
imports its module first (once), so the registry itself imports none of them
(:data:`mgbench.conditions.PLUGINS`).
"""

from __future__ import annotations

import importlib
from typing import Callable, Generic, Mapping, TypeVar

from mgbench.errors import InputError

T = TypeVar("T")


class Registry(Generic[T]):
    """Entries of type ``T`` by name.

    ``kind`` names an entry in messages (``unknown {kind} 'x': ...``); ``fix`` is what the message
    says to do instead (default: ``use one of`` the registered names); ``plugins`` maps a name to
    the module that registers it; ``ordered`` lists names in the order they were registered
    (where that order means something: the attacks of ``--help`` and ``all``), else sorted.
    """

    def __init__(self, kind: str, *, fix: str | None = None, plugins: Mapping[str, str] | None = None,
                 ordered: bool = False) -> None:
        self.kind = kind
        self.fix = fix
        self.plugins = dict(plugins or {})
        self.ordered = ordered
        self._entries: dict[str, T] = {}

    def add(self, name: str, entry: T) -> T:
        """Register ``entry`` under ``name``; a name registered twice is a programming error."""
        if name in self._entries:
            raise RuntimeError(f"{self.kind} {name!r} registered twice")
        self._entries[name] = entry
        return entry

    def register(self, name: str) -> Callable[[T], T]:
        """A decorator that registers what it decorates under ``name`` and returns it unchanged."""
        return lambda entry: self.add(name, entry)

    def unregister(self, name: str) -> None:
        """Remove ``name`` (an entry registered for a while, e.g. by a test)."""
        del self._entries[name]

    def _load(self, name: object) -> None:
        if isinstance(name, str) and name not in self._entries and name in self.plugins:
            importlib.import_module(self.plugins[name])

    def __contains__(self, name: object) -> bool:
        self._load(name)
        return isinstance(name, str) and name in self._entries

    def get(self, name: object) -> T:
        """The entry of ``name``, or a one-line :class:`InputError` that says what to use instead."""
        self._load(name)
        if isinstance(name, str) and name in self._entries:
            return self._entries[name]
        fix = self.fix or f"use one of {', '.join(self.names())}"
        raise InputError(f"unknown {self.kind} {name!r}: {fix}")

    def names(self) -> list[str]:
        """Every registered name, sorted or in registration order (every plugin imported first)."""
        for name in self.plugins:
            self._load(name)
        return list(self._entries) if self.ordered else sorted(self._entries)

    def items(self) -> list[tuple[str, T]]:
        """``(name, entry)`` pairs, in the order of :meth:`names`."""
        return [(name, self._entries[name]) for name in self.names()]
