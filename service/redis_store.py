"""The online store in Redis, shared by every scorer replica (``RECOPS_REDIS_URL``).

Keys (prefix ``Settings.redis_prefix``; ``<u>`` is a pseudonym, never a raw id)::

    <prefix>u:<u>:recent   list, oldest first, trimmed to the history length
    <prefix>u:<u>:seen     sorted set item -> last time seen (ms), trimmed to the newest seen_length
    <prefix>u:<u>:bought   sorted set item -> time bought (ms), trimmed likewise
    <prefix>stock          hash item -> "1" / "0" (stock carried by events)
    <prefix>forgotten      set of pseudonyms forgotten through the API (skipped by later seeds)
    <prefix>seed:<digest>  "loading" (with an expiry) then "done": one replica loads each seed

Every per-shopper key gets the TTL again on each write. A request reads a shopper's three keys and the
stock hash in one pipelined round trip (the stock hash at most once per ``stock_cache_s``: stock seen by
other replicas may lag that long); a batch of events is one pipeline too.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from itertools import islice
from typing import Any

from service.online_store import BOUGHT_TYPES, OnlineEvent, SeedRow, StoreLimits, UserState

SEED_LOCK_S = 600
SEED_CHUNK = 1_000


class RedisStore:
    """:class:`service.online_store.OnlineStore` over Redis."""

    def __init__(
        self,
        url: str,
        prefix: str,
        limits: StoreLimits,
        client: Any | None = None,
        stock_cache_s: float = 1.0,
    ) -> None:
        import redis

        self.limits = limits
        self.prefix = prefix
        self.stock_cache_s = stock_cache_s
        self._stock: dict[str, bool] = {}
        self._stock_read_at = float("-inf")
        self.client: Any = client or redis.Redis.from_url(
            url, socket_connect_timeout=2, socket_timeout=2, health_check_interval=30
        )

    def _key(self, user: str, part: str) -> str:
        return f"{self.prefix}u:{user}:{part}"

    @staticmethod
    def _text(values: Iterable[bytes | str]) -> list[str]:
        return [v.decode("utf-8") if isinstance(v, bytes) else v for v in values]

    def state(self, user: str) -> tuple[UserState, dict[str, bool]]:
        pipe = self.client.pipeline(transaction=False)
        pipe.lrange(self._key(user, "recent"), 0, -1)
        pipe.zrange(self._key(user, "seen"), 0, -1)
        pipe.zrange(self._key(user, "bought"), 0, -1)
        now = time.monotonic()
        refresh = now - self._stock_read_at >= self.stock_cache_s
        if refresh:
            pipe.hgetall(f"{self.prefix}stock")
        recent, seen, bought, *stock = pipe.execute()
        if refresh:
            raw = stock[0]
            pairs = zip(self._text(raw), self._text(raw.values()), strict=True)
            self._stock = {item: value == "1" for item, value in pairs}
            self._stock_read_at = now
        state = UserState(
            tuple(self._text(recent)), frozenset(self._text(seen)), frozenset(self._text(bought))
        )
        return state, self._stock

    def add_events(self, events: Sequence[OnlineEvent]) -> None:
        if not events:
            return
        limits = self.limits
        pipe = self.client.pipeline(transaction=False)
        touched: set[str] = set()
        stock: dict[str, str] = {}
        for event in events:
            score = int(event.ts.timestamp() * 1000)
            pipe.rpush(self._key(event.user, "recent"), event.item_id)
            pipe.zadd(self._key(event.user, "seen"), {event.item_id: score})
            if event.event_type in BOUGHT_TYPES:
                pipe.zadd(self._key(event.user, "bought"), {event.item_id: score})
            touched.add(event.user)
            if event.in_stock is not None:
                stock[event.item_id] = "1" if event.in_stock else "0"
        for user in touched:
            self._trim(pipe, user, limits)
        if stock:
            pipe.hset(f"{self.prefix}stock", mapping=stock)
        pipe.execute()
        if stock:  # this replica sees its own stock changes at once
            self._stock = {**self._stock, **{item: value == "1" for item, value in stock.items()}}

    def _trim(self, pipe: Any, user: str, limits: StoreLimits) -> None:
        recent, seen, bought = (self._key(user, p) for p in ("recent", "seen", "bought"))
        pipe.ltrim(recent, -limits.history_length, -1)
        pipe.zremrangebyrank(seen, 0, -(limits.seen_length + 1))
        pipe.zremrangebyrank(bought, 0, -(limits.seen_length + 1))
        for key in (recent, seen, bought):
            pipe.expire(key, limits.ttl_s)

    def forget(self, user: str) -> bool:
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(*(self._key(user, p) for p in ("recent", "seen", "bought")))
        pipe.sadd(f"{self.prefix}forgotten", user)
        deleted, _ = pipe.execute()
        return bool(deleted)

    def load_seed(self, digest: str, rows: Iterable[SeedRow]) -> bool:
        marker = f"{self.prefix}seed:{digest}"
        if not self.client.set(marker, "loading", nx=True, ex=SEED_LOCK_S):
            return False
        try:
            forgotten = set(self._text(self.client.smembers(f"{self.prefix}forgotten")))
            iterator = (row for row in rows if row.user not in forgotten)
            while chunk := list(islice(iterator, SEED_CHUNK)):
                self._load_chunk(chunk)
        except BaseException:
            self.client.delete(marker)  # let another replica (or a restart) try again
            raise
        self.client.set(marker, "done")
        return True

    def _load_chunk(self, chunk: list[SeedRow]) -> None:
        limits = self.limits
        probe = self.client.pipeline(transaction=False)
        for row in chunk:
            probe.exists(self._key(row.user, "recent"), self._key(row.user, "seen"))
        live = probe.execute()
        pipe = self.client.pipeline(transaction=False)
        for row, present in zip(chunk, live, strict=True):
            if present:  # online events already arrived for this shopper: they are newer than the seed
                continue
            recent = list(row.recent)[-limits.history_length :]
            if recent:
                pipe.rpush(self._key(row.user, "recent"), *recent)
                pipe.zadd(self._key(row.user, "seen"), {item: pos for pos, item in enumerate(row.recent)})
            if row.bought:
                pipe.zadd(self._key(row.user, "bought"), dict.fromkeys(row.bought, 0))
            self._trim(pipe, row.user, limits)
        pipe.execute()

    def ping(self) -> bool:
        try:
            return bool(self.client.ping())
        except Exception:  # any redis/socket error means "not answering"
            return False

    def close(self) -> None:
        self.client.close()
