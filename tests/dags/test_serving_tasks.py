"""The task functions of the scoring service's batch side (``pipelines.orchestration.serving_tasks``), without
Airflow: the feedback window of a run, the export handed to the gate, a cleared run, the online seed."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from core.errors import RecopsError
from core.feedback import create_feedback_tables, feedback_engine, record_feedback, record_recommendations
from core.online_seed import seed_paths
from core.privacy import pseudonymize, pseudonymize_id
from core.settings import Settings
from pipelines.orchestration import serving_tasks, tasks
from pipelines.steps import StepResult
from tests.factories import make_catalog, make_events, write_batch

KEY = "test-key"
DAYS = tuple(date(2026, 1, d) for d in range(1, 4))
RUN_AT = "2026-01-05T00:00:00+00:00"
SHOPPER = pseudonymize_id("shopper", KEY)


def publish_days(settings: Settings) -> pd.DataFrame:
    frames = []
    for n, day in enumerate(DAYS):
        events = make_events(day, n=300, n_users=20, seed=n)
        events["user_id"] = pseudonymize(events["user_id"], KEY)
        write_batch(settings.data_dir, day, events=events, catalog=make_catalog())
        frames.append(events)
    return pd.concat(frames, ignore_index=True)


def click(settings: Settings, at: datetime) -> None:
    """One served list and an impression and a click on it, as the scoring service stores them."""
    engine = feedback_engine(settings)
    create_feedback_tables(engine)
    rid = f"rec-{at:%H%M}"
    record_recommendations(
        engine,
        [{"recommendation_id": rid, "user_id": SHOPPER, "model_name": "m", "model_version": 2,
          "variant": "champion", "items": ["i00001"], "created_at": at}],
    )  # fmt: skip
    record_feedback(
        engine,
        [{"recommendation_id": rid, "user_id": SHOPPER, "item_id": "i00001", "kind": kind,
          "model_version": 2, "variant": "champion", "ts": at + timedelta(seconds=1)}
         for kind in ("impression", "click")],
    )  # fmt: skip


def test_the_window_ends_the_lag_before_the_logical_date() -> None:
    assert serving_tasks.feedback_window_end(RUN_AT, 10) == datetime(2026, 1, 4, 23, 50, tzinfo=UTC)
    now = datetime(2026, 2, 1, 12, tzinfo=UTC)
    assert serving_tasks.feedback_window_end("", 0, now=now) == now  # a manual run without a logical date
    with pytest.raises(RecopsError, match="lag_minutes must be >= 0"):
        serving_tasks.feedback_window_end(RUN_AT, -1)


def test_nothing_published_means_nothing_to_export(recops_settings: Settings) -> None:
    with pytest.raises(serving_tasks.NothingToExport, match="nothing published"):
        serving_tasks.export_feedback(logical_date=RUN_AT)


def test_the_exported_batch_passes_the_gate_and_a_cleared_run_hands_it_on(recops_settings: Settings) -> None:
    publish_days(recops_settings)
    click(recops_settings, datetime(2026, 1, 4, 9, tzinfo=UTC))
    click(recops_settings, datetime(2026, 1, 4, 23, 55, tzinfo=UTC))  # after the window's end: next run

    exported = serving_tasks.export_feedback(logical_date=RUN_AT, dag_run_id="scheduled__x")
    batch = recops_settings.project_dir / exported["outputs"]["batch"]
    assert batch.name == "2026-01-04T235000Z-feedback" == exported["info"]["batch_id"]
    assert batch.parent == recops_settings.landing_dir / "feedback"
    assert exported["info"]["gate_date"] == "2026-01-04T23:50:00+00:00"
    assert exported["metrics"]["exported"] == 1.0 and exported["info"]["reused"] is False

    validated = tasks.validate_landed(
        batch=exported["outputs"]["batch"], logical_date=exported["info"]["gate_date"]
    )
    assert validated["info"]["batch_id"] == batch.name and validated["metrics"]["evaluated_expectations"] > 0

    again = serving_tasks.export_feedback(logical_date=RUN_AT, dag_run_id="scheduled__x")
    assert again["info"]["reused"] is True and again["outputs"]["batch"] == exported["outputs"]["batch"]
    assert "exported" not in again["metrics"] or again["metrics"]["exported"] == 0.0

    later = serving_tasks.export_feedback(logical_date="2026-01-06T00:00:00+00:00")
    assert later["metrics"]["exported"] == 1.0 and later["info"]["batch_id"] != batch.name
    with pytest.raises(serving_tasks.NothingToExport, match="no new feedback"):
        serving_tasks.export_feedback(logical_date="2026-01-06T06:00:00+00:00")


def test_a_published_feedback_batch_announces_itself_as_feedback() -> None:
    published = StepResult(
        step="publish",
        metrics={"events": 4.0},
        info={"batch_id": "2026-01-04T235000Z-feedback", "status": "published", "data_md5": "abc.dir"},
    ).to_dict()
    assert serving_tasks.feedback_announcement(published) == {
        "batch_id": "2026-01-04T235000Z-feedback",
        "status": "published",
        "data_md5": "abc.dir",
        "events": 4,
        "source": "feedback",
    }
    unchanged = {**published, "info": {**published["info"], "status": "unchanged"}}
    assert serving_tasks.feedback_announcement(unchanged) is None


def test_the_online_seed_is_refreshed_once_per_digest(recops_settings: Settings) -> None:
    events = publish_days(recops_settings)
    first = serving_tasks.refresh_online_seed(dag_run_id="manual__1")
    assert first["info"]["changed"] is True
    assert first["metrics"]["users"] == float(events["user_id"].nunique())
    assert Path(recops_settings.project_dir / first["outputs"]["seed"]) == seed_paths(recops_settings)[0]
    again = serving_tasks.refresh_online_seed(dag_run_id="manual__2")
    assert again["info"]["changed"] is False and again["info"]["digest"] == first["info"]["digest"]
