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
