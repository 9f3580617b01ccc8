"""The whole workflow slice through the real ``recops`` and ``dvc`` commands, in a throw-away project copy.

generate -> a broken batch is quarantined -> publish (DVC-tracked, pushed) -> ``dvc repro`` -> no-op repro ->
one family's parameter changes (only it and evaluate rerun) -> MLflow runs -> register (idempotent) ->
promote -> audit -> recommend -> rollback without a previous champion.

The tests are ordered steps sharing one project (see ``conftest.py``); a failed step skips the rest.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.e2e.conftest import E2EProject

pytestmark = pytest.mark.e2e

DAYS = 21
PROJECT_PARAMS = {
    "generate.days": DAYS,
    "generate.users": 600,
    "generate.items": 300,
    "features.valid_days": 3,
    "features.test_days": 4,
}
LANDING = "runtime/landing/t"
BAD_LANDING = "runtime/landing/t-bad"
MODEL_NAME = "recops-recommender"
NEW_ALS_FACTORS = 16


def landed_batches(project: E2EProject) -> list[Path]:
    return sorted(p for p in (project.root / LANDING).iterdir() if p.is_dir())


def families(project: E2EProject) -> list[str]:
    return list(project.params()["train"]["families"])


def table_rows(text: str) -> list[list[str]]:
    """Body rows of a rich table printed with box characters: the cells of each ``│ ... │`` line."""
    return [[cell.strip() for cell in line.strip().strip("│").split("│")] for line in text.splitlines()
            if line.strip().startswith("│")]  # fmt: skip


# ------------------------------------------------------------------------------------- data


def test_01_generate_lands_daily_batches(project: E2EProject) -> None:
    result = project.run("recops", "data", "generate", "--out", LANDING)
    batches = landed_batches(project)
    assert len(batches) == DAYS, result.describe()
    for batch in batches:
        assert (batch / "events.parquet").is_file() and (batch / "catalog.parquet").is_file(), batch
    assert re.search(rf"generated {DAYS} day", result.stdout), result.describe()


def test_02_broken_batch_is_quarantined(project: E2EProject) -> None:
    source = landed_batches(project)[-1]
    bad = project.root / BAD_LANDING / source.name
    bad.mkdir(parents=True)
    events = pd.read_parquet(source / "events.parquet")
    events.loc[events.index[:50], "price"] = -1.0  # negative prices
    events.loc[events.index[50:60], "user_id"] = None  # missing user ids
    events.to_parquet(bad / "events.parquet", index=False)
    shutil.copy2(source / "catalog.parquet", bad / "catalog.parquet")

    result = project.run("recops", "validate", str(bad.relative_to(project.root)), expect=1)
    fails = [line for line in result.stdout.splitlines() if line.startswith("FAIL")]
    assert any("events.price" in line for line in fails), result.describe()
    assert any("events.user_id" in line for line in fails), result.describe()
    assert "Traceback" not in result.output, result.describe()

    quarantine = project.root / "runtime" / "quarantine" / source.name
    assert (quarantine / "batch" / "events.parquet").is_file(), result.describe()
    assert (quarantine / "batch" / "catalog.parquet").is_file(), result.describe()
    unexpected = pd.read_parquet(quarantine / "unexpected_events.parquet")
    assert len(unexpected) == 60, f"unexpected rows: {len(unexpected)} (50 negative prices + 10 null ids)"
    verdict = json.loads((quarantine / "validation_result.json").read_text(encoding="utf-8"))
    assert verdict["report"]["success"] is False
    assert {f["column"] for f in verdict["report"]["failures"]} >= {"price", "user_id"}
    html = list(quarantine.rglob("*.html"))
    assert html and all(p.stat().st_size > 0 for p in html), f"no Data Docs HTML under {quarantine}"
    assert not (project.root / "data").exists(), "a failed validation must not publish anything"


def test_03_publish_tracks_and_pushes_data(project: E2EProject) -> None:
    batches = [str(b.relative_to(project.root)) for b in landed_batches(project)]
    result = project.run("recops", "publish", *batches)
    published = sorted(p.name for p in (project.root / "data").iterdir() if p.is_dir())
    assert published == [Path(b).name for b in batches], result.describe()
    assert "pushed to DVC remote local" in result.stdout, result.describe()

    doc = yaml.safe_load((project.root / "data.dvc").read_text(encoding="utf-8"))
    md5 = doc["outs"][0]["md5"]
    assert re.fullmatch(r"[0-9a-f]{32}\.dir", md5), doc
    assert doc["outs"][0]["nfiles"] == 2 * DAYS, doc
    in_sync = project.dvc_json("status", "-c", "-r", "local", "data.dvc")
    assert in_sync == {}, f"cache and remote 'local' differ: {in_sync}"


# ------------------------------------------------------------------------------------- pipeline


def test_04_repro_runs_the_pipeline(project: E2EProject) -> None:
    result = project.run("dvc", "repro")
    for stage in ["features", *(f"train@{f}" for f in families(project)), "evaluate"]:
        assert f"Running stage '{stage}'" in result.stdout, f"{stage} did not run\n{result.describe()}"
    assert (project.root / "dvc.lock").is_file()
    metrics = project.metrics()
    assert set(metrics) == set(families(project)), metrics.keys()
    for family, values in metrics.items():
        assert 0.0 <= values["ndcg_at_10"] <= 1.0, (family, values["ndcg_at_10"])
    assert max(v["ndcg_at_10"] for v in metrics.values()) > 0.0, "every family scored zero"

    shown = project.dvc_json("metrics", "show")
    assert shown, "dvc metrics show --json printed nothing"
    as_text = json.dumps(shown)
    assert "artifacts/metrics/metrics.json" in as_text and "ndcg_at_10" in as_text, as_text[:2000]
    plots = project.dvc_json("plots", "show")
    assert {"artifacts/plots/ndcg_at_k.json", "artifacts/plots/comparison.json"} <= set(plots["data"]), plots
    project.run("dvc", "plots", "show")


def test_05_second_repro_is_a_noop(project: E2EProject) -> None:
    # How long a no-op takes is measured by bench/bench_pipeline.py, not asserted here.
    result = project.run("dvc", "repro")
    assert "Running stage" not in result.stdout, result.describe()
    assert "Data and pipelines are up to date" in result.stdout, result.describe()


def test_06_one_family_param_reruns_only_that_family(project: E2EProject) -> None:
    before = project.run_record("als")
    untouched = {f: project.run_record(f) for f in families(project) if f != "als"}
    project.set_params({"train.als.factors": NEW_ALS_FACTORS})

    # `dvc status` judges each stage on its own deps: evaluate shows up only once train@als's output changed
    status = project.dvc_json("status")
    assert set(status) == {"train@als"}, status
    assert status["train@als"] == [{"changed deps": {"params.yaml": {"train.als": "modified"}}}], status

    result = project.run("dvc", "repro")
    ran = set(re.findall(r"Running stage '([^']+)'", result.stdout))
    assert ran == {"train@als", "evaluate"}, f"ran {sorted(ran)}\n{result.describe()}"
    assert project.run_record("als")["run_id"] != before["run_id"]
    assert {f: project.run_record(f) for f in untouched} == untouched
    lock = yaml_load(project.root / "dvc.lock")
    assert lock["stages"]["train@als"]["params"]["params.yaml"]["train.als"]["factors"] == NEW_ALS_FACTORS
    assert project.dvc_json("status") == {}


def yaml_load(path: Path) -> dict[str, object]:
    loaded: dict[str, object] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return loaded


# ------------------------------------------------------------------------------------- MLflow


def test_07_mlflow_parent_and_child_runs(project: E2EProject) -> None:
    client = project.mlflow_client()
    experiment = client.get_experiment_by_name("recops")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("recops.kind") == "pipeline"]
    keys = [r.data.tags["recops.pipeline_key"] for r in parents]
    assert parents and len(keys) == len(set(keys)), f"pipeline keys with several parents: {keys}"

    parent_id = project.run_record("als")["parent_run_id"]
    assert parent_id in {p.info.run_id for p in parents}
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent_id]
    current = [r for r in children if r.data.tags.get("recops.superseded") != "true"]
    assert sorted(r.data.tags["family"] for r in current) == sorted(families(project))
    superseded = [r for r in children if r.data.tags.get("recops.superseded") == "true"]
    assert [r.data.tags["family"] for r in superseded] == ["als"], "the first als run is superseded"

    iterations = project.params()["train"]["als"]["iterations"]
    for run in current:
        family = run.data.tags["family"]
        record = project.run_record(family)
        assert run.info.run_id == record["run_id"], family
        assert run.info.status == "FINISHED", family
        ndcg = run.data.metrics.get("ndcg_at_10")
        assert ndcg == pytest.approx(project.metrics()[family]["ndcg_at_10"]), (family, ndcg)
        model = client.get_logged_model(record["model_id"])
        assert model.source_run_id == run.info.run_id and str(model.status).endswith("READY"), model
        files = {f.path for f in client.list_logged_model_artifacts(model.model_id)}
        assert "MLmodel" in files, files
        if family == "als":
            assert run.data.params["hp.factors"] == str(NEW_ALS_FACTORS)
            loss = client.get_metric_history(run.info.run_id, "train_loss")
            assert sorted(m.step for m in loss) == list(range(iterations)), [m.step for m in loss]
    plots = [a.path for a in client.list_artifacts(parent_id, "plots")]
    assert plots and all(p.endswith(".png") for p in plots), plots


# ------------------------------------------------------------------------------------- registry


def alias_version(project: E2EProject, alias: str) -> str:
    """The version an alias points to, resolved with ``get_model_version_by_alias``."""
    return str(project.mlflow_client().get_model_version_by_alias(MODEL_NAME, alias).version)


def test_08_register_is_idempotent(project: E2EProject) -> None:
    first = project.run("recops", "register")
    second = project.run("recops", "register")
    assert "registered new" in first.stdout and f"{MODEL_NAME} v1" in first.stdout, first.describe()
    assert "reused existing" in second.stdout and f"{MODEL_NAME} v1" in second.stdout, second.describe()
    client = project.mlflow_client()
    versions = client.search_model_versions(f"name = '{MODEL_NAME}'")
    assert [str(v.version) for v in versions] == ["1"], [v.version for v in versions]
    challenger = client.get_model_version_by_alias(MODEL_NAME, "challenger")
    assert str(challenger.version) == "1"
    metrics = project.metrics()
    best = max(metrics, key=lambda f: metrics[f]["valid_ndcg_at_10"])  # selected on validation
    assert challenger.run_id == project.run_record(best)["run_id"], f"expected the best family {best}"


def test_09_promote_and_audit(project: E2EProject) -> None:
    result = project.run("recops", "promote")
    assert "promoted: champion none -> v1" in result.stdout, result.describe()
    assert alias_version(project, "champion") == "1"

    audit = project.run("recops", "audit")
    moves = [row for row in table_rows(audit.stdout) if len(row) >= 6]
    assert any(r[2] == "register" and r[3] == "challenger" and r[5] == "v1" for r in moves), audit.describe()
    assert any(r[2] == "promote" and r[3] == "champion" and r[5] == "v1" for r in moves), audit.describe()

    now = datetime.now(UTC).isoformat()
    at_now = project.run("recops", "audit", "--at", now)
    assert re.search(r"champion at \S+: v1\b", at_now.stdout), at_now.describe()
    before = project.run("recops", "audit", "--at", "2000-01-01T00:00:00Z")
    assert "no champion" in before.stdout, before.describe()


def test_10_recommend_for_the_most_active_shopper(project: E2EProject) -> None:
    files = sorted((project.root / "data").glob("*/events.parquet"))
    events = pd.concat(pd.read_parquet(p, columns=["user_id"]) for p in files)
    user = str(events["user_id"].value_counts().index[0])
    result = project.run("recops", "recommend", "--user", user, "--pseudonym", "--k", "5")
    assert "v1" in result.stdout and user in result.stdout, result.describe()
    header = next((line for line in result.stdout.splitlines() if "category" in line), "")
    assert all(name in header for name in ("item_id", "category", "brand", "price")), result.describe()
    rows = table_rows(result.stdout)
    assert [r[0] for r in rows] == ["1", "2", "3", "4", "5"], result.describe()
    for rank, item_id, category, brand, price, _in_stock, score in rows:
        assert item_id and category and brand, (rank, item_id, category, brand)
        assert float(price) > 0.0 and math.isfinite(float(score)), (rank, price, score)
    assert "popularity fallback" not in result.stdout, "the most active shopper must get personalised items"


def test_11_rollback_without_previous_is_a_clear_error(project: E2EProject) -> None:
    result = project.run("recops", "rollback", expect=2)
    assert "error:" in result.stderr and "previous" in result.stderr, result.describe()
    assert "Traceback" not in result.output, result.describe()
    assert alias_version(project, "champion") == "1"
