"""Write served lists and feedback off the request path: a bounded buffer drained by one thread in batches,
written by a child process.

``submit`` never blocks and never wakes the writer thread for a single row: it appends to a deque (atomic
under the GIL) and the thread drains it every ``LINGER_S`` or as soon as a full batch is waiting. A per-row
wake-up (``queue.Queue.put``) hands the GIL to the writer thread on every request, which under load cost
more CPU than the request itself. The thread sends each batch to :mod:`service.feedback_process` (its own
interpreter, so SQLite's per-row GIL hand-offs never reach the event loop) and waits for the answer; a
child that died is started again for the next batch, and the batch it was writing is counted as dropped.
An in-memory SQLite database (tests) cannot be shared with a child: the thread writes it itself. When the
buffer is full the rows are dropped and counted (``recops_feedback_dropped_total``). ``close`` drains what
is buffered before the process exits.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, Literal

import orjson
from sqlalchemy.engine import Engine

from service.feedback_process import encode_batch, serve, write_batch, writers_for
from service.metrics import ServiceMetrics

log = logging.getLogger(__name__)

BATCH = 500
LINGER_S = 0.2
CHILD_STOP_S = 10.0

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
        in_process: write from the writer thread instead of a child process (forced for an in-memory
            SQLite database).
    """

    def __init__(
        self,
        engine: Engine,
        metrics: ServiceMetrics,
        max_queue: int,
        batch: int = BATCH,
        in_process: bool = False,
    ) -> None:
        self.engine = engine
        self.batch = batch
        self.max_queue = max_queue
        self.metrics = metrics
        url = engine.url
        in_memory = url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")
        self.in_process = in_process or in_memory
        self._url = url.render_as_string(hide_password=False)
        self._child: Any = None  # multiprocessing.Process
        self._conn: Connection | None = None
        self.restarts = 0  # children started after the first one (one died)
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
        grouped: dict[str, list[Mapping[str, Any]]] = {"recommendation": [], "feedback": []}
        for item in batch:
            grouped[item.kind].append(item.row)
        if self.in_process:
            answer = write_batch(grouped, writers_for(self.engine))  # type: ignore[arg-type]
        else:
            answer = self._write_in_child(grouped)
        self.written += int(answer["written"])
        if answer["dropped"]:
            self.dropped += int(answer["dropped"])
            self.metrics.feedback_dropped.inc(int(answer["dropped"]))
        for error in answer["errors"]:
            log.error("%s", error)

    def _write_in_child(self, grouped: Mapping[str, list[Mapping[str, Any]]]) -> dict[str, Any]:
        rows = sum(len(r) for r in grouped.values())
        try:
            message = encode_batch(grouped)
        except TypeError as exc:  # a value JSON cannot carry: the rows are bad, the child is fine
            return {"written": 0, "dropped": rows, "errors": [f"{rows} rows not written: {exc}"]}
        try:
            conn = self._child_connection()
            conn.send_bytes(message)
            answer: dict[str, Any] = orjson.loads(conn.recv_bytes())
            return answer
        except Exception as exc:  # the child died or hangs up: start another one for the next batch
            self._stop_child(graceful=False)
            error = f"{rows} rows not written: the writer process failed ({exc!r})"
            return {"written": 0, "dropped": rows, "errors": [error]}

    def _child_connection(self) -> Connection:
        if self._child is not None and self._conn is not None and self._child.is_alive():
            return self._conn
        if self._child is not None:  # it died since the last batch
            self._stop_child(graceful=False)
            self.restarts += 1
            log.error("the feedback writer process died; starting another")
        context = multiprocessing.get_context("spawn")
        ours, theirs = context.Pipe(duplex=True)
        child = context.Process(
            target=serve, args=(self._url, theirs), name="recops-feedback-writer", daemon=True
        )
        child.start()
        theirs.close()
        self._child, self._conn = child, ours
        return ours

    def _stop_child(self, graceful: bool) -> None:
        child, conn = self._child, self._conn
        self._child = self._conn = None
        if conn is not None:
            try:
                if graceful:
                    conn.send_bytes(b"")
            except OSError:
                pass
            conn.close()
        if child is not None:
            child.join(CHILD_STOP_S if graceful else 0.5)
            if child.is_alive():
                child.kill()
                child.join(CHILD_STOP_S)

    def flush(self, timeout_s: float = 10.0) -> None:
        """Wait until every buffered row has been written (tests, forget and shutdown)."""
        deadline = time.monotonic() + timeout_s
        while (self._pending or self._writing) and time.monotonic() < deadline:
            self._wake.set()
            time.sleep(0.005)

    def close(self, timeout_s: float = 30.0) -> None:
        """Write what is buffered, then stop the thread and the child."""
        self._stop = True
        self._wake.set()
        self._thread.join(timeout=timeout_s)
        if self._thread.is_alive():
            log.error("feedback writer still busy at shutdown (%d rows buffered)", len(self._pending))
            return
        self._stop_child(graceful=True)
