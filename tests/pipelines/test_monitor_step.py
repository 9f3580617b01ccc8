"""The monitor step's I/O and tracking: windows, the report, the MLflow run, the paths without a verdict.

The path with a champion (a registered, promoted model) runs end to end in tests/dags/test_dag_runs.py.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import pandas as pd

from core.settings import Settings
from pipelines.monitor.drift import assess, verdict
from pipelines.monitor.report import drift_figures, render_html
from pipelines.monitor.step import MONITORING_SUFFIX, run_monitor, windows
from pipelines.params import load_params
from pipelines.steps import StepContext
from tests.factories import make_catalog, make_events, write_batch

THRESHOLDS = {"category_mix": 0.1, "item_popularity": 0.35, "events_per_user": 0.1, "new_item_rate": 0.2}


def context(settings: Settings) -> StepContext:
    return StepContext(
        settings,
        load_params(settings.params_file),
        pipeline_run_id="scheduled__2026-01-10T00:00:00+00:00",
        logical_date=datetime(2026, 1, 10, tzinfo=UTC),
        actor="test",
    )


def monitoring_runs(settings: Settings) -> list[object]:
    from mlflow import MlflowClient

    client = MlflowClient(settings.mlflow_tracking_uri)
    experiment = client.get_experiment_by_name(settings.mlflow_experiment + MONITORING_SUFFIX)
    assert experiment is not None
    return list(client.search_runs([experiment.experiment_id]))


def test_windows_split_reference_before_the_cutoff_and_the_recent_batches() -> None:
    days = [date(2026, 1, d) for d in range(1, 11)]
    events = pd.concat(
        [make_events(d, n=10, seed=i).assign(batch_id=d.isoformat()) for i, d in enumerate(days)]
    )
    cutoff = datetime(2026, 1, 8, tzinfo=UTC)
    reference, recent, ids = windows(events, cutoff, reference_days=3, recent_batches=4)
    assert sorted(reference["batch_id"].unique()) == ["2026-01-05", "2026-01-06", "2026-01-07"]
    assert ids == ["2026-01-07", "2026-01-08", "2026-01-09", "2026-01-10"]
    assert sorted(recent["batch_id"].unique()) == ids
    assert (reference["ts"] < pd.Timestamp(cutoff)).all()


def test_no_published_data_gives_no_verdict_but_a_report_and_a_run(recops_settings: Settings) -> None:
    result = run_monitor(context(recops_settings))
    assert result.info["status"] == "no_data" and result.info["retrain"] is False
    report = recops_settings.project_dir / result.outputs["report"]
    assert report.is_file() and "no_data" in report.read_text(encoding="utf-8")
    assert result.outputs["report"].endswith("monitor/2026-01-10/report.html")
    summary = json.loads(
        (recops_settings.project_dir / result.outputs["summary"]).read_text(encoding="utf-8")
    )
    assert summary["verdict"] == {"status": "no_data", "retrain": False, "reasons": result.info["reasons"]}
    (run,) = monitoring_runs(recops_settings)
    assert run.info.run_id == result.run_ids["monitor"]  # type: ignore[attr-defined]
    tags = run.data.tags  # type: ignore[attr-defined]
    assert tags["recops.monitor.status"] == "no_data" and tags["recops.monitor.retrain"] == "false"
    assert tags["orchestrator_run_id"] == "scheduled__2026-01-10T00:00:00+00:00"
    assert run.data.params["threshold.item_popularity"] == "0.35"  # type: ignore[attr-defined]


def test_without_a_champion_there_is_nothing_to_compare(recops_settings: Settings) -> None:
    write_batch(recops_settings.data_dir, date(2026, 1, 1))
    result = run_monitor(context(recops_settings))
    assert result.info["status"] == "no_champion" and result.info["retrain"] is False
    assert result.info["champion_version"] is None
    assert "has no champion" in result.info["reasons"][0]
    assert result.metrics == {}


def test_the_report_shows_every_signal_and_embeds_the_plots() -> None:
    catalog = make_catalog()
    reference = pd.concat([make_events(date(2026, 1, d), n=300, seed=d) for d in range(1, 8)])
    recent = make_events(date(2026, 1, 9), n=300, n_items=80, seed=99)  # items 50..79 are new
    assessment = assess(
        reference, recent, catalog, set(catalog["item_id"]), metric="psi", thresholds=THRESHOLDS, top_items=20
    )
    outcome = verdict(assessment, data_changed=True)
    assert outcome.retrain and "new_item_rate" in {s.name for s in assessment.drifted}
    figures = drift_figures(assessment)
    assert set(figures) == {"overview", "category_mix", "item_popularity", "events_per_user"}
    page = render_html({"champion_version": 3}, outcome, assessment, {"overview": b"\x89PNG fake"})
    for signal in ("category_mix", "item_popularity", "events_per_user", "new_item_rate"):
        assert f"<td>{signal}</td>" in page
    assert "retraining requested" in page and "data:image/png;base64," in page
    assert "<th>champion_version</th><td>3</td>" in page
