"""The online store in Redis, shared by every scorer replica (``RECOPS_REDIS_URL``).

Keys (prefix ``Settings.redis_prefix``; ``<u>`` is a pseudonym, never a raw id)::

    <prefix>u:<u>             one string per shopper, JSON {"r": [recent items, oldest first, at most the
                              history length], "s": {item: last time seen (ms)}, "b": {item: time bought
                              (ms)}}; "s" and "b" keep the newest seen_length items
    <prefix>stock             hash item -> "1" / "0" (stock carried by events)
    <prefix>forgotten         set of pseudonyms forgotten through the API (skipped by later seeds)
    <prefix>seed:v2:<digest>  "loading" (with an expiry) then "done": one replica loads each seed

One key per shopper makes a recommendation's read a single ``GET`` (one ``MGET`` for all the requests of an
event-loop turn; plus the stock hash at most once per ``stock_cache_s``: stock seen by other replicas may lag
that long), sent on a connection of the calling
thread's own (:class:`_ThreadConnection`: a fifth of redis-py's per-command CPU, which goes to the pool,
retry and instrumentation layers); events update the key with a Lua script
(``_ADD_EVENTS``: read, append, trim, write back with the TTL) run atomically by Redis, one call per shopper
of a batch, all in one pipeline. A seed row is one ``SET NX``: a shopper with live state keeps it. (Layout
v2: the earlier layout's three keys per shopper simply expire; its seed markers are not read, so the seed
is loaded again in the new layout.)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence
from itertools import islice
from typing import Any

import orjson

from service.online_store import BOUGHT_TYPES, OnlineEvent, SeedRow, StoreLimits, UserState

SEED_LOCK_S = 600
SEED_CHUNK = 1_000
LAYOUT = "v2"

#: KEYS[1] the shopper's key; ARGV: history length, seen length, TTL (s), then (item, ms, bought) triples.
#: A map holding more than ``seen length`` items keeps the newest (by time, then item), as ZREMRANGEBYRANK
#: did in the earlier layout. cjson writes an empty table as ``{}``: readers accept it for "r" too.
_ADD_EVENTS = """
local history, keep, ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local raw = redis.call('GET', KEYS[1])
local state = raw and cjson.decode(raw) or {}
local recent, seen, bought = state.r or {}, state.s or {}, state.b or {}
for i = 4, #ARGV, 3 do
  local item, ms = ARGV[i], tonumber(ARGV[i + 1])
  recent[#recent + 1] = item
  seen[item] = ms
  if ARGV[i + 2] == '1' then bought[item] = ms end
end
local function newest(map)
  local entries = {}
  for item, ms in pairs(map) do entries[#entries + 1] = {item, ms} end
  if #entries <= keep then return map end
  table.sort(entries, function(a, b)
    if a[2] ~= b[2] then return a[2] > b[2] end
    return a[1] > b[1]
  end)
  local kept = {}
  for i = 1, keep do kept[entries[i][1]] = entries[i][2] end
  return kept
end
local tail = {}
for i = math.max(1, #recent - history + 1), #recent do tail[#tail + 1] = recent[i] end
local value = cjson.encode({r = tail, s = newest(seen), b = newest(bought)})
redis.call('SET', KEYS[1], value, 'EX', ttl)
return #tail
"""


def _items(value: Any) -> tuple[str, ...]:
    """Items of a decoded "r" list or "s"/"b" map (an empty one may come back from Lua as ``{}``)."""
    return tuple(value) if value else ()


def decode_state(raw: bytes | None) -> UserState:
    """A shopper's key as stored -> :class:`UserState` (None: no state)."""
    if not raw:
        return UserState()
    data = orjson.loads(raw)
    return UserState(
        _items(data.get("r")), frozenset(_items(data.get("s"))), frozenset(_items(data.get("b")))
    )


class _ThreadConnection:
    """One Redis connection per thread, outside the client's pool, for the hot read (``MGET``).

    The scorer reads shoppers' keys on the event loop's thread; ``redis.Redis.get`` spends about 30 us of
    CPU per call on the pool, the retry wrapper and instrumentation around a 7 us round trip. This sends
    the command on a connection that only its thread uses (no lock needed) and keeps redis-py's own
    connection class: the same URL options, timeouts, health check and hiredis parser. A failed command
    drops the connection and is tried once more on a new one (a restarted Redis, a connection closed by
    the server's idle timeout), as the client's default retry does; a second failure is raised.
    """

    def __init__(self, client: Any) -> None:
        self._pool = client.connection_pool
        self._local = threading.local()
        self._made: list[Any] = []  # every connection made, so close() reaches other threads' too
        self._lock = threading.Lock()

    def _connection(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._pool.make_connection()
            with self._lock:
                self._made.append(conn)
            self._local.conn = conn
        return conn

    def command(self, *args: str) -> Any:
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError

        conn = self._connection()
        try:
            conn.send_command(*args)
            return conn.read_response()
        except (RedisConnectionError, RedisTimeoutError, OSError):
            conn.disconnect()  # a dead or half-read connection is never reused
        except BaseException:
            conn.disconnect()
            raise
        try:  # once more, on a new connection
            conn.send_command(*args)
            return conn.read_response()
        except BaseException:
            conn.disconnect()
            raise

    def close(self) -> None:
        with self._lock:
            made, self._made = self._made, []
        for conn in made:
            conn.disconnect()


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
        self._add_events = self.client.register_script(_ADD_EVENTS)
        self._reads = _ThreadConnection(self.client)

    def _key(self, user: str) -> str:
        return f"{self.prefix}u:{user}"

    @staticmethod
    def _text(values: Iterable[bytes | str]) -> list[str]:
        return [v.decode("utf-8") if isinstance(v, bytes) else v for v in values]

    def state(self, user: str) -> tuple[UserState, dict[str, bool]]:
        return self.states([user])[0]

    def states(self, users: Sequence[str]) -> list[tuple[UserState, dict[str, bool]]]:
        """One ``MGET`` of the shoppers' keys (with the stock hash when its cache is older than
        ``stock_cache_s``): the scorer reads every request of an event-loop turn at once
        (:class:`service.state_reads.CoalescedReads`)."""
        if not users:
            return []
        keys = [self._key(user) for user in users]
        now = time.monotonic()
        if now - self._stock_read_at < self.stock_cache_s:
            raws = self._reads.command("MGET", *keys)
        else:
            pipe = self.client.pipeline(transaction=False)
            pipe.mget(keys)
            pipe.hgetall(f"{self.prefix}stock")
            raws, stock = pipe.execute()
            pairs = zip(self._text(stock), self._text(stock.values()), strict=True)
            self._stock = {item: value == "1" for item, value in pairs}
            self._stock_read_at = now
        if len(raws) != len(keys):
            raise RuntimeError(f"MGET of {len(keys)} keys answered {len(raws)} values")
        stock_now = self._stock
        return [(decode_state(raw), stock_now) for raw in raws]

    def add_events(self, events: Sequence[OnlineEvent]) -> None:
        if not events:
            return
        limits = self.limits
        per_user: dict[str, list[str | int]] = {}
        stock: dict[str, str] = {}
        for event in events:
            bought = "1" if event.event_type in BOUGHT_TYPES else "0"
            args = per_user.setdefault(event.user, [limits.history_length, limits.seen_length, limits.ttl_s])
            args.extend((event.item_id, int(event.ts.timestamp() * 1000), bought))
            if event.in_stock is not None:
                stock[event.item_id] = "1" if event.in_stock else "0"
        pipe = self.client.pipeline(transaction=False)
        for user, args in per_user.items():
            self._add_events(keys=[self._key(user)], args=args, client=pipe)
        if stock:
            pipe.hset(f"{self.prefix}stock", mapping=stock)
        pipe.execute()
        if stock:  # this replica sees its own stock changes at once
            self._stock = {**self._stock, **{item: value == "1" for item, value in stock.items()}}

    def forget(self, user: str) -> bool:
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(self._key(user))
        pipe.sadd(f"{self.prefix}forgotten", user)
        deleted, _ = pipe.execute()
        return bool(deleted)

    def load_seed(self, digest: str, rows: Iterable[SeedRow]) -> bool:
        marker = f"{self.prefix}seed:{LAYOUT}:{digest}"
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
        """One ``SET NX`` per shopper: one with online events already (newer than the seed) keeps them.
        Seen items are ranked by position and bought ones at 0, so every live event counts as newer."""
        limits = self.limits
        pipe = self.client.pipeline(transaction=False)
        for row in chunk:
            seen: dict[str, int] = {}
            for pos, item in enumerate(row.recent):
                seen.pop(item, None)
                seen[item] = pos
            bought = dict.fromkeys(row.bought, 0)
            value = {
                "r": list(row.recent)[-limits.history_length :],
                "s": dict(list(seen.items())[-limits.seen_length :]),
                "b": dict(list(bought.items())[-limits.seen_length :]),
            }
            pipe.set(self._key(row.user), orjson.dumps(value), nx=True, ex=limits.ttl_s)
        pipe.execute()

    def ping(self) -> bool:
        try:
            return bool(self.client.ping())
        except Exception:  # any redis/socket error means "not answering"
            return False

    def close(self) -> None:
        self._reads.close()
        self.client.close()
