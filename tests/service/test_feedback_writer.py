"""The background feedback writer: batches reach the database, a full queue drops and counts, close drains."""

from __future__ import annotations

from datetime import UTC, datetime

from core.feedback import create_feedback_tables, feedback_engine, read_feedback
from core.privacy import pseudonymize_id
from core.settings import Settings
from service.feedback_writer import FeedbackWriter
from service.metrics import ServiceMetrics

USER = pseudonymize_id("u", "k")


def _row(n: int, kind: str = "click") -> dict[str, object]:
    return {
        "recommendation_id": f"{n:032x}.h1", "user_id": USER, "item_id": f"i{n}", "kind": kind,
        "model_version": 1, "variant": "champion", "ts": datetime(2026, 3, 1, tzinfo=UTC),
    }  # fmt: skip


def test_rows_are_written_in_batches_and_close_drains(recops_settings: Settings) -> None:
    engine = feedback_engine(recops_settings)
    create_feedback_tables(engine)
    metrics = ServiceMetrics()
    writer = FeedbackWriter(engine, metrics, max_queue=5_000)
    assert writer.submit("feedback", [_row(n) for n in range(1_200)]) == 1_200
    writer.close()
    assert len(read_feedback(engine)) == 1_200 and writer.dropped == 0


def test_full_queue_drops_and_bad_rows_are_counted_not_raised(recops_settings: Settings) -> None:
    engine = feedback_engine(recops_settings)
    create_feedback_tables(engine)
    metrics = ServiceMetrics()
    writer = FeedbackWriter(engine, metrics, max_queue=10, batch=1)
    with engine.connect() as blocker:  # the database is busy: the writer waits, the queue fills up
        blocker.exec_driver_sql("BEGIN EXCLUSIVE")
        accepted = writer.submit("feedback", [_row(n) for n in range(200)])
        blocker.rollback()
    assert 10 <= accepted <= 12
    writer.flush()
    assert writer.submit("feedback", [_row(1, kind="like")]) == 1  # refused by the table layer, counted
    writer.close()
    assert writer.dropped == 200 - accepted + 1
    assert metrics.feedback_dropped._value.get() == writer.dropped
    assert len(read_feedback(engine)) == accepted


def test_rows_are_written_by_a_child_process_restarted_when_it_dies(recops_settings: Settings) -> None:
    """SQL runs in a child (no GIL hand-offs with the event loop); a killed child is replaced for the next
    batch and nothing the buffer held is lost."""
    import os
    import signal

    engine = feedback_engine(recops_settings)
    create_feedback_tables(engine)
    metrics = ServiceMetrics()
    writer = FeedbackWriter(engine, metrics, max_queue=5_000)
    try:
        assert not writer.in_process
        writer.submit("feedback", [_row(n) for n in range(10)])
        writer.flush()
        first = writer._child
        assert first is not None and first.pid != os.getpid() and first.is_alive()
        assert len(read_feedback(engine)) == 10
        os.kill(first.pid, signal.SIGKILL)
        first.join(10)
        writer.submit("feedback", [_row(n) for n in range(10, 25)])
        writer.flush()
        assert writer.restarts == 1 and writer._child is not None and writer._child.pid != first.pid
        assert len(read_feedback(engine)) == 25 and writer.dropped == 0
    finally:
        writer.close()
    assert writer._child is None, "close stops the child"
    assert not first.is_alive()


def test_rows_json_cannot_carry_are_dropped_and_counted(recops_settings: Settings) -> None:
    engine = feedback_engine(recops_settings)
    create_feedback_tables(engine)
    metrics = ServiceMetrics()
    writer = FeedbackWriter(engine, metrics, max_queue=100)
    bad = _row(1)
    bad["item_id"] = object()
    writer.submit("feedback", [bad, _row(2)])
    writer.close()
    assert writer.dropped == 2 and metrics.feedback_dropped._value.get() == 2
    assert read_feedback(engine) == []


def test_an_in_memory_database_is_written_by_the_thread() -> None:
    from sqlalchemy import create_engine
    from sqlalchemy.pool import StaticPool

    engine = create_engine("sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False})
    create_feedback_tables(engine)
    writer = FeedbackWriter(engine, ServiceMetrics(), max_queue=100)
    writer.submit("feedback", [_row(n) for n in range(3)])
    writer.close()
    assert writer.in_process and writer._child is None
    assert len(read_feedback(engine)) == 3
