"""Online stores (in memory and the real Redis): bounds, TTL, forget, stock, the seed loaded once per digest,
and one Redis store shared by two app instances."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
import redis
from fastapi.testclient import TestClient
from pydantic import SecretStr

from core.online_seed import write_seed
from core.privacy import pseudonymize_id
from core.settings import Settings
from models.package import ModelPackage
from service.app import create_app
from service.identity import CHAMPION, pseudonym
from service.online_store import InMemoryStore, OnlineEvent, OnlineStore, SeedRow, StoreLimits
from service.redis_store import RedisStore
from service.seed import load_online_seed
from tests.conftest import RedisEndpoint
from tests.service.conftest import serving_of

LIMITS = StoreLimits(history_length=3, seen_length=4, ttl_s=60)
T0 = datetime(2026, 3, 1, tzinfo=UTC)
U1 = pseudonymize_id("u1", "k")


def _events(user: str, items: list[str], kind: str = "view") -> list[OnlineEvent]:
    return [OnlineEvent(user, item, kind, T0 + timedelta(seconds=n)) for n, item in enumerate(items)]


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.integration)])
def store(request: pytest.FixtureRequest) -> Iterator[OnlineStore]:
    if request.param == "memory":
        yield InMemoryStore(LIMITS)
        return
    endpoint: RedisEndpoint = request.getfixturevalue("redis_url")
    redis_store = RedisStore(endpoint.url, endpoint.prefix, LIMITS)
    yield redis_store
    redis_store.close()


def test_state_is_bounded_forgettable_and_carries_stock(store: OnlineStore) -> None:
    assert store.state(U1) == (store.state(U1)[0], {}) and not store.state(U1)[0].known
    store.add_events(_events(U1, ["a", "b", "c", "d", "e"]))
    store.add_events([OnlineEvent(U1, "b", "purchase", T0, in_stock=False)])
    state, stock = store.state(U1)
    assert state.recent == ("d", "e", "b")  # oldest first, the last three
    assert state.seen == frozenset({"c", "d", "e", "b"})  # the newest four
    assert state.bought == frozenset({"b"}) and stock == {"b": False}
    assert store.forget(U1) and not store.forget(U1)
    assert not store.state(U1)[0].known


def test_seed_loads_once_and_never_overwrites_live_state(store: OnlineStore) -> None:
    u2 = pseudonymize_id("u2", "k")
    store.add_events(_events(U1, ["live"]))
    rows = [SeedRow(U1, ["old"], []), SeedRow(u2, ["x", "y", "z", "w"], ["y"])]
    assert store.load_seed("digest-1", rows)
    assert not store.load_seed("digest-1", [SeedRow(u2, ["other"], [])])  # same digest: skipped
    assert store.state(U1)[0].recent == ("live",)
    state = store.state(u2)[0]
    assert state.recent == ("y", "z", "w") and state.bought == frozenset({"y"}) and "x" in state.seen
    assert store.forget(u2)
    assert store.load_seed("digest-2", [SeedRow(u2, ["back"], []), SeedRow(U1, ["old"], [])])
    assert not store.state(u2)[0].known  # a forgotten shopper does not come back with a later seed


@pytest.mark.integration
def test_redis_keys_expire_and_hold_no_raw_ids(redis_url: RedisEndpoint) -> None:
    store = RedisStore(redis_url.url, redis_url.prefix, LIMITS)
    store.add_events(_events(U1, ["a"]))
    keys = sorted(k.decode() for k in store.client.scan_iter(match=f"{redis_url.prefix}*"))
    assert keys == [f"{redis_url.prefix}u:{U1}"]  # one key per shopper: a recommendation is one GET
    assert all(0 < store.client.ttl(k) <= 60 for k in keys)
    store.close()


def _seed_file(settings: Settings) -> None:
    alice = pseudonym("alice", settings)
    frame = pd.DataFrame(
        {
            "user_id": [alice],
            "recent_items": [["i00000", "i00005", "i00010"]],
            "bought_items": [["i00015"]],
            "last_ts": pd.to_datetime([T0]).astype("datetime64[us, UTC]"),
        }
    )
    write_seed(frame, settings)


@pytest.mark.integration
def test_two_app_instances_share_redis_and_the_seed_is_loaded_once(
    recops_settings: Settings, redis_url: RedisEndpoint, package: ModelPackage, tmp_path: Path
) -> None:
    settings = recops_settings.model_copy(
        update={
            "redis_url": SecretStr(redis_url.url),
            "redis_prefix": redis_url.prefix,
            "serve_rate_limit_per_s": 0,
        }
    )
    _seed_file(settings)
    apps = [create_app(settings, watch=False) for _ in range(2)]
    for app in apps:
        app.state.recops.holder.swap(CHAMPION, serving_of(package, 1, tmp_path))
    with TestClient(apps[0]) as one, TestClient(apps[1]) as two:
        seeded = one.post("/recommendations", json={"user_id": "alice", "k": 3}).json()
        assert not seeded["cold_start"] and seeded["items"][0]["category"] == "cat0"
        assert "i00015" not in [i["item_id"] for i in seeded["items"]]
        assert one.post("/events", json={"events": [
            {"user_id": "bob", "item_id": "i00002", "event_type": "view"},
            {"user_id": "bob", "item_id": "i00007", "event_type": "view"},
        ]}).json()["accepted"] == 2  # fmt: skip
        other = two.post("/recommendations", json={"user_id": "bob", "k": 3}).json()
        assert not other["cold_start"] and other["items"][0]["category"] == "cat2"
        assert two.delete("/users/bob").json()["online_state_deleted"] is True
        assert one.post("/recommendations", json={"user_id": "bob", "k": 3}).json()["cold_start"]
    store = RedisStore(redis_url.url, redis_url.prefix, LIMITS)
    markers = list(store.client.scan_iter(match=f"{redis_url.prefix}seed:*"))
    assert len(markers) == 1 and store.client.get(markers[0]) == b"done"
    assert load_online_seed(settings, store) is None  # already loaded by the first replica
    store.close()


@pytest.mark.integration
def test_stock_from_one_replica_reaches_another_within_the_cache_time(redis_url: RedisEndpoint) -> None:
    one = RedisStore(redis_url.url, redis_url.prefix, LIMITS, stock_cache_s=0.2)
    two = RedisStore(redis_url.url, redis_url.prefix, LIMITS, stock_cache_s=0.2)
    assert two.state(U1)[1] == {}
    one.add_events([OnlineEvent(U1, "x", "view", T0, in_stock=False)])
    assert one.state(U1)[1] == {"x": False}  # at once on the replica that took the event
    time.sleep(0.25)
    assert two.state(U1)[1] == {"x": False}  # after the cache time on the others
    one.close()
    two.close()


@pytest.mark.integration
def test_reads_survive_a_connection_the_server_closed(redis_url: RedisEndpoint) -> None:
    """The hot read's own connection, killed by the server (restart, idle timeout): the next read
    reconnects and answers; one that fails twice raises (the route then serves from the model alone)."""
    store = RedisStore(redis_url.url, redis_url.prefix, LIMITS, stock_cache_s=3600)
    try:
        store.add_events(_events(U1, ["a", "b"]))
        assert store.state(U1)[0].recent == ("a", "b")
        reader_id = store._reads.command("CLIENT", "ID")
        assert store.client.execute_command("CLIENT", "KILL", "ID", reader_id) == 1
        assert store.state(U1)[0].recent == ("a", "b"), "read again on a new connection"
        assert store._reads.command("CLIENT", "ID") != reader_id
    finally:
        store.close()
    broken = RedisStore("redis://127.0.0.1:1/0", "x:", LIMITS, stock_cache_s=3600)
    broken._stock_read_at = time.monotonic()  # skip the stock pipeline: only the hot read is tried
    with pytest.raises(redis.exceptions.ConnectionError):
        broken.state(U1)
    broken.close()


@pytest.mark.integration
def test_each_thread_reads_on_its_own_connection(redis_url: RedisEndpoint) -> None:
    """Reads from the thread pool (after a store failure) and the event loop never share a connection:
    eight threads reading different shoppers at once each get their own shopper's state."""
    from concurrent.futures import ThreadPoolExecutor

    store = RedisStore(redis_url.url, redis_url.prefix, LIMITS)
    users = [pseudonymize_id(f"t{n}", "k") for n in range(8)]
    try:
        for n, user in enumerate(users):
            store.add_events(_events(user, [f"item-{n}"]))

        def read_many(n: int) -> tuple[set[tuple[str, ...]], int]:
            seen = {store.state(users[n])[0].recent for _ in range(200)}
            return seen, int(store._reads.command("CLIENT", "ID"))

        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(read_many, range(8)))
        assert [seen for seen, _ in results] == [{(f"item-{n}",)} for n in range(8)]
        assert len({conn for _, conn in results}) == 8
    finally:
        store.close()
    assert store._reads._made == []
