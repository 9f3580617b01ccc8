"""The feedback loop end to end: feedback rows -> export -> the gate passes -> publish -> the next features
run sees the events; plus the watermark, the crash-redo and what is left out."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from functools import partial
from pathlib import Path

import pandas as pd
import pytest

from core.feedback import (
    create_feedback_tables,
    feedback_engine,
    read_feedback,
    record_feedback,
    record_recommendations,
)
from core.privacy import forgotten_path, pseudonymize, pseudonymize_id
from core.settings import Settings
from pipelines.datastore import read_published
from pipelines.feedback.export import ExportStateError, read_state, run_feedback_export, state_path
from pipelines.params import Params, load_params
from pipelines.publish import publish_batch
from pipelines.stages import run_features
from pipelines.steps import StepContext
from pipelines.validate import ValidationReport, validate_batch
from tests.factories import make_catalog, make_events, write_batch

KEY = "test-key"
DAYS = tuple(date(2026, 1, d) for d in range(1, 5))
NEW_SHOPPER = pseudonymize_id("new-shopper", KEY)
EXPORT_AT = datetime(2026, 1, 5, 12, tzinfo=UTC)


def params_for_small_data(settings: Settings) -> Params:
    params = load_params(settings.params_file)
    features = params.features.model_copy(update={"test_days": 1, "valid_days": 1})
    return params.model_copy(update={"features": features})


def context(settings: Settings, at: datetime = EXPORT_AT) -> StepContext:
    return StepContext(settings, params_for_small_data(settings), logical_date=at, actor="test")


def gate(settings: Settings, now: datetime) -> partial[ValidationReport]:
    params = params_for_small_data(settings).validation
    return partial(
        validate_batch,
        data_dir=settings.data_dir,
        quarantine_dir=settings.quarantine_dir,
        params=params,
        now=now,
    )


def publish(settings: Settings, batch: Path, now: datetime) -> str:
    result = publish_batch(
        batch,
        data_dir=settings.data_dir,
        repo_root=settings.data_dir.parent,
        validator=gate(settings, now),
        sync=False,
    )
    return result.status


def publish_days(settings: Settings) -> pd.DataFrame:
    """Four daily batches (300 events each: enough for the gate's volume check) through the gate."""
    frames = []
    for n, day in enumerate(DAYS):
        events = make_events(day, n=300, n_users=20, seed=n)
        events["user_id"] = pseudonymize(events["user_id"], KEY)
        batch = write_batch(settings.landing_dir / "days", day, events=events, catalog=make_catalog())
        assert publish(settings, batch, datetime(2026, 1, 6, tzinfo=UTC)) == "published"
        frames.append(events)
    return pd.concat(frames, ignore_index=True)


def serve_and_feedback(settings: Settings, known: str, ts: datetime) -> None:
    """What the scoring service stores: two served lists and feedback on them (every kind, one bad item)."""
    engine = feedback_engine(settings)
    create_feedback_tables(engine)
    lists = [("rec-a", known, ["i00001", "i00002"]), ("rec-b", NEW_SHOPPER, ["i00003", "i00004"])]
    record_recommendations(
        engine,
        [
            {"recommendation_id": rid, "user_id": user, "model_name": "m", "model_version": 3,
             "variant": "champion", "items": items, "created_at": ts}
            for rid, user, items in lists
        ],
    )  # fmt: skip
    kinds = [
        ("rec-a", known, "i00001", "impression"),
        ("rec-a", known, "i00001", "click"),
        ("rec-b", NEW_SHOPPER, "i00003", "impression"),
        ("rec-b", NEW_SHOPPER, "i00003", "click"),
        ("rec-b", NEW_SHOPPER, "i00003", "add_to_cart"),
        ("rec-b", NEW_SHOPPER, "i00003", "purchase"),
        ("rec-b", NEW_SHOPPER, "no-such-item", "click"),
    ]
    record_feedback(
        engine,
        [
            {"recommendation_id": rid, "user_id": user, "item_id": item, "kind": kind, "model_version": 3,
             "variant": "champion", "ts": ts + timedelta(seconds=n)}
            for n, (rid, user, item, kind) in enumerate(kinds)
        ],
    )  # fmt: skip


def test_feedback_passes_the_gate_and_reaches_the_next_features_run(recops_settings: Settings) -> None:
    events = publish_days(recops_settings)
    known = str(events["user_id"].iloc[0])
    serve_and_feedback(recops_settings, known, datetime(2026, 1, 5, 9, tzinfo=UTC))
    engine = feedback_engine(recops_settings)
    (click,) = [r for r in read_feedback(engine) if r["kind"] == "click" and r["user_id"] == known]
    record_feedback(engine, [{k: v for k, v in click.items() if k != "id"}])  # a retried write: stored twice

    result = run_feedback_export(context(recops_settings))
    batch = recops_settings.project_dir / result.outputs["batch"]
    assert batch.name == "2026-01-05T120000Z-feedback" == result.info["batch_id"]
    assert result.metrics["exported"] == 4.0  # 2 clicks, 1 add_to_cart, 1 purchase
    assert result.metrics["impressions"] == 2.0 and result.metrics["unknown_items"] == 1.0
    assert result.metrics["duplicates"] == 1.0
    assert (result.metrics["click"], result.metrics["add_to_cart"], result.metrics["purchase"]) == (
        2.0,
        1.0,
        1.0,
    )
    landed = pd.read_parquet(batch / "events.parquet")
    assert set(landed["user_id"]) == {known, NEW_SHOPPER}  # pseudonyms as stored: not hashed a second time
    assert "impression" not in set(landed["event_type"])
    assert set(pd.read_parquet(batch / "catalog.parquet")["item_id"]) == {"i00001", "i00003"}

    report = gate(recops_settings, EXPORT_AT)(batch)
    assert report.success, report.failures
    # judged against earlier feedback batches (none), not the 300-event days it would fall far short of:
    assert any(s.startswith("events.volume: no published batches") for s in report.skipped)
    assert publish(recops_settings, batch, EXPORT_AT) == "published"
    published, _ = read_published(recops_settings.data_dir)
    assert published["event_id"].isin(landed["event_id"]).sum() == len(landed) == 4

    features = run_features(context(recops_settings))
    assert features.metrics["events_in"] == len(events) + len(landed)
    user_ids = pd.read_parquet(recops_settings.project_dir / features.outputs["features"] / "users.parquet")
    assert NEW_SHOPPER in set(user_ids["user_id"])


def test_the_watermark_exports_each_row_once(recops_settings: Settings) -> None:
    events = publish_days(recops_settings)
    serve_and_feedback(recops_settings, str(events["user_id"].iloc[0]), datetime(2026, 1, 5, 9, tzinfo=UTC))
    first = run_feedback_export(context(recops_settings))
    state = read_state(state_path(recops_settings.runtime_dir))
    assert state == {"exported_until": EXPORT_AT.isoformat(), "last_batch": first.info["batch_id"]}

    again = run_feedback_export(context(recops_settings))
    assert again.outputs == {} and again.info["batch_id"] is None  # nothing new since the watermark
    earlier = run_feedback_export(context(recops_settings, EXPORT_AT - timedelta(hours=1)))
    assert earlier.info["batch_id"] is None  # a backfill before the watermark never moves it back
    assert read_state(state_path(recops_settings.runtime_dir))["exported_until"] == EXPORT_AT.isoformat()

    late = datetime(2026, 1, 5, 13, tzinfo=UTC)
    record_feedback(
        feedback_engine(recops_settings),
        [{"recommendation_id": "rec-b", "user_id": NEW_SHOPPER, "item_id": "i00004", "kind": "click",
          "model_version": 3, "variant": "champion", "ts": late}],
    )  # fmt: skip
    second = run_feedback_export(context(recops_settings, late + timedelta(hours=1)))
    assert second.metrics["exported"] == 1.0
    first_ids = set(
        pd.read_parquet(recops_settings.project_dir / first.outputs["batch"] / "events.parquet")["event_id"]
    )
    second_ids = set(
        pd.read_parquet(recops_settings.project_dir / second.outputs["batch"] / "events.parquet")["event_id"]
    )
    assert not first_ids & second_ids


def test_a_run_cut_short_is_redone_with_the_same_window_and_bytes(recops_settings: Settings) -> None:
    events = publish_days(recops_settings)
    serve_and_feedback(recops_settings, str(events["user_id"].iloc[0]), datetime(2026, 1, 5, 9, tzinfo=UTC))
    first = run_feedback_export(context(recops_settings))
    batch = recops_settings.project_dir / first.outputs["batch"]
    written = {p.name: p.read_bytes() for p in batch.iterdir()}
    path = state_path(recops_settings.runtime_dir)
    # The state a kill between "batch written" and "watermark advanced" leaves behind:
    path.write_text(
        json.dumps({"pending": {"since": None, "until": EXPORT_AT.isoformat(), "batch_id": batch.name}}),
        encoding="utf-8",
    )
    redo = run_feedback_export(context(recops_settings, EXPORT_AT + timedelta(days=2)))
    assert redo.info["batch_id"] == batch.name and redo.info["until"] == EXPORT_AT.isoformat()
    assert {p.name: p.read_bytes() for p in batch.iterdir()} == written
    assert read_state(path)["exported_until"] == EXPORT_AT.isoformat()


def test_forgotten_shoppers_are_not_exported(recops_settings: Settings) -> None:
    events = publish_days(recops_settings)
    known = str(events["user_id"].iloc[0])
    serve_and_feedback(recops_settings, known, datetime(2026, 1, 5, 9, tzinfo=UTC))
    forgotten_path(recops_settings.data_dir).write_text(NEW_SHOPPER + "\n", encoding="utf-8")
    result = run_feedback_export(context(recops_settings))
    landed = pd.read_parquet(recops_settings.project_dir / result.outputs["batch"] / "events.parquet")
    assert set(landed["user_id"]) == {known} and result.metrics["forgotten"] == 4.0


def test_a_damaged_state_file_stops_the_export(recops_settings: Settings) -> None:
    publish_days(recops_settings)
    path = state_path(recops_settings.runtime_dir)
    path.parent.mkdir(parents=True)
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(ExportStateError, match="unreadable feedback export state"):
        run_feedback_export(context(recops_settings))
    assert not (recops_settings.landing_dir / "feedback").exists()


def test_feedback_on_postgresql(
    recops_settings: Settings, make_pg_database: Callable[[], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same export with the metadata database on PostgreSQL (production's backend)."""
    from core.settings import get_settings

    monkeypatch.setenv("RECOPS_METADATA_DB_URL", make_pg_database())  # a database of its own
    get_settings.cache_clear()
    settings = get_settings()
    events = publish_days(settings)
    serve_and_feedback(settings, str(events["user_id"].iloc[0]), datetime(2026, 1, 5, 9, tzinfo=UTC))
    result = run_feedback_export(context(settings))
    assert result.metrics["exported"] == 4.0
    assert gate(settings, EXPORT_AT)(settings.project_dir / result.outputs["batch"]).success


def test_two_exports_at_once_export_each_row_once(recops_settings: Settings) -> None:
    from concurrent.futures import ThreadPoolExecutor

    events = publish_days(recops_settings)
    serve_and_feedback(recops_settings, str(events["user_id"].iloc[0]), datetime(2026, 1, 5, 9, tzinfo=UTC))
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: run_feedback_export(context(recops_settings)), range(2)))
    assert sorted(r.metrics.get("exported", 0.0) for r in results) == [0.0, 4.0]
    assert [r.info["batch_id"] is not None for r in results].count(True) == 1
