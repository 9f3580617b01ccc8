"""Promotion flow (score, decide, apply, log), alias moves, rollback and race safety on the embedded (SQLite)
MLflow registry. The pure gate is tested in tests/registry/test_gate.py."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core.settings import Settings
from models import create_model
from pipelines.evaluate import build_task
from pipelines.gate_scoring import PackageInFeatureSpace, gate_evaluate_params, score_model
from pipelines.params import Params
from pipelines.promote import promote, run_promote
from registry.aliases import CHALLENGER, CHAMPION, PREVIOUS, RegistryError, alias_version
from registry.audit import audit_log
from registry.client import mlflow_client
from registry.rollback import rollback
from tests.registry_helpers import (
    fit_package,
    log_package,
    race_two_promotions,
    register_run,
    write_features_for,
)

# ------------------------------------------------------------------------------------------ item spaces


def test_package_in_feature_space_translates_through_item_ids(recops_settings: Settings) -> None:
    fs = write_features_for(recops_settings)
    package = fit_package(fs, "popularity")
    # an older package that knows only the first 30 items, in reverse index order
    from models.package import ModelPackage

    order = np.arange(29, -1, -1)
    pop = create_model("popularity", {})
    pop.n_items, pop.item_popularity = 30, package.model.item_popularity[order].copy()
    old = ModelPackage(model=pop, items=package.items.iloc[order].reset_index(drop=True))
    view = PackageInFeatureSpace(old, list(fs.item_ids))
    ids, _ = view.recommend([np.array([35, 2], dtype=np.int64)], k=40)
    ranked = ids[0][ids[0] >= 0]
    assert set(ranked) <= set(range(30)) and len(ranked) == 30  # unknown items are never recommended
    popularity = package.model.item_popularity[ranked]
    assert np.all(np.diff(popularity) <= 0)  # the old model's ranking, expressed in current indices
    evaluate = gate_evaluate_params(Params())
    task = build_task(fs, "temporal", evaluate.exclude_seen)
    old_scores = score_model(view, fs, task, role="champion", label="old", version=1, evaluate=evaluate)
    assert 0 <= old_scores.primary <= 1 and 0 < old_scores.coverage <= 30 / 40
    assert len(old_scores.per_user) == task.n_users
    # the same package in its own (identical) item space scores like the bare model
    same = PackageInFeatureSpace(package, list(fs.item_ids))
    bare = score_model(
        package.model, fs, task, role="champion", label="bare", version=None, evaluate=evaluate
    )
    wrapped = score_model(same, fs, task, role="champion", label="wrapped", version=None, evaluate=evaluate)
    assert np.array_equal(bare.per_user, wrapped.per_user) and bare.coverage == wrapped.coverage


# ------------------------------------------------------------------------------------------ flows


@pytest.fixture
def seeded(recops_settings: Settings, tmp_path: Path) -> dict[str, Any]:
    """Features + three logged runs: plain popularity (v1 champion), item-kNN (good), scrambled (bad)."""
    fs = write_features_for(recops_settings)
    runs = {kind: log_package(recops_settings, fit_package(fs, kind), tmp_path, metrics={"ndcg_at_10": 0.1})
            for kind in ("popularity", "good", "bad")}  # fmt: skip
    return {"fs": fs, "runs": runs, "settings": recops_settings}


def test_first_model_must_beat_the_baseline(seeded: dict[str, Any]) -> None:
    settings, runs = seeded["settings"], seeded["runs"]
    bad = register_run(settings, runs["bad"], CHALLENGER)
    blocked = promote(settings=settings, params=Params(), actor="ci")
    assert blocked.outcome == "blocked" and blocked.compared_with == "baseline"
    assert blocked.champion_after is None and blocked.challenger_version == bad
    client = mlflow_client(settings)
    assert alias_version(client, settings.model_name, CHAMPION) is None
    good = register_run(settings, runs["good"], CHALLENGER)
    passed = promote(settings=settings, params=Params(), actor="ci")
    assert passed.outcome == "promoted", passed.reasons
    assert [r["role"] for r in passed.table] == ["challenger", "baseline"]
    assert alias_version(client, settings.model_name, CHAMPION) == good
    assert alias_version(client, settings.model_name, PREVIOUS) is None
    # decision logged as an MLflow run in <experiment>-promotions, and tagged on the version
    run = client.get_run(passed.promotion_run_id)
    assert run.data.tags["decision"] == "promoted"
    assert run.data.metrics["check.primary_improvement"] == 1.0
    exp = client.get_experiment(run.info.experiment_id)
    assert exp.name == settings.mlflow_experiment + "-promotions"
    artifacts = {a.path for a in client.list_artifacts(passed.promotion_run_id)}
    assert {"comparison.json", "comparison.md"} <= artifacts
    assert (
        client.get_model_version(settings.model_name, str(good)).tags["promotion_run_id"]
        == passed.promotion_run_id
    )
    assert client.get_model_version(settings.model_name, str(bad)).tags["promotion_decision"] == "blocked"
    # promoting again is a no-op
    assert promote(settings=settings, params=Params(), actor="ci").outcome == "already_champion"


def test_promote_block_rollback_and_audit(seeded: dict[str, Any]) -> None:
    settings, runs = seeded["settings"], seeded["runs"]
    client = mlflow_client(settings)
    v1 = register_run(settings, runs["popularity"], CHAMPION)
    t_v1 = datetime.now(UTC)
    v2 = register_run(settings, runs["good"], CHALLENGER)
    better = promote(settings=settings, params=Params(), actor="lead")
    assert better.outcome == "promoted", better.reasons
    assert (better.champion_before, better.champion_after, better.compared_with) == (v1, v2, "champion")
    assert [r["role"] for r in better.table] == ["challenger", "champion", "baseline"]
    assert better.table[0]["ndcg_at_10"] > better.table[1]["ndcg_at_10"]
    assert alias_version(client, settings.model_name, PREVIOUS) == v1
    t_v2 = datetime.now(UTC)

    v3 = register_run(settings, runs["bad"], CHALLENGER)
    worse = promote(settings=settings, params=Params(), actor="lead")
    assert worse.outcome == "blocked" and "primary_improvement" in {
        c.name for c in worse.checks if not c.passed
    }
    assert alias_version(client, settings.model_name, CHAMPION) == v2
    assert alias_version(client, settings.model_name, PREVIOUS) == v1

    back = rollback(settings=settings, actor="oncall", reason="clicks fell")
    assert (back.from_version, back.to_version) == (v2, v1)
    assert alias_version(client, settings.model_name, CHAMPION) == v1
    assert alias_version(client, settings.model_name, PREVIOUS) == v2
    t_back = datetime.now(UTC)
    forward = rollback(to_version=v2, settings=settings, actor="oncall", reason="false alarm")
    assert forward.to_version == v2 and alias_version(client, settings.model_name, PREVIOUS) == v1
    with pytest.raises(RegistryError, match="does not exist"):
        rollback(to_version=99, settings=settings, actor="oncall")
    with pytest.raises(RegistryError, match="already the champion"):
        rollback(to_version=v2, settings=settings, actor="oncall")

    log = audit_log(settings)
    assert log.champion_at(t_v1, settings.model_name) is None  # v1 was seeded outside the audited tooling
    assert log.champion_at(t_v2, settings.model_name) == v2
    assert log.champion_at(t_back, settings.model_name) == v1
    assert log.champion_at(datetime.now(UTC), settings.model_name) == v2
    rows = [(r.alias, r.from_version, r.to_version, r.action) for r in log.history(settings.model_name)]
    assert rows == [
        ("previous", None, v1, "promote"),
        ("champion", v1, v2, "promote"),
        ("champion", v2, v3, "blocked"),
        ("previous", v1, v2, "rollback"),
        ("champion", v2, v1, "rollback"),
        ("previous", v2, v1, "rollback"),
        ("champion", v1, v2, "rollback"),
    ]
    assert all(r.actor in ("lead", "oncall") for r in log.history())


def test_two_racing_promotions_have_exactly_one_winner(
    seeded: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, runs = seeded["settings"], seeded["runs"]
    v1 = register_run(settings, runs["popularity"], CHAMPION)
    v2 = register_run(settings, runs["good"], CHALLENGER)
    outcomes, errors = race_two_promotions(settings, monkeypatch)
    assert not errors, errors
    assert sorted(outcomes) == ["lost_race", "promoted"]
    client = mlflow_client(settings)
    assert alias_version(client, settings.model_name, CHAMPION) == v2
    assert alias_version(client, settings.model_name, PREVIOUS) == v1
    rows = audit_log(settings).history(settings.model_name)
    assert [r.action for r in rows].count("promote") == 2  # previous + champion, once
    lost = [r for r in rows if r.action == "blocked"]
    assert len(lost) == 1 and "while the gate ran" in lost[0].reason


def test_unloadable_challenger_is_blocked(seeded: dict[str, Any]) -> None:
    settings, runs = seeded["settings"], seeded["runs"]
    client = mlflow_client(settings)
    v1 = register_run(settings, runs["good"], CHAMPION)
    v2 = register_run(settings, runs["popularity"], CHALLENGER)
    root = Path(client.get_model_version_download_uri(settings.model_name, str(v2)).removeprefix("file://"))
    (root / "artifacts" / "package" / "package.json").write_text("{not json")
    decision = promote(settings=settings, params=Params(), actor="ci")
    assert decision.outcome == "blocked" and "does not load" in decision.reasons[0]
    assert alias_version(client, settings.model_name, CHAMPION) == v1
    with pytest.raises(RegistryError, match="never champion"):
        rollback(to_version=v2, settings=settings, actor="oncall")
    with pytest.raises(RegistryError, match="does not load"):  # forcing does not skip the loader
        rollback(to_version=v2, settings=settings, actor="oncall", force=True, reason="test")
    with pytest.raises(RegistryError, match="no 'previous'"):
        rollback(settings=settings, actor="oncall")


def test_unloadable_champion_blocks_instead_of_comparing_with_the_baseline(seeded: dict[str, Any]) -> None:
    settings, runs = seeded["settings"], seeded["runs"]
    client = mlflow_client(settings)
    v1 = register_run(settings, runs["popularity"], CHAMPION)
    v2 = register_run(settings, runs["good"], CHALLENGER)  # would beat both champion and baseline
    root = Path(client.get_model_version_download_uri(settings.model_name, str(v1)).removeprefix("file://"))
    (root / "artifacts" / "package" / "package.json").write_text("{not json")
    decision = promote(settings=settings, params=Params(), actor="ci")
    assert decision.outcome == "blocked" and decision.compared_with == "champion"
    assert (decision.challenger_version, decision.champion_before, decision.champion_after) == (v2, v1, v1)
    assert {c.name for c in decision.checks if not c.passed} == {"champion_loads"}
    assert "primary_improvement" not in {c.name for c in decision.checks}  # no baseline stand-in
    assert any(f"champion v{v1}" in r and "rollback" in r for r in decision.reasons), decision.reasons
    assert alias_version(client, settings.model_name, CHAMPION) == v1
    last = audit_log(settings).history(settings.model_name)[-1]
    assert (last.action, last.from_version, last.to_version) == ("blocked", v1, v2)


def test_a_challenger_trained_on_the_test_period_is_refused(seeded: dict[str, Any], tmp_path: Path) -> None:
    from datetime import timedelta

    from models.package import ModelPackage

    settings, fs = seeded["settings"], seeded["fs"]
    good = fit_package(fs, "good")
    test_start = datetime.fromtimestamp(fs.split_info.test_start, UTC)
    assert good.training_cutoff == test_start  # the refit on train + valid stops at the test start
    leaky = ModelPackage(model=good.model, items=good.items, training_cutoff=test_start + timedelta(days=2))
    version = register_run(
        settings, log_package(settings, leaky, tmp_path, metrics={"ndcg_at_10": 0.9}), CHALLENGER
    )
    decision = promote(settings=settings, params=Params(), actor="ci")
    assert decision.outcome == "blocked" and decision.challenger_version == version
    assert {c.name for c in decision.checks if not c.passed} == {"training_cutoff"}
    assert any("has seen the test period" in r for r in decision.reasons)
    assert alias_version(mlflow_client(settings), settings.model_name, CHAMPION) is None


def test_too_few_test_users_refuse_the_promotion(seeded: dict[str, Any]) -> None:
    from pipelines.steps import StepContext
    from registry.gate import PromoteParams

    settings, runs, fs = seeded["settings"], seeded["runs"], seeded["fs"]
    register_run(settings, runs["good"], CHALLENGER)
    n_test = len(fs.test_users())
    params = Params(promote=PromoteParams(min_test_users=n_test + 1))
    blocked = run_promote(StepContext(settings, params, actor="airflow"))
    assert blocked.step == "promote" and blocked.info["outcome"] == "blocked"
    assert {c["name"] for c in blocked.info["checks"] if not c["passed"]} == {"enough_test_users"}
    assert f"scored {n_test} test user(s)" in blocked.info["reasons"][0]
    assert json.loads(json.dumps(blocked.to_dict(), allow_nan=False))["info"]["champion_after"] is None
    # the same challenger with a threshold the data meets is promoted
    ok = run_promote(StepContext(settings, Params(promote=PromoteParams(min_test_users=n_test)), actor="ci"))
    assert ok.info["outcome"] == "promoted", ok.info["reasons"]
    assert ok.run_ids["promotion"] and ok.outputs["champion"] == f"models:/{settings.model_name}@champion"


def test_rollback_refuses_a_version_that_was_never_champion_unless_forced_with_a_reason(
    seeded: dict[str, Any],
) -> None:
    from tests.registry_helpers import run_recops

    settings, runs = seeded["settings"], seeded["runs"]
    client = mlflow_client(settings)
    v1 = register_run(settings, runs["popularity"], CHAMPION)  # deployed before the audited tooling
    v2 = register_run(settings, runs["good"], CHALLENGER)
    assert promote(settings=settings, params=Params(), actor="lead").outcome == "promoted"
    v3 = register_run(settings, runs["bad"], CHALLENGER)
    assert promote(settings=settings, params=Params(), actor="lead").outcome == "blocked"

    # the real command: a one-line error, exit 2, nothing moved
    refused = run_recops("rollback", "--to", str(v3), "--reason", "try it")
    assert refused.returncode == 2, (refused.stdout, refused.stderr)
    assert refused.stderr.startswith("error: refusing to roll back") and "never champion" in refused.stderr
    assert "Traceback" not in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    assert alias_version(client, settings.model_name, CHAMPION) == v2
    with pytest.raises(RegistryError, match="--force needs --reason"):
        rollback(to_version=v3, settings=settings, actor="oncall", force=True)

    forced = rollback(to_version=v3, settings=settings, actor="oncall", force=True, reason="INC-9: need v3")
    assert forced.forced and alias_version(client, settings.model_name, CHAMPION) == v3
    last = audit_log(settings).history(settings.model_name)[-1]
    assert (last.alias, last.to_version, last.action, last.actor) == (CHAMPION, v3, "rollback", "oncall")
    assert last.reason.startswith("FORCED") and "INC-9: need v3" in last.reason
    # v1 was champion before the audit trail existed; the move that replaced it shows it: no force needed
    back = rollback(to_version=v1, settings=settings, actor="oncall", reason="back to the old one")
    assert not back.forced and alias_version(client, settings.model_name, CHAMPION) == v1
