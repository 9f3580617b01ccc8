"""Coalesced online-state reads: one store call per event-loop turn, each request its own answer, failures
and cancellations confined to their turn (in memory and on the real Redis)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime

import pytest

import service.state_reads as state_reads
from core.privacy import pseudonymize_id
from service.online_store import InMemoryStore, OnlineEvent, OnlineStore, StoreLimits, UserState
from service.redis_store import RedisStore
from service.state_reads import CoalescedReads
from tests.conftest import RedisEndpoint

LIMITS = StoreLimits(history_length=5, seen_length=5, ttl_s=60)
T0 = datetime(2026, 3, 1, tzinfo=UTC)
USERS = [pseudonymize_id(f"shopper-{n}", "k") for n in range(12)]


class Counting:
    """An online store that records every ``states`` call (and can be told to fail or answer short)."""

    def __init__(self, inner: OnlineStore) -> None:
        self.inner = inner
        self.calls: list[list[str]] = []
        self.fail: Exception | None = None
        self.short = False

    def states(self, users: Sequence[str]) -> list[tuple[UserState, dict[str, bool]]]:
        self.calls.append(list(users))
        if self.fail is not None:
            raise self.fail
        answers = self.inner.states(users)
        return answers[:-1] if self.short else answers


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.integration)])
def store(request: pytest.FixtureRequest) -> Iterator[OnlineStore]:
    if request.param == "memory":
        inner: OnlineStore = InMemoryStore(LIMITS)
    else:
        endpoint: RedisEndpoint = request.getfixturevalue("redis_url")
        inner = RedisStore(endpoint.url, endpoint.prefix, LIMITS)
    inner.add_events([OnlineEvent(u, f"item-{n}", "view", T0) for n, u in enumerate(USERS)])
    yield inner
    inner.close()


def test_one_turn_is_one_store_call_and_each_request_gets_its_own_state(store: OnlineStore) -> None:
    counting = Counting(store)
    sizes: list[int] = []
    reads = CoalescedReads(lambda: counting, sizes.append)  # type: ignore[arg-type,return-value]

    async def main() -> list[tuple[UserState, dict[str, bool]]]:
        asked = [*USERS, USERS[3]]  # a shopper twice in one turn
        return await asyncio.gather(*(reads.read(u) for u in asked))

    answers = asyncio.run(main())
    assert len(counting.calls) == 1 and sorted(counting.calls[0]) == sorted(USERS)  # repeats read once
    assert [a[0].recent for a in answers] == [(f"item-{n}",) for n in range(12)] + [("item-3",)]
    assert sizes == [12]


def test_turns_are_read_separately_and_long_turns_are_split(
    store: OnlineStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    counting = Counting(store)
    reads = CoalescedReads(lambda: counting)  # type: ignore[arg-type,return-value]

    async def one_by_one() -> None:
        for user in USERS[:3]:
            assert (await reads.read(user))[0].known

    asyncio.run(one_by_one())
    assert [len(c) for c in counting.calls] == [1, 1, 1]
    monkeypatch.setattr(state_reads, "MAX_BATCH", 5)
    counting.calls.clear()

    async def all_at_once() -> list[tuple[UserState, dict[str, bool]]]:
        return await asyncio.gather(*(reads.read(u) for u in USERS))

    answers = asyncio.run(all_at_once())
    assert [len(c) for c in counting.calls] == [5, 5, 2]
    assert [a[0].recent for a in answers] == [(f"item-{n}",) for n in range(12)]


def test_a_failed_turn_fails_its_requests_only(store: OnlineStore) -> None:
    counting = Counting(store)
    reads = CoalescedReads(lambda: counting)  # type: ignore[arg-type,return-value]

    async def main() -> None:
        counting.fail = ConnectionError("store down")
        failed = await asyncio.gather(*(reads.read(u) for u in USERS[:4]), return_exceptions=True)
        assert all(isinstance(f, ConnectionError) for f in failed)
        counting.fail = None
        counting.short = True  # a store answering fewer states than asked: an error, never a mix-up
        short = await asyncio.gather(*(reads.read(u) for u in USERS[:4]), return_exceptions=True)
        assert all(isinstance(s, RuntimeError) and "3 states for 4" in str(s) for s in short)
        counting.short = False
        recovered = await asyncio.gather(*(reads.read(u) for u in USERS[:4]))
        assert [r[0].recent for r in recovered] == [(f"item-{n}",) for n in range(4)]

    asyncio.run(main())


def test_a_request_cancelled_while_waiting_leaves_the_others_answered(store: OnlineStore) -> None:
    counting = Counting(store)
    reads = CoalescedReads(lambda: counting)  # type: ignore[arg-type,return-value]

    async def main() -> None:
        tasks = [asyncio.ensure_future(reads.read(u)) for u in USERS[:3]]
        await asyncio.sleep(0)  # every task parks its shopper; the flush is scheduled behind them
        tasks[1].cancel()
        done = await asyncio.gather(*tasks, return_exceptions=True)
        assert isinstance(done[1], asyncio.CancelledError)
        assert [d[0].recent for d in (done[0], done[2])] == [("item-0",), ("item-2",)]  # type: ignore[index]

    asyncio.run(main())
    assert len(counting.calls) == 1


def test_the_store_is_looked_up_at_flush_time() -> None:
    """The routes replace ``st.store`` (tests, recovery): the next turn reads the new one."""
    first, second = InMemoryStore(LIMITS), InMemoryStore(LIMITS)
    second.add_events([OnlineEvent(USERS[0], "new", "view", T0)])
    current = [first]
    reads = CoalescedReads(lambda: current[0])
    assert not asyncio.run(reads.read(USERS[0]))[0].known
    current[0] = second
    assert asyncio.run(reads.read(USERS[0]))[0].recent == ("new",)
