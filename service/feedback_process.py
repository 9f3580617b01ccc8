"""The process that writes served lists and feedback for one scorer worker (see service.feedback_writer).

A child process, not a thread: SQLite's ``executemany`` gives up and takes back the GIL for every row, so a
writer thread hands the GIL back and forth with the event loop hundreds of times a second; under load that
cost the scorer about a sixth of its throughput. Here the SQL work runs in its own interpreter and the
worker only encodes each batch once (orjson, one C call) and waits for the answer off the GIL.

Protocol on a :func:`multiprocessing.Pipe` (bytes only, no pickle): the parent sends
``orjson.dumps({"recommendation": [rows], "feedback": [rows]})`` (datetimes as ISO 8601 text); the child
answers ``{"written": n, "dropped": n, "errors": ["..."]}``. An empty message asks the child to stop. The
child exits when the parent goes away (its end of the pipe closes).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

#: Row fields that carry a datetime (sent as ISO 8601 text).
TIME_FIELDS = ("created_at", "ts")


def encode_batch(batch: Mapping[str, list[Mapping[str, Any]]]) -> bytes:
    """One batch as the child reads it."""
    return orjson.dumps(batch)


def decode_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows as sent -> rows as :mod:`core.feedback` takes them (ISO text back to datetimes)."""
    for row in rows:
        for name in TIME_FIELDS:
            value = row.get(name)
            if isinstance(value, str):
                row[name] = datetime.fromisoformat(value)
    return rows


def write_batch(
    batch: Mapping[str, list[dict[str, Any]]], writers: Mapping[str, Callable[[list[dict[str, Any]]], Any]]
) -> dict[str, Any]:
    """Write each kind's rows with its writer; a failed kind is dropped whole and its error reported."""
    written = dropped = 0
    errors: list[str] = []
    for kind, rows in batch.items():
        writer = writers.get(kind)
        if not rows:
            continue
        if writer is None:
            dropped += len(rows)
            errors.append(f"{len(rows)} rows of unknown kind {kind!r}")
            continue
        try:
            writer(decode_rows(rows))
            written += len(rows)
        except Exception as exc:  # the database is down or a row is bad: the parent counts and logs
            dropped += len(rows)
            errors.append(f"{len(rows)} {kind} rows not written: {exc}")
    return {"written": written, "dropped": dropped, "errors": errors}


def writers_for(engine: Engine) -> dict[str, Callable[[list[dict[str, Any]]], Any]]:
    """Each kind's writer into ``engine`` (:mod:`core.feedback`), as :func:`write_batch` takes them."""
    from core.feedback import record_feedback, record_recommendations

    return {
        "recommendation": lambda rows: record_recommendations(engine, rows),
        "feedback": lambda rows: record_feedback(engine, rows),
    }


def serve(url: str, conn: Connection) -> None:
    """The child's loop: read a batch, write it, answer; stop on an empty message or a closed pipe."""
    from core.feedback import _engine_for

    engine = _engine_for(url)
    writers = writers_for(engine)
    try:
        while True:
            try:
                message = conn.recv_bytes()
            except (EOFError, OSError):  # the scorer worker went away
                return
            if not message:
                return
            try:
                answer = write_batch(orjson.loads(message), writers)
            except Exception as exc:  # a message that is not a batch: report, keep serving
                answer = {"written": 0, "dropped": 0, "errors": [f"unreadable batch: {exc}"]}
            conn.send_bytes(orjson.dumps(answer))
    finally:
        engine.dispose()
        conn.close()
