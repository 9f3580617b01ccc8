"""The DAGs end to end with ``dag.test()`` on small generated data, in a throw-away project copy.

Nineteen days are published up front (the data layer a running system would have, through
``tasks.ingest_history``); then: ingest day 20
through the DAG (published, Asset event) -> the same DAG run again (idempotent: ``unchanged``, no event)
-> train (mapped families, one MLflow parent run per DAG run, a champion) -> the same train DAG run again
(same ``dvc.lock``, no second model version) -> a new train DAG run on the same data (its own parent run,
still no second version) -> a broken day 21 from a landing folder (fails at the gate, quarantined, nothing
downstream runs, champion unchanged) -> monitor: drift but no new data (no request) -> day 21 published ->
monitor: drift and new data (retraining requested through the Asset, with the reasons) -> the scoring
service's feedback through ``recops_feedback`` (exported, gated, published, announced; a rerun: unchanged).

The tests are ordered steps sharing one project (``STEPS``); a failed step skips the rest.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from tests.dags.project import (
    asset_events,
    make_dag_project,
    parse_dags,
    project_environment,
    run_dag,
    task_instances,
    task_states,
    xcom,
)
from tests.e2e.conftest import E2EProject

pytestmark = pytest.mark.e2e
STEPS = True

DAYS = 21
PROJECT_PARAMS = {
    "generate.days": DAYS,
    "generate.users": 600,
    "generate.items": 300,
    "features.valid_days": 3,
    "features.test_days": 4,
    "monitor.min_events": 100,
    "monitor.thresholds.item_popularity": 0.01,  # so that the small data drifts for sure
}
PRE_PUBLISHED = 19
INGEST_DAY = datetime(2026, 1, 20, tzinfo=UTC)
BAD_DAY = datetime(2026, 1, 21, tzinfo=UTC)
TRAIN_DATE = datetime(2026, 1, 21, 6, tzinfo=UTC)
NEXT_TRAIN_DATE = datetime(2026, 1, 21, 7, tzinfo=UTC)
MODEL = "recops-recommender"
ASSET = "recops_published_data"
RETRAIN = "recops_retrain_request"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, airflow_db: Path) -> Iterator[E2EProject]:
    """The project copy, this process pointed at it, days 1..19 published in one go through the ingest
    steps (``tasks.ingest_history``: generated, gated, one ``dvc add`` and push), as ``make demo`` does."""
    made = make_dag_project(tmp_path_factory.mktemp("dags") / "project", PROJECT_PARAMS)
    with project_environment(made):
        from pipelines.orchestration import tasks

        history = tasks.ingest_history(first_day="2026-01-01", last_day=f"2026-01-{PRE_PUBLISHED:02d}")
        assert [b["status"] for b in history["info"]["batches"]] == ["published"] * PRE_PUBLISHED
        assert history["info"]["pushed"] is True and history["info"]["data_md5"] == data_md5(made)
        assert sorted(p.name for p in (made.root / "data").iterdir())[-1] == f"2026-01-{PRE_PUBLISHED:02d}"
        yield made


@pytest.fixture
def dags() -> dict[str, Any]:
    """The DAGs parsed afresh for each test: ``dag.test()`` runs tasks in this process, and a DAG object
    that ran with a ``conf`` keeps those param values for its next run (a real worker parses anew)."""
    return parse_dags()


@pytest.fixture(scope="module")
def state() -> dict[str, Any]:
    """What one step leaves for the next."""
    return {}


def data_md5(project: E2EProject) -> str:
    doc = yaml.safe_load((project.root / "data.dvc").read_text(encoding="utf-8"))
    return str(doc["outs"][0]["md5"])


def champion(project: E2EProject) -> int | None:
    from mlflow.exceptions import MlflowException

    try:
        return int(project.mlflow_client().get_model_version_by_alias(MODEL, "champion").version)
    except MlflowException:
        return None


def pipeline_parents(project: E2EProject, dag_run_id: str) -> list[Any]:
    """The MLflow parent runs of one DAG run."""
    client = project.mlflow_client()
    experiment = client.get_experiment_by_name("recops")
    where = f"tags.`recops.pipeline_key` = 'orchestrated:{dag_run_id}'"
    return list(client.search_runs([experiment.experiment_id], filter_string=where))


def versions(project: E2EProject) -> list[int]:
    return sorted(int(v.version) for v in project.mlflow_client().search_model_versions(f"name = '{MODEL}'"))


# ------------------------------------------------------------------------------------- ingest


def test_01_ingest_publishes_the_day_and_updates_the_asset(
    project: E2EProject, dags: dict[str, Any], state: dict[str, Any]
) -> None:
    before = data_md5(project)
    with project_environment(project):
        run = run_dag(dags["recops_ingest"], INGEST_DAY)
    states = task_states(run)
    assert run.state == "success", states
    assert states == {t: ["success"] for t in ("fetch", "validate", "publish", "announce", "online_seed")}
    published = xcom(run, "publish")
    assert published["info"]["status"] == "published" and published["info"]["batch_id"] == "2026-01-20"
    assert published["outputs"]["data"] == "data/2026-01-20"
    assert (project.root / "data" / "2026-01-20" / "events.parquet").is_file()
    assert data_md5(project) != before and published["info"]["data_md5"] == data_md5(project)
    assert published["info"]["pushed"] is True
    validated = xcom(run, "validate")
    assert validated["metrics"]["evaluated_expectations"] > 0
    events = [e for e in asset_events(ASSET) if e["run_id"] == run.run_id]
    assert len(events) == 1, asset_events(ASSET)
    assert events[0]["task_id"] == "announce"
    assert events[0]["extra"] == {
        "batch_id": "2026-01-20",
        "status": "published",
        "data_md5": data_md5(project),
        "events": published["metrics"]["events"],
    }
    state["ingest_md5"] = data_md5(project)


def test_02_rerunning_the_ingest_run_is_idempotent(
    project: E2EProject, dags: dict[str, Any], state: dict[str, Any]
) -> None:
    events_before = asset_events(ASSET)
    with project_environment(project):
        run = run_dag(dags["recops_ingest"], INGEST_DAY)
    states = task_states(run)
    assert run.state == "success", states
    assert states["publish"] == ["success"] and states["announce"] == ["skipped"]
    assert states["online_seed"] == ["success"] and xcom(run, "online_seed")["info"]["changed"] is False
    assert xcom(run, "publish")["info"]["status"] == "unchanged"
    assert data_md5(project) == state["ingest_md5"]
    assert asset_events(ASSET) == events_before, "an unchanged publish must not announce (no training)"


# ------------------------------------------------------------------------------------- train


def test_03_train_maps_the_families_and_promotes_a_champion(
    project: E2EProject, dags: dict[str, Any], state: dict[str, Any]
) -> None:
    families = project.params()["train"]["families"]
    with project_environment(project):
        run = run_dag(dags["recops_train"], TRAIN_DATE)
    states = task_states(run)
    assert run.state == "success", states
    trained = task_instances(run, "train")
    assert [t["rendered_map_index"] for t in trained] == families
    assert {(t["state"], t["pool"]) for t in trained} == {("success", "recops_dvc")}
    for index, family in enumerate(families):
        out = xcom(run, "train", index)
        assert out["step"] == f"train@{family}" and out["info"]["ran"] is True, out
        assert any(path.startswith(f"artifacts/models/{family}") for path in out["outputs"]), out

    client = project.mlflow_client()
    experiment = client.get_experiment_by_name("recops")
    parents = pipeline_parents(project, run.run_id)
    assert len(parents) == 1, "one MLflow parent run per DAG run"
    assert parents[0].data.tags["orchestrator_run_id"] == run.run_id
    children = client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parents[0].info.run_id}'"
    )
    assert sorted(c.data.tags["family"] for c in children) == sorted(families)

    registered = xcom(run, "register")
    promoted = xcom(run, "promote")
    assert registered["info"]["created"] is True, registered
    assert promoted["info"]["outcome"] == "promoted", promoted["info"]
    assert champion(project) == registered["info"]["version"]
    assert versions(project) == [registered["info"]["version"]]
    state["lock"] = (project.root / "dvc.lock").read_bytes()
    state["champion"] = champion(project)


def test_04_rerunning_the_train_run_changes_nothing(
    project: E2EProject, dags: dict[str, Any], state: dict[str, Any]
) -> None:
    with project_environment(project):
        run = run_dag(dags["recops_train"], TRAIN_DATE)
    states = task_states(run)
    assert run.state == "success", states
    for index in range(len(project.params()["train"]["families"])):
        assert xcom(run, "train", index)["info"]["ran"] is False
    evaluated = xcom(run, "evaluate")
    assert evaluated["info"] == {**evaluated["info"], "ran": False, "forced": False}
    assert (project.root / "dvc.lock").read_bytes() == state["lock"], "dvc.lock changed on a rerun"
    assert xcom(run, "register")["info"]["created"] is False
    assert versions(project) == [state["champion"]], "a rerun registered a second version"
    assert xcom(run, "promote")["info"]["outcome"] == "already_champion"
    assert project.run("dvc", "status").stdout.strip() == "Data and pipelines are up to date."


def test_05_a_new_train_run_on_the_same_data_registers_nothing_new(
    project: E2EProject, dags: dict[str, Any], state: dict[str, Any]
) -> None:
    with project_environment(project):
        run = run_dag(dags["recops_train"], NEXT_TRAIN_DATE)
    assert run.state == "success", task_states(run)
    evaluated = xcom(run, "evaluate")
    assert evaluated["info"]["forced"] is True, "a new DAG run gets its own evaluation (its parent run)"
    parents = pipeline_parents(project, run.run_id)
    assert len(parents) == 1 and parents[0].data.tags["orchestrator_run_id"] == run.run_id
    assert (project.root / "dvc.lock").read_bytes() == state["lock"], "a forced evaluate changed dvc.lock"
    assert xcom(run, "register")["info"]["created"] is False
    assert versions(project) == [state["champion"]]
    assert xcom(run, "promote")["info"]["outcome"] == "already_champion"


# ------------------------------------------------------------------------------------- the gate


def test_06_a_bad_batch_fails_at_the_gate_and_nothing_downstream_runs(
    project: E2EProject, dags: dict[str, Any], state: dict[str, Any], tmp_path: Path
) -> None:
    source = next((project.root / "runtime" / "landing" / "generator").glob("*/2026-01-21"))
    landing = tmp_path / "landing"
    bad = landing / "2026-01-21"
    bad.mkdir(parents=True)
    events = pd.read_parquet(source / "events.parquet")
    events.loc[events.index[:50], "price"] = -1.0  # negative prices
    events.loc[events.index[50:60], "user_id"] = None  # missing user ids
    events.to_parquet(bad / "events.parquet", index=False)
    pd.read_parquet(source / "catalog.parquet").to_parquet(bad / "catalog.parquet", index=False)
    md5_before, events_before = data_md5(project), asset_events(ASSET)

    with project_environment(project):
        run = run_dag(dags["recops_ingest"], BAD_DAY, {"source": "landing", "landing": str(landing)})
    states = task_states(run)
    assert run.state == "failed", states
    assert states == {"fetch": ["success"], "validate": ["failed"], "publish": ["upstream_failed"],
                      "announce": ["upstream_failed"], "online_seed": ["upstream_failed"]}  # fmt: skip
    assert task_instances(run, "validate")[0]["try_number"] == 1, "a failed gate must not retry"

    quarantine = project.root / "runtime" / "quarantine" / "2026-01-21"
    assert (quarantine / "data_docs" / "index.html").is_file()
    verdict = json.loads((quarantine / "validation_result.json").read_text(encoding="utf-8"))
    assert verdict["report"]["success"] is False
    assert {f["column"] for f in verdict["report"]["failures"]} >= {"price", "user_id"}
    assert not (project.root / "data" / "2026-01-21").exists()
    assert data_md5(project) == md5_before and asset_events(ASSET) == events_before
    assert champion(project) == state["champion"]


# ------------------------------------------------------------------------------------- monitor


def test_07_monitor_finds_drift_but_without_new_data_requests_nothing(
    project: E2EProject, dags: dict[str, Any], state: dict[str, Any]
) -> None:
    with project_environment(project):
        run = run_dag(dags["recops_monitor"], datetime(2026, 1, 22, tzinfo=UTC))
    states = task_states(run)
    assert run.state == "success", states
    assert states == {"measure": ["success"], "request_retrain": ["skipped"]}
    measured = xcom(run, "measure")
    assert measured["info"]["status"] == "drift_no_new_data", measured["info"]
    assert measured["info"]["champion_version"] == state["champion"]
    assert any(r.startswith("item_popularity psi") for r in measured["info"]["reasons"])
    signals = ("category_mix", "item_popularity", "events_per_user", "new_item_rate")
    assert set(measured["metrics"]) == {f"drift.{signal}" for signal in signals}
    report = project.root / measured["outputs"]["report"]
    assert report.is_file() and "data:image/png;base64," in report.read_text(encoding="utf-8")
    tags = project.mlflow_client().get_run(measured["run_ids"]["monitor"]).data.tags
    assert tags["recops.monitor.status"] == "drift_no_new_data" and tags["orchestrator_run_id"] == run.run_id
    assert asset_events(RETRAIN) == []


def test_08_new_data_with_drift_requests_retraining_through_the_asset(
    project: E2EProject, dags: dict[str, Any], state: dict[str, Any]
) -> None:
    with project_environment(project):
        ingest = run_dag(dags["recops_ingest"], BAD_DAY)  # day 21 again, now from the generator: valid
        assert ingest.state == "success", task_states(ingest)
        run = run_dag(dags["recops_monitor"], datetime(2026, 1, 23, tzinfo=UTC))
    states = task_states(run)
    assert run.state == "success", states
    assert states == {"measure": ["success"], "request_retrain": ["success"]}
    measured = xcom(run, "measure")
    assert measured["info"]["status"] == "drift" and measured["info"]["retrain"] is True
    (event,) = asset_events(RETRAIN)
    assert (event["dag_id"], event["run_id"], event["task_id"]) == (
        "recops_monitor",
        run.run_id,
        "request_retrain",
    )
    assert event["extra"]["reasons"] == measured["info"]["reasons"]
    assert event["extra"]["monitor_run_id"] == measured["run_ids"]["monitor"]
    assert event["extra"]["champion_version"] == state["champion"]
    assert event["extra"]["data_md5"] == data_md5(project) != measured["info"]["champion_data_md5"]


# ------------------------------------------------------------------------------------- feedback


def test_09_feedback_is_exported_gated_published_and_announced(
    project: E2EProject, dags: dict[str, Any], state: dict[str, Any]
) -> None:
    """The scoring service's clicks (stored in the metadata database) become a published batch."""
    with project_environment(project):
        from core.feedback import create_feedback_tables, feedback_engine, record_feedback
        from core.settings import get_settings

        day = pd.read_parquet(project.root / "data" / "2026-01-21" / "events.parquet")
        engine = feedback_engine(get_settings())
        create_feedback_tables(engine)
        at = datetime(2026, 1, 22, 9, tzinfo=UTC)
        record_feedback(
            engine,
            [{"recommendation_id": "rec-1", "user_id": str(day["user_id"].iloc[n]),
              "item_id": str(day["item_id"].iloc[n]), "kind": kind, "model_version": state["champion"],
              "variant": "champion", "ts": at + timedelta(seconds=n)}
             for n in range(3) for kind in ("impression", "click")],
        )  # fmt: skip
        before = len(asset_events(ASSET))
        run = run_dag(dags["recops_feedback"], datetime(2026, 1, 23, tzinfo=UTC))
        states = task_states(run)
        assert run.state == "success", states
        assert states == {
            t: ["success"] for t in ("export", "validate", "publish", "announce", "online_seed")
        }
        exported = xcom(run, "export")
        assert exported["info"]["batch_id"] == "2026-01-22T235000Z-feedback"
        assert exported["metrics"]["exported"] == 3.0
        assert (project.root / "data" / exported["info"]["batch_id"] / "events.parquet").is_file()
        (event,) = asset_events(ASSET)[before:]
        assert event["extra"]["source"] == "feedback" and event["extra"]["data_md5"] == data_md5(project)

        again = run_dag(dags["recops_feedback"], datetime(2026, 1, 23, tzinfo=UTC))  # cleared and re-run
        states = task_states(again)
        assert again.state == "success", states
        assert xcom(again, "export")["info"]["reused"] is True
        assert xcom(again, "publish")["info"]["status"] == "unchanged" and states["announce"] == ["skipped"]
        assert len(asset_events(ASSET)) == before + 1
