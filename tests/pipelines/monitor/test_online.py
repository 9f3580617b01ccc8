"""Online metrics from the feedback store: counting, thresholds, the verdict, the monitor's report."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from core.feedback import create_feedback_tables, feedback_engine, record_feedback, record_recommendations
from core.privacy import pseudonymize_id
from core.settings import Settings
from pipelines.monitor.drift import Verdict
from pipelines.monitor.online import assess_online, feedback_store_exists, read_online_metrics, with_online
from pipelines.monitor.step import MONITORING_SUFFIX, ONLINE_METRICS_NOTE, run_monitor
from pipelines.params import load_params
from pipelines.steps import StepContext

NOW = datetime(2026, 1, 10, tzinfo=UTC)
USER = pseudonymize_id("shopper", "k")


def fb(rid: str, item: str, kind: str, version: int = 3, variant: str = "champion") -> dict[str, Any]:
    return {"recommendation_id": rid, "user_id": USER, "item_id": item, "kind": kind,
            "model_version": version, "variant": variant, "ts": NOW - timedelta(hours=1)}  # fmt: skip


def served(rid: str, version: int = 3, variant: str = "champion") -> dict[str, Any]:
    return {"recommendation_id": rid, "user_id": USER, "model_name": "m", "model_version": version,
            "variant": variant, "items": ["a", "b"], "created_at": NOW - timedelta(hours=2)}  # fmt: skip


def assess(recs: list[dict[str, Any]], rows: list[dict[str, Any]], min_impressions: int = 2) -> Any:
    return assess_online(
        recs, rows, window_start=NOW - timedelta(days=7), window_end=NOW,
        min_impressions=min_impressions, min_click_through=0.3,
    )  # fmt: skip


def test_rates_count_distinct_pairs_per_version_and_variant() -> None:
    rows = [
        fb("r1", "a", "impression"), fb("r1", "b", "impression"), fb("r2", "a", "impression"),
        fb("r2", "b", "impression"), fb("r1", "a", "click"), fb("r1", "a", "click"),  # counted once
        fb("r1", "a", "purchase"), fb("r3", "a", "impression", 4, "challenger"),
    ]  # fmt: skip
    online = assess([served("r1"), served("r2"), served("r3", 4, "challenger")], rows)
    champion, challenger = online.groups
    assert (champion.model_version, champion.variant, champion.served) == (3, "champion", 2)
    assert (champion.impressions, champion.clicks, champion.purchases) == (4, 1, 1)
    assert champion.click_through == 0.25 and champion.conversion == 0.25 and champion.enough
    assert (challenger.key, challenger.impressions, challenger.enough) == ("v4.challenger", 1, False)
    assert online.metrics()["online.v3.champion.click_through"] == 0.25
    assert online.metrics()["online.v4.challenger.click_through"] == 0.0
    assert online.status == "below_threshold" and online.flagged() == [champion]
    assert online.reasons() == ["online click-through of v3.champion 0.2500 < 0.3 over 4 impressions"]


def test_too_few_impressions_give_no_verdict_and_no_nan_metrics() -> None:
    online = assess([served("r1")], [fb("r1", "a", "click")], min_impressions=10)
    (group,) = online.groups
    assert math.isnan(group.click_through) and group.to_dict()["click_through"] is None
    assert online.status == "insufficient_feedback" and online.flagged() == []
    assert "online.v3.champion.click_through" not in online.metrics()
    assert "fewer than 10 impressions" in online.note()
    assert assess([], []).note() == "no feedback in the window"


def test_a_challenger_is_reported_never_judged() -> None:
    rows = [fb(f"r{i}", "a", "impression", 4, "challenger") for i in range(5)]
    online = assess([], rows)
    assert online.groups[0].enough and online.flagged() == [] and online.status == "insufficient_feedback"


@pytest.mark.parametrize("bad", [{"min_impressions": 0}, {"min_click_through": 1.5}])
def test_thresholds_are_checked(bad: dict[str, Any]) -> None:
    kwargs: dict[str, Any] = {"min_impressions": 1, "min_click_through": 0.1, **bad}
    with pytest.raises(ValueError, match="must be"):
        assess_online([], [], window_start=NOW, window_end=NOW, **kwargs)


def test_a_flagged_champion_requests_retraining_only_on_new_data() -> None:
    flagged = assess([served("r1")], [fb("r1", "a", "impression"), fb("r1", "b", "impression")])
    stable = Verdict(status="stable", retrain=False, reasons=())
    changed = with_online(stable, flagged, data_changed=True)
    assert changed.status == "online_degraded" and changed.retrain
    assert changed.reasons == tuple(flagged.reasons())
    same = with_online(stable, flagged, data_changed=False)
    assert same.status == "online_degraded" and not same.retrain and "reproduce" in same.reasons[-1]
    drift = Verdict(status="drift", retrain=True, reasons=("category_mix psi 0.3 > 0.1",))
    assert with_online(drift, flagged, data_changed=True).reasons == (*drift.reasons, *flagged.reasons())
    fine = assess([served("r1")], [fb("r1", "a", "impression"), fb("r1", "a", "click")])
    assert (
        with_online(stable, fine, data_changed=True) is stable
        and with_online(stable, None, data_changed=True) is stable
    )


def store_feedback(settings: Settings, clicks: int, impressions: int) -> None:
    engine = feedback_engine(settings)
    create_feedback_tables(engine)
    record_recommendations(engine, [served(f"r{i}") for i in range(impressions)])
    rows = [fb(f"r{i}", "a", "impression") for i in range(impressions)]
    rows += [fb(f"r{i}", "a", "click") for i in range(clicks)]
    rows.append({**fb("r0", "a", "click"), "ts": NOW - timedelta(days=8)})  # outside the 7-day window
    record_feedback(engine, rows)


def test_read_online_metrics_reads_the_window_of_the_store(recops_settings: Settings) -> None:
    assert not feedback_store_exists(recops_settings)
    assert (
        read_online_metrics(recops_settings, NOW, window_days=7, min_impressions=1, min_click_through=0.1)
        is None
    )
    store_feedback(recops_settings, clicks=3, impressions=10)
    online = read_online_metrics(
        recops_settings, NOW, window_days=7, min_impressions=5, min_click_through=0.1
    )
    assert online is not None and online.groups[0].clicks == 3 and online.groups[0].click_through == 0.3


def test_read_online_metrics_on_postgresql(
    recops_settings: Settings, make_pg_database: Callable[[], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from core.settings import get_settings

    monkeypatch.setenv("RECOPS_METADATA_DB_URL", make_pg_database())  # a database of its own
    get_settings.cache_clear()
    settings = get_settings()
    store_feedback(settings, clicks=1, impressions=4)
    online = read_online_metrics(settings, NOW, window_days=7, min_impressions=4, min_click_through=0.5)
    assert online is not None and online.status == "below_threshold"


def context(settings: Settings) -> StepContext:
    return StepContext(settings, load_params(settings.params_file), logical_date=NOW, actor="test")


def test_the_monitor_report_and_run_carry_the_online_metrics(recops_settings: Settings) -> None:
    from mlflow import MlflowClient

    store_feedback(recops_settings, clicks=2, impressions=8)
    result = run_monitor(context(recops_settings))
    assert result.info["online_status"] == "insufficient_feedback"  # 8 < monitor.online_min_impressions
    assert result.metrics["online.v3.champion.click_through"] == 0.25
    page = (recops_settings.project_dir / result.outputs["report"]).read_text(encoding="utf-8")
    assert "Online metrics" in page and "<td>v3</td><td>champion</td>" in page and "0.2500" in page
    summary = json.loads(
        (recops_settings.project_dir / result.outputs["summary"]).read_text(encoding="utf-8")
    )
    assert (
        summary["online"][0]["impressions"] == 8
        and summary["summary"]["online_metrics"] == "insufficient_feedback"
    )
    client = MlflowClient(recops_settings.mlflow_tracking_uri)
    run = client.get_run(result.run_ids["monitor"])
    assert run.data.metrics["online.v3.champion.click_through"] == 0.25
    assert run.data.tags["recops.monitor.online_status"] == "insufficient_feedback"
    assert client.get_experiment_by_name(recops_settings.mlflow_experiment + MONITORING_SUFFIX) is not None


def test_without_a_feedback_store_the_report_says_so(recops_settings: Settings) -> None:
    result = run_monitor(context(recops_settings))
    assert result.info["online_status"] is None
    assert not any(k.startswith("online.") for k in result.metrics)
    page = (recops_settings.project_dir / result.outputs["report"]).read_text(encoding="utf-8")
    assert ONLINE_METRICS_NOTE in page
    assert not feedback_store_exists(recops_settings)  # looking did not create the tables
