"""Served lists and feedback in the metadata database: SQLite (default) and the real PostgreSQL."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from core.feedback import (
    FeedbackError,
    create_feedback_tables,
    feedback_engine,
    forget_feedback,
    read_feedback,
    read_recommendations,
    record_feedback,
    record_recommendation,
    record_recommendations,
)
from core.privacy import pseudonymize_id
from core.settings import Settings

ALICE = pseudonymize_id("alice", "k")
BOB = pseudonymize_id("bob", "k")
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _row(user: str, kind: str, minutes: int, rec: str = "r1", item: str = "i1") -> dict[str, Any]:
    return {
        "recommendation_id": rec,
        "user_id": user,
        "item_id": item,
        "kind": kind,
        "model_version": 3,
        "variant": "champion",
        "ts": T0 + timedelta(minutes=minutes),
    }


def _exercise(engine: Engine) -> None:
    create_feedback_tables(engine)
    create_feedback_tables(engine)  # idempotent
    record_recommendation(
        engine,
        recommendation_id="r1",
        user_id=ALICE,
        model_name="m",
        model_version=3,
        variant="champion",
        items=["i1", "i2"],
        created_at=T0,
    )
    record_recommendation(  # a retried write of the same id is not an error and changes nothing
        engine, recommendation_id="r1", user_id=ALICE, model_name="m", model_version=3,
        variant="champion", items=["i9"], created_at=T0,
    )  # fmt: skip
    assert record_feedback(engine, [_row(ALICE, "impression", 0), _row(ALICE, "click", 2)]) == 2
    assert record_feedback(engine, [_row(BOB, "purchase", 5, rec="r2")]) == 1
    rows = read_feedback(engine)
    assert [r["kind"] for r in rows] == ["impression", "click", "purchase"]
    assert rows[0]["ts"] == T0 and rows[0]["ts"].tzinfo is not None
    window = read_feedback(engine, since=T0 + timedelta(minutes=1), until=T0 + timedelta(minutes=5))
    assert [r["kind"] for r in window] == ["click"]
    recs = read_recommendations(engine)
    assert len(recs) == 1 and recs[0]["items"] == ["i1", "i2"] and recs[0]["created_at"] == T0

    with pytest.raises(FeedbackError, match="kind 'like'"):
        record_feedback(engine, [_row(ALICE, "click", 9), _row(ALICE, "like", 9)])
    with pytest.raises(FeedbackError, match="pseudonym"):
        record_feedback(engine, [_row("alice", "click", 9)])
    naive = _row(ALICE, "click", 9)
    naive["ts"] = datetime(2026, 3, 1, 12, 0)
    with pytest.raises(FeedbackError, match="timezone-aware"):
        record_feedback(engine, [naive])
    assert len(read_feedback(engine)) == 3  # a refused batch writes nothing

    assert forget_feedback(engine, ALICE) == 3  # two feedback rows + one served list
    assert [r["user_id"] for r in read_feedback(engine)] == [BOB]
    assert read_recommendations(engine) == []
    assert forget_feedback(engine, ALICE) == 0

    served = {"user_id": BOB, "model_name": "m", "model_version": 3, "variant": "champion", "created_at": T0}
    assert record_recommendations(engine, [{**served, "recommendation_id": "r5", "items": ["i1"]}]) == 1
    retried = [  # one stored id, one new id twice in the batch: only the new one is inserted, once
        {**served, "recommendation_id": "r5", "items": ["i7"]},
        {**served, "recommendation_id": "r6", "items": ["i1"]},
        {**served, "recommendation_id": "r6", "items": ["i2"]},
    ]
    assert record_recommendations(engine, retried) == 1
    stored = {r["recommendation_id"]: r["items"] for r in read_recommendations(engine)}
    assert stored == {"r5": ["i1"], "r6": ["i2"]}, "a stored list is never overwritten"


def test_feedback_round_trip_on_sqlite(recops_settings: Settings) -> None:
    engine = feedback_engine(recops_settings)
    assert feedback_engine(recops_settings) is engine  # one engine per URL
    _exercise(engine)
    assert Path(recops_settings.runtime_dir / "recops.db").is_file()


def test_the_sqlite_metadata_database_writes_ahead_and_keeps_full_sync(recops_settings: Settings) -> None:
    """WAL: a served-list batch costs one log append, and readers never block the service's writer."""
    engine = feedback_engine(recops_settings)
    create_feedback_tables(engine)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL: commits survive a power cut
    reader = sqlite3.connect(recops_settings.runtime_dir / "recops.db")
    try:
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM recops_recommendations").fetchone()  # a read transaction open
        record_recommendation(
            engine, recommendation_id="r-wal", user_id=ALICE, model_name="m", model_version=1,
            variant="champion", items=["i1"],
        )  # fmt: skip
    finally:
        reader.close()
    assert [r["recommendation_id"] for r in read_recommendations(engine)] == ["r-wal"]


@pytest.mark.integration
def test_feedback_round_trip_on_postgresql(
    recops_settings: Settings, make_pg_database: Callable[[], str]
) -> None:
    settings = recops_settings.model_copy(update={"metadata_db_url": make_pg_database()})
    engine = feedback_engine(settings)
    try:
        _exercise(engine)
    finally:
        engine.dispose()


@pytest.mark.parametrize("items", [["i1", ""], ["i1", 7], ["x" * 201]])
def test_a_served_list_with_a_bad_item_id_is_refused(recops_settings: Settings, items: list[Any]) -> None:
    engine = feedback_engine(recops_settings)
    create_feedback_tables(engine)
    row = {"recommendation_id": "r-bad", "user_id": ALICE, "model_name": "m", "model_version": 1,
           "variant": "champion", "items": items, "created_at": T0}  # fmt: skip
    with pytest.raises(FeedbackError, match="item id must be a non-empty string"):
        record_recommendations(engine, [row])
    assert read_recommendations(engine) == []
