"""Online-state reads of concurrent requests, coalesced: one store round trip per event-loop turn.

Each recommendation request parks its shopper on a :class:`service.loop_turn.TurnBatch`; once the turn is
done one :meth:`service.online_store.OnlineStore.states` call (one Redis ``MGET``) answers every shopper of
it (a shopper asked twice is read once). Under light load a turn holds one request and this is a plain
read plus one pass of the loop.

A failed store call fails every request of its turn (each then answers from the model alone: see
:func:`service.routes._online_state`); the next turn tries again. A request cancelled while it waits (the
client went away) is skipped. At most :data:`MAX_BATCH` shoppers go into one call; a longer turn is
split.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from service.loop_turn import TurnBatch, fail, resolve
from service.online_store import OnlineStore, UserState

#: Shoppers per store call at most (a larger turn is read in several calls, all in the same flush).
MAX_BATCH = 256

Result = tuple[UserState, dict[str, bool]]


class CoalescedReads:
    """Batches :meth:`read` calls made in one event-loop turn into ``store().states(...)`` calls.

    Args:
        store: returns the store to read (looked up at flush time, so a replaced store is used at once).
        on_batch: called with each batch's size (for the metrics), or None.
    """

    def __init__(
        self, store: Callable[[], OnlineStore], on_batch: Callable[[int], None] | None = None
    ) -> None:
        self._store = store
        self._on_batch = on_batch
        self._turn: TurnBatch[str, Result] = TurnBatch(self._flush)

    async def read(self, user: str) -> Result:
        """The shopper's state and the stock overrides, read with every other request of this turn."""
        return await self._turn.wait(user)

    def _flush(self, parked: list[tuple[str, asyncio.Future[Result]]]) -> None:
        waiting: dict[str, list[asyncio.Future[Result]]] = {}
        for user, future in parked:
            waiting.setdefault(user, []).append(future)
        users = list(waiting)
        for start in range(0, len(users), MAX_BATCH):
            chunk = users[start : start + MAX_BATCH]
            try:
                results = self._store().states(chunk)
                if len(results) != len(chunk):
                    raise RuntimeError(f"the online store answered {len(results)} states for {len(chunk)}")
            except Exception as exc:  # every request of the chunk answers from the model alone
                for user in chunk:
                    for future in waiting[user]:
                        fail(future, exc)
                continue
            if self._on_batch is not None:
                self._on_batch(len(chunk))
            for user, result in zip(chunk, results, strict=True):
                for future in waiting[user]:
                    resolve(future, result)
