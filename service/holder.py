"""The models being served, one :class:`service.serving.Serving` per alias, swapped atomically.

Readers call :meth:`ModelHolder.get` once per request and keep that reference, so a request in flight
finishes on the version it started with; a swap replaces the whole mapping in one assignment.
"""

from __future__ import annotations

import threading
from types import MappingProxyType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping

    from service.serving import Serving


class ModelHolder:
    """Alias -> serving version; lock-free reads, serialised writes."""

    def __init__(self) -> None:
        self._slots: Mapping[str, Serving] = MappingProxyType({})
        self._write = threading.Lock()

    def get(self, alias: str) -> Serving | None:
        return self._slots.get(alias)

    def snapshot(self) -> Mapping[str, Serving]:
        return self._slots

    def swap(self, alias: str, serving: Serving) -> Serving | None:
        """Serve ``serving`` for ``alias`` from now on; returns the version it replaced."""
        with self._write:
            old = self._slots.get(alias)
            self._slots = MappingProxyType({**self._slots, alias: serving})
            return old

    def drop(self, alias: str) -> Serving | None:
        with self._write:
            slots = dict(self._slots)
            old = slots.pop(alias, None)
            self._slots = MappingProxyType(slots)
            return old
