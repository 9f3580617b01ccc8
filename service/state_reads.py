"""Online-state reads of concurrent requests, coalesced: one store round trip per event-loop turn.

Under load a worker's event loop hands several recommendation requests to the app in one turn (each was
read off its own connection). Each request parks its shopper here and awaits a future; the first one of the
turn schedules :meth:`CoalescedReads._flush` with ``call_soon``, which runs after every request of the turn
has parked (asyncio runs the callbacks of one turn before those scheduled during it) and answers them all
with one :meth:`service.online_store.OnlineStore.states` call (one Redis ``MGET``). Under light load a turn
holds one request and this is a plain read plus one pass of the loop.

A failed store call fails every request of its turn (each then answers from the model alone: see
:func:`service.routes._online_state`); the next turn tries again. A request cancelled while it waits (the
client went away) is skipped. At most :data:`MAX_BATCH` shoppers go into one call; a longer turn is
split.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

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
        self._waiting: dict[str, list[asyncio.Future[Result]]] = {}
        self._scheduled = False

    async def read(self, user: str) -> Result:
        """The shopper's state and the stock overrides, read with every other request of this turn."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Result] = loop.create_future()
        self._waiting.setdefault(user, []).append(future)
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        self._scheduled = False
        waiting, self._waiting = self._waiting, {}
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
                        if not future.done():
                            future.set_exception(exc)
                continue
            if self._on_batch is not None:
                self._on_batch(len(chunk))
            for user, result in zip(chunk, results, strict=False):
                for future in waiting[user]:
                    if not future.done():
                        future.set_result(result)
