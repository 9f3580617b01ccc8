"""Work parked by the requests of one event-loop turn, handed over together once the turn is done.

Under load a worker's event loop hands several requests to the app in one turn. A request parks an entry
here and awaits its future; the first of the turn schedules the flush with ``call_soon``, which runs after
every request of the turn has parked (asyncio runs the callbacks of one turn before those scheduled during
it). The flush gets every entry whose request still waits (a cancelled request is left out) and settles
their futures. Under light load a turn holds one request and this costs one pass of the loop.
:mod:`service.state_reads` and :mod:`service.batch_scoring` are built on it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Generic, TypeVar

E = TypeVar("E")
R = TypeVar("R")


def resolve(future: asyncio.Future[R], value: R) -> None:
    """Set a parked request's answer (not if it was cancelled meanwhile)."""
    if not future.done():
        future.set_result(value)


def fail(future: asyncio.Future[R], exc: BaseException) -> None:
    """Fail a parked request (not if it was cancelled meanwhile)."""
    if not future.done():
        future.set_exception(exc)


class TurnBatch(Generic[E, R]):
    """Parks entries during one event-loop turn and calls ``flush`` once after it.

    Args:
        flush: takes the turn's ``(entry, future)`` pairs, oldest first, and settles every future
            (:func:`resolve` / :func:`fail`). A future it leaves unsettled, or every one when it raises, is
            failed with an error rather than left waiting for ever.
    """

    def __init__(self, flush: Callable[[list[tuple[E, asyncio.Future[R]]]], None]) -> None:
        self._flush = flush
        self._parked: list[tuple[E, asyncio.Future[R]]] = []
        self._scheduled = False

    async def wait(self, entry: E) -> R:
        """Park ``entry`` and wait for the flush of this turn to answer it."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._parked.append((entry, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._run)
        return await future

    def _run(self) -> None:
        self._scheduled = False
        parked, self._parked = self._parked, []
        live = [(entry, future) for entry, future in parked if not future.done()]
        if not live:
            return
        try:
            self._flush(live)
        except Exception as exc:
            for _, future in live:
                fail(future, exc)
            raise
        for _, future in live:
            fail(future, RuntimeError("the turn's flush left this request unanswered"))
