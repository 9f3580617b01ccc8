"""Scores of concurrent requests, computed together: one product over the item factors per event-loop turn.

After their coalesced online-state read (:mod:`service.state_reads`) the requests of a turn resume one after
the other and each needs its shopper's scores over every item. Each parks its history here; the first of the
turn schedules :meth:`CoalescedScores._flush` with ``call_soon``, which scores every parked history of a
serving version with one :meth:`service.serving.Serving.score_many` call (ALS: each user vector on its own,
then one matrix product over the item factors instead of one per shopper, which under load found the
factors gone from the cache every time). Each request gets its own row, which it may overwrite.

A failed batch is scored again one history at a time, so a history that fails (a model error) fails only
its own request (which then serves trending items: :func:`service.routes.recommend`). A request cancelled
while it waits is skipped.
"""

from __future__ import annotations

import asyncio

from service.serving import FloatArray, IntArray, Serving

#: Histories per ``score_many`` call at most (a larger turn is scored in several calls).
MAX_BATCH = 64


class CoalescedScores:
    """Batches :meth:`score` calls made in one event-loop turn, per serving version."""

    def __init__(self) -> None:
        self._waiting: list[tuple[Serving, IntArray, asyncio.Future[FloatArray]]] = []
        self._scheduled = False

    async def score(self, serving: Serving, history: IntArray) -> FloatArray:
        """The scores of every item for a non-empty history (a row of this turn's batch)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[FloatArray] = loop.create_future()
        self._waiting.append((serving, history, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        self._scheduled = False
        waiting, self._waiting = self._waiting, []
        groups: dict[int, list[tuple[Serving, IntArray, asyncio.Future[FloatArray]]]] = {}
        for entry in waiting:
            if not entry[2].done():
                groups.setdefault(id(entry[0]), []).append(entry)
        for group in groups.values():
            for start in range(0, len(group), MAX_BATCH):
                self._score(group[start : start + MAX_BATCH])

    @staticmethod
    def _score(batch: list[tuple[Serving, IntArray, asyncio.Future[FloatArray]]]) -> None:
        serving = batch[0][0]
        try:
            matrix = serving.score_many([history for _, history, _ in batch])
            if matrix.shape != (len(batch), serving.n_items):
                raise RuntimeError(f"score_many gave shape {matrix.shape} for {len(batch)} histories")
        except Exception:  # score one by one: only a failing history fails its request
            for _, history, future in batch:
                try:
                    row = serving.score(history)
                except Exception as exc:
                    if not future.done():
                        future.set_exception(exc)
                    continue
                if not future.done():
                    future.set_result(row)
            return
        for position, (_, _, future) in enumerate(batch):
            if not future.done():
                future.set_result(matrix[position])
