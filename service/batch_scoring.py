"""Scores of concurrent requests, computed together: one product over the item factors per event-loop turn.

After their coalesced online-state read (:mod:`service.state_reads`) the requests of a turn resume one after
the other and each needs its shopper's scores over every item. Each parks its history on a
:class:`service.loop_turn.TurnBatch`; once the turn is done every parked history of a serving version is
scored with one :meth:`service.serving.Serving.score_many` call (ALS: each user vector on its own, then one
matrix product over the item factors instead of one per shopper, which under load found the factors gone
from the cache every time). Each request gets its own row, which it may overwrite.

A failed batch is scored again one history at a time, so a history that fails (a model error) fails only
its own request (which then serves trending items: :func:`service.routes.recommend`). A request cancelled
while it waits is skipped.
"""

from __future__ import annotations

import asyncio

from service.loop_turn import TurnBatch, fail, resolve
from service.serving import FloatArray, IntArray, Serving

#: Histories per ``score_many`` call at most (a larger turn is scored in several calls).
MAX_BATCH = 64


Parked = tuple[tuple[Serving, IntArray], asyncio.Future[FloatArray]]


class CoalescedScores:
    """Batches :meth:`score` calls made in one event-loop turn, per serving version."""

    def __init__(self) -> None:
        self._turn: TurnBatch[tuple[Serving, IntArray], FloatArray] = TurnBatch(self._flush)

    async def score(self, serving: Serving, history: IntArray) -> FloatArray:
        """The scores of every item for a non-empty history (a row of this turn's batch)."""
        return await self._turn.wait((serving, history))

    def _flush(self, parked: list[Parked]) -> None:
        groups: dict[int, list[Parked]] = {}
        for entry in parked:
            groups.setdefault(id(entry[0][0]), []).append(entry)
        for group in groups.values():
            for start in range(0, len(group), MAX_BATCH):
                self._score(group[start : start + MAX_BATCH])

    @staticmethod
    def _score(batch: list[Parked]) -> None:
        serving = batch[0][0][0]
        try:
            matrix = serving.score_many([history for (_, history), _ in batch])
            if matrix.shape != (len(batch), serving.n_items):
                raise RuntimeError(f"score_many gave shape {matrix.shape} for {len(batch)} histories")
        except Exception:  # score one by one: only a failing history fails its request
            for (_, history), future in batch:
                try:
                    row = serving.score(history)
                except Exception as exc:
                    fail(future, exc)
                    continue
                resolve(future, row)
            return
        for position, (_, future) in enumerate(batch):
            resolve(future, matrix[position])
