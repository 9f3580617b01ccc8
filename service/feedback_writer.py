"""Write served lists and feedback off the request path: a bounded queue drained by one thread in batches.

``submit`` never blocks: when the queue is full the rows are dropped and counted
(``recops_feedback_dropped_total``). ``close`` drains what is queued before the process exits.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy.engine import Engine

from core.feedback import record_feedback, record_recommendations
from service.metrics import ServiceMetrics

log = logging.getLogger(__name__)

BATCH = 500
LINGER_S = 0.2

Kind = Literal["recommendation", "feedback"]


@dataclass(frozen=True)
class _Item:
    kind: Kind
    row: Mapping[str, Any]


class FeedbackWriter:
    """Background batch writer into :mod:`core.feedback`'s tables."""

    def __init__(self, engine: Engine, metrics: ServiceMetrics, max_queue: int, batch: int = BATCH) -> None:
        self.engine = engine
        self.batch = batch
        self.metrics = metrics
        self._queue: queue.Queue[_Item | None] = queue.Queue(maxsize=max_queue)
        self._thread = threading.Thread(target=self._run, name="recops-feedback-writer", daemon=True)
        self.dropped = 0
        self.written = 0
        self._thread.start()

    def submit(self, kind: Kind, rows: list[Mapping[str, Any]]) -> int:
        """Queue rows; returns how many were accepted (the rest were dropped and counted)."""
        accepted = 0
        for row in rows:
            try:
                self._queue.put_nowait(_Item(kind, row))
                accepted += 1
            except queue.Full:
                self.dropped += 1
                self.metrics.feedback_dropped.inc()
        return accepted

    def _run(self) -> None:
        stop = False
        while not stop:
            taken = [self._queue.get()]
            while len(taken) < self.batch and taken[-1] is not None:
                try:
                    taken.append(self._queue.get(timeout=LINGER_S))
                except queue.Empty:
                    break
            stop = taken[-1] is None
            self._write([item for item in taken if item is not None])
            for _ in taken:
                self._queue.task_done()

    def _write(self, batch: list[_Item]) -> None:
        for kind, writer in (("recommendation", record_recommendations), ("feedback", record_feedback)):
            rows = [item.row for item in batch if item.kind == kind]
            if not rows:
                continue
            try:
                writer(self.engine, rows)
                self.written += len(rows)
            except Exception as exc:  # the database is down or a row is bad: count, log, keep serving
                self.dropped += len(rows)
                self.metrics.feedback_dropped.inc(len(rows))
                log.error("%d %s rows not written: %s", len(rows), kind, exc)

    def flush(self, timeout_s: float = 10.0) -> None:
        """Wait until every queued row has been written (tests and shutdown)."""
        import time

        deadline = time.monotonic() + timeout_s
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)

    def close(self, timeout_s: float = 30.0) -> None:
        """Write what is queued, then stop the thread."""
        try:
            self._queue.put(None, timeout=timeout_s)
        except queue.Full:
            log.error("feedback queue still full at shutdown")
        self._thread.join(timeout=timeout_s)
