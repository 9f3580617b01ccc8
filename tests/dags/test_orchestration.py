"""The functions the DAG tasks call (``pipelines.orchestration``), without Airflow: dates, sources, the
gate's rejection, the training plan and the Asset extras."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from pydantic import SecretStr

from core.errors import RecopsError
from core.settings import Settings
from pipelines.orchestration import tasks
from pipelines.orchestration.context import batch_day, end_of_day, parse_instant, resolve
from pipelines.orchestration.sources import (
    BatchNotAvailable,
    check_generated_day,
    check_source,
    generator_cache,
    landing_folder,
)
from pipelines.params import GenerateParams, load_params
from pipelines.steps import StepResult
from tests.factories import make_catalog, make_events, write_batch

# ------------------------------------------------------------------------------------------ context


def test_instants_are_utc_and_naive_means_utc() -> None:
    assert parse_instant("2026-01-05T00:00:00+00:00") == datetime(2026, 1, 5, tzinfo=UTC)
    assert parse_instant("2026-01-05T01:00:00+01:00") == datetime(2026, 1, 5, tzinfo=UTC)
    assert parse_instant("2026-01-05T00:00:00Z") == datetime(2026, 1, 5, tzinfo=UTC)
    assert parse_instant("2026-01-05") == datetime(2026, 1, 5, tzinfo=UTC)
    assert parse_instant("") is None and parse_instant(None) is None
    with pytest.raises(RecopsError, match="not an ISO 8601"):
        parse_instant("yesterday")


def test_the_batch_of_a_logical_date_is_its_utc_day_judged_at_the_end_of_it() -> None:
    assert batch_day("2026-01-05T23:30:00-02:00") == date(2026, 1, 6)
    assert end_of_day(date(2026, 1, 5)) == datetime(2026, 1, 6, tzinfo=UTC)
    with pytest.raises(RecopsError, match="needs a logical date"):
        batch_day("")


def test_resolve_keeps_absolute_paths_and_anchors_relative_ones(recops_settings: Settings) -> None:
    assert resolve("data/x", recops_settings) == recops_settings.project_dir / "data" / "x"
    assert resolve("/abs/x", recops_settings) == Path("/abs/x")
    with pytest.raises(RecopsError):
        resolve(" ", recops_settings)


# ------------------------------------------------------------------------------------------ sources


def test_sources_and_the_generator_period() -> None:
    assert check_source("generator") == "generator" and check_source("landing") == "landing"
    with pytest.raises(RecopsError, match="unknown batch source 's3'"):
        check_source("s3")
    params = GenerateParams(days=3, start=date(2026, 1, 1))
    check_generated_day(date(2026, 1, 3), params)
    with pytest.raises(BatchNotAvailable, match=r"2026-01-01 \.\. 2026-01-03"):
        check_generated_day(date(2026, 1, 4), params)


def test_the_generator_cache_is_keyed_by_params_and_key(recops_settings: Settings) -> None:
    params = GenerateParams(days=3)
    here = generator_cache(recops_settings, params)
    assert here.parent == recops_settings.landing_dir / "generator"
    assert generator_cache(recops_settings, params) == here
    assert generator_cache(recops_settings, GenerateParams(days=4)) != here
    other_key = recops_settings.model_copy(update={"pseudonymization_key": SecretStr("another-key")})
    assert generator_cache(other_key, params) != here
    assert "another-key" not in str(generator_cache(other_key, params))


def test_landing_folder_default_and_given(recops_settings: Settings) -> None:
    assert landing_folder(recops_settings, "") == recops_settings.landing_dir / "incoming"
    assert landing_folder(recops_settings, "/srv/drop") == Path("/srv/drop")


# ------------------------------------------------------------------------------------------ ingest


def test_fetch_from_a_landing_folder_and_a_missing_day(recops_settings: Settings, tmp_path: Path) -> None:
    landing = tmp_path / "drop"
    write_batch(landing, date(2026, 1, 5))
    fetched = tasks.fetch_batch(
        logical_date="2026-01-05T00:00:00+00:00", source="landing", landing=str(landing)
    )
    assert fetched["outputs"]["batch"] == str(landing / "2026-01-05")
    assert fetched["info"] == {"batch_id": "2026-01-05", "source": "landing", "generated": False}
    with pytest.raises(BatchNotAvailable, match="no batch for 2026-01-06"):
        tasks.fetch_batch(logical_date="2026-01-06T00:00:00+00:00", source="landing", landing=str(landing))


def test_fetch_generates_the_dataset_once_into_the_cache(
    recops_settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("generate: {days: 3, users: 40, items: 30, start: '2026-01-01'}\n", encoding="utf-8")
    monkeypatch.setenv("RECOPS_PARAMS_FILE", str(params))
    from core.settings import get_settings

    get_settings.cache_clear()
    first = tasks.fetch_batch(logical_date="2026-01-02T00:00:00+00:00")
    batch = Path(first["outputs"]["batch"])
    assert first["info"]["generated"] is True and batch.name == "2026-01-02"
    assert sorted(p.name for p in batch.parent.iterdir()) == ["2026-01-01", "2026-01-02", "2026-01-03"]
    again = tasks.fetch_batch(logical_date="2026-01-03T00:00:00+00:00")
    assert again["info"]["generated"] is False
    with pytest.raises(BatchNotAvailable):
        tasks.fetch_batch(logical_date="2026-01-04T00:00:00+00:00")


def test_a_rejected_batch_names_its_quarantine_and_data_docs(
    recops_settings: Settings, tmp_path: Path
) -> None:
    events = make_events(date(2026, 1, 5))
    events.loc[events.index[:20], "price"] = -1.0
    batch = write_batch(tmp_path / "drop", date(2026, 1, 5), events=events, catalog=make_catalog())
    with pytest.raises(tasks.GateRejected) as caught:
        tasks.validate_landed(batch=str(batch), logical_date="2026-01-05T00:00:00+00:00")
    rejected = caught.value
    assert rejected.batch_id == "2026-01-05"
    assert Path(rejected.quarantine) == recops_settings.quarantine_dir / "2026-01-05"
    assert rejected.data_docs.startswith("file://") and rejected.data_docs.endswith("data_docs/index.html")
    assert Path(rejected.data_docs.removeprefix("file://")).is_file()
    assert f"Data Docs: {rejected.data_docs}" in str(rejected) and "price" in str(rejected)
    assert not (recops_settings.data_dir / "2026-01-05").exists()


def test_history_needs_every_day_of_its_range_before_publishing_anything(
    recops_settings: Settings, tmp_path: Path
) -> None:
    landing = tmp_path / "drop"
    for day in (1, 2, 4):
        write_batch(landing, date(2026, 1, day))
    with pytest.raises(BatchNotAvailable, match="no batch for 2026-01-03"):
        tasks.ingest_history(
            first_day="2026-01-01", last_day="2026-01-04", source="landing", landing=str(landing)
        )
    assert not recops_settings.data_dir.exists() or not any(recops_settings.data_dir.iterdir())
    with pytest.raises(RecopsError, match=r"ends \(2026-01-01\) before it starts"):
        tasks.ingest_history(first_day="2026-01-04", last_day="2026-01-01")


# ------------------------------------------------------------------------------------------ train


def test_plan_needs_enough_days_and_known_families(recops_settings: Settings) -> None:
    with pytest.raises(RecopsError, match="DAG run id"):
        tasks.plan_training(dag_run_id="")
    with pytest.raises(tasks.NotEnoughData, match="0 published daily batch"):
        tasks.plan_training(dag_run_id="manual__1")
    for day in range(1, 16):  # features.valid_days 7 + test_days 7 + 1
        write_batch(recops_settings.data_dir, date(2026, 1, day))
    planned = tasks.plan_training(dag_run_id="manual__1")
    configured = load_params(recops_settings.params_file).train.families
    assert planned["info"]["families"] == list(configured) and "als" in configured
    assert planned["info"]["published_batches"] == 15 == planned["info"]["min_batches"]
    assert tasks.plan_training(dag_run_id="manual__1", families=["als"])["info"]["families"] == ["als"]
    with pytest.raises(RecopsError, match=r"'no_such_family' is not in params\.yaml train\.families"):
        tasks.plan_training(dag_run_id="manual__1", families=["als", "no_such_family"])
    with pytest.raises(RecopsError, match="more than once"):
        tasks.plan_training(dag_run_id="manual__1", families=["als", "als"])


# ------------------------------------------------------------------------------------------ Asset extras


def test_an_unchanged_publish_announces_nothing() -> None:
    published = StepResult(
        step="publish",
        metrics={"events": 812.0},
        info={"batch_id": "2026-01-05", "status": "published", "data_md5": "abc.dir"},
    ).to_dict()
    assert tasks.announcement(published) == {
        "batch_id": "2026-01-05",
        "status": "published",
        "data_md5": "abc.dir",
        "events": 812,
    }
    unchanged = {**published, "info": {**published["info"], "status": "unchanged"}}
    assert tasks.announcement(unchanged) is None


def test_a_retrain_request_carries_the_reasons() -> None:
    measured = StepResult(
        step="monitor",
        outputs={"report": "runtime/monitor/2026-01-10/report.html"},
        run_ids={"monitor": "r1"},
        info={"status": "drift", "retrain": True, "reasons": ["new_item_rate rate 0.3 > 0.2"],
              "champion_version": 3, "data_md5": "new.dir"},
    ).to_dict()  # fmt: skip
    assert tasks.retrain_request(measured) == {
        "reasons": ["new_item_rate rate 0.3 > 0.2"],
        "status": "drift",
        "champion_version": 3,
        "data_md5": "new.dir",
        "monitor_run_id": "r1",
        "report": "runtime/monitor/2026-01-10/report.html",
    }
    stable = {**measured, "info": {**measured["info"], "retrain": False, "status": "stable"}}
    assert tasks.retrain_request(stable) is None
