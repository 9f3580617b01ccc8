"""Write served lists and feedback off the request path: a bounded buffer drained by one thread in batches.

``submit`` never blocks and never wakes the writer thread for a single row: it appends to a deque (atomic
under the GIL) and the thread drains it every ``LINGER_S`` or as soon as a full batch is waiting. A per-row
wake-up (``queue.Queue.put``) hands the GIL to the writer thread on every request, which under load cost
more CPU than the request itself. When the buffer is full the rows are dropped and counted
(``recops_feedback_dropped_total``). ``close`` drains what is buffered before the process exits.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
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
    """Background batch writer into :mod:`core.feedback`'s tables.

    Args:
        max_queue: rows buffered at most (several request threads may each add one row past it at once).
        batch: rows per database write.
    """

    def __init__(self, engine: Engine, metrics: ServiceMetrics, max_queue: int, batch: int = BATCH) -> None:
        self.engine = engine
        self.batch = batch
        self.max_queue = max_queue
        self.metrics = metrics
        self._pending: deque[_Item] = deque()
        self._writing = 0  # rows taken from the buffer and not yet written
        self._wake = threading.Event()
        self._stop = False
        self.dropped = 0
        self.written = 0
        self._thread = threading.Thread(target=self._run, name="recops-feedback-writer", daemon=True)
        self._thread.start()

    def submit(self, kind: Kind, rows: list[Mapping[str, Any]]) -> int:
        """Buffer rows; returns how many were accepted (the rest were dropped and counted)."""
        pending = self._pending
        accepted = 0
        for row in rows:
            if len(pending) >= self.max_queue:
                break
            pending.append(_Item(kind, row))
            accepted += 1
        refused = len(rows) - accepted
        if refused:
            self.dropped += refused
            self.metrics.feedback_dropped.inc(refused)
        if len(pending) >= self.batch:
            self._wake.set()
        return accepted

    def _take(self) -> list[_Item]:
        pending = self._pending
        taken: list[_Item] = []
        self._writing = 1  # before popping: flush() must never see an empty buffer and nothing in hand
        while len(taken) < self.batch:
            try:
                taken.append(pending.popleft())
            except IndexError:
                break
        self._writing = len(taken)
        return taken

    def _run(self) -> None:
        while True:
            self._wake.wait(LINGER_S)
            self._wake.clear()
            stop = self._stop  # read before draining: rows buffered before close() are all written
            while taken := self._take():
                self._write(taken)
                self._writing = 0
            if stop:
                return

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
        """Wait until every buffered row has been written (tests, forget and shutdown)."""
        deadline = time.monotonic() + timeout_s
        while (self._pending or self._writing) and time.monotonic() < deadline:
            self._wake.set()
            time.sleep(0.005)

    def close(self, timeout_s: float = 30.0) -> None:
        """Write what is buffered, then stop the thread."""
        self._stop = True
        self._wake.set()
        self._thread.join(timeout=timeout_s)
        if self._thread.is_alive():
            log.error("feedback writer still busy at shutdown (%d rows buffered)", len(self._pending))
