"""The online store: what each shopper did recently, as the scorer needs it, keyed by pseudonym only.

Per shopper: the recent item sequence (oldest first, bounded), the seen and bought sets (bounded, newest
kept) and a TTL after the last write. Plus the stock overrides events carried (item id -> in stock).
:class:`InMemoryStore` serves one process (the embedded default); :class:`service.redis_store.RedisStore`
is shared by every replica. Callers pseudonymise user ids before they get here (:mod:`service.identity`).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

#: Event types that mark an item as bought (excluded from every later recommendation).
BOUGHT_TYPES = frozenset({"purchase"})


@dataclass(frozen=True)
class OnlineEvent:
    """One event as the store keeps it (``user`` is a pseudonym)."""

    user: str
    item_id: str
    event_type: str
    ts: datetime
    in_stock: bool | None = None


@dataclass(frozen=True)
class UserState:
    """One shopper's online state (empty for an unknown or expired shopper)."""

    recent: tuple[str, ...] = ()
    seen: frozenset[str] = frozenset()
    bought: frozenset[str] = frozenset()

    @property
    def known(self) -> bool:
        return bool(self.recent or self.seen or self.bought)


@dataclass(frozen=True)
class SeedRow:
    """One shopper of the online seed (``core.online_seed``)."""

    user: str
    recent: Sequence[str]
    bought: Sequence[str]


@dataclass(frozen=True)
class StoreLimits:
    """Bounds of the per-shopper state."""

    history_length: int = 50
    seen_length: int = 500
    ttl_s: int = 30 * 86_400


class OnlineStore(Protocol):
    """What the routes need from an online store."""

    def state(self, user: str) -> tuple[UserState, dict[str, bool]]:
        """The shopper's state and the current stock overrides, in one round trip."""
        ...

    def states(self, users: Sequence[str]) -> list[tuple[UserState, dict[str, bool]]]:
        """:meth:`state` of several shoppers (in order, repeats allowed), in one round trip."""
        ...

    def add_events(self, events: Sequence[OnlineEvent]) -> None:
        """Append events (in the given order) to their shoppers' state; record stock overrides."""
        ...

    def forget(self, user: str) -> bool:
        """Delete the shopper's state and keep them out of later seeds; True when there was any state."""
        ...

    def load_seed(self, digest: str, rows: Iterable[SeedRow]) -> bool:
        """Load a seed once per digest (False: already loaded, by this or another replica). Shoppers that
        already have online state keep it (live events are newer than the seed); forgotten ones are skipped
        (a seed built before ``recops data forget`` ran must not bring them back)."""
        ...

    def ping(self) -> bool:
        """True when the store answers."""
        ...

    def close(self) -> None: ...


@dataclass
class _Entry:
    recent: list[str] = field(default_factory=list)
    seen: OrderedDict[str, None] = field(default_factory=OrderedDict)
    bought: OrderedDict[str, None] = field(default_factory=OrderedDict)
    expires: float = 0.0


def _remember(bounded: OrderedDict[str, None], item: str, limit: int) -> None:
    bounded.pop(item, None)
    bounded[item] = None
    while len(bounded) > limit:
        bounded.popitem(last=False)


class InMemoryStore:
    """A process-local store (thread-safe); state is lost on restart. At most ``max_users`` shoppers are
    kept (least recently written dropped first)."""

    def __init__(self, limits: StoreLimits, max_users: int = 1_000_000) -> None:
        self.limits = limits
        self.max_users = max_users
        self._users: OrderedDict[str, _Entry] = OrderedDict()
        self._stock: dict[str, bool] = {}
        self._seeds: set[str] = set()
        self._forgotten: set[str] = set()
        self._lock = threading.Lock()

    def _live(self, user: str, now: float) -> _Entry | None:
        entry = self._users.get(user)
        if entry is not None and entry.expires <= now:
            del self._users[user]
            return None
        return entry

    def state(self, user: str) -> tuple[UserState, dict[str, bool]]:
        with self._lock:
            entry = self._live(user, time.monotonic())
            stock = self._stock  # replaced, never mutated, on write: callers may keep it
            if entry is None:
                return UserState(), stock
            return UserState(tuple(entry.recent), frozenset(entry.seen), frozenset(entry.bought)), stock

    def states(self, users: Sequence[str]) -> list[tuple[UserState, dict[str, bool]]]:
        return [self.state(user) for user in users]

    def add_events(self, events: Sequence[OnlineEvent]) -> None:
        limits = self.limits
        with self._lock:
            now = time.monotonic()
            for event in events:
                entry = self._live(event.user, now) or _Entry()
                entry.recent.append(event.item_id)
                del entry.recent[: -limits.history_length]
                _remember(entry.seen, event.item_id, limits.seen_length)
                if event.event_type in BOUGHT_TYPES:
                    _remember(entry.bought, event.item_id, limits.seen_length)
                entry.expires = now + limits.ttl_s
                self._users[event.user] = entry
                self._users.move_to_end(event.user)
                if event.in_stock is not None and self._stock.get(event.item_id) != event.in_stock:
                    self._stock = {**self._stock, event.item_id: event.in_stock}
            while len(self._users) > self.max_users:
                self._users.popitem(last=False)

    def forget(self, user: str) -> bool:
        with self._lock:
            self._forgotten.add(user)
            return self._users.pop(user, None) is not None

    def load_seed(self, digest: str, rows: Iterable[SeedRow]) -> bool:
        limits = self.limits
        with self._lock:
            if digest in self._seeds:
                return False
            self._seeds.add(digest)
            now = time.monotonic()
            for row in rows:
                if row.user in self._forgotten or self._live(row.user, now) is not None:
                    continue
                entry = _Entry(recent=list(row.recent)[-limits.history_length :], expires=now + limits.ttl_s)
                for item in row.recent:
                    _remember(entry.seen, item, limits.seen_length)
                for item in row.bought:
                    _remember(entry.bought, item, limits.seen_length)
                self._users[row.user] = entry
            return True

    def ping(self) -> bool:
        return True

    def close(self) -> None:
        return None
