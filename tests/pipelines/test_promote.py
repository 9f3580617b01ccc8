"""Promotion gate, alias moves, rollback and race safety on the embedded (SQLite) MLflow registry."""

from __future__ import annotations

import math
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
from pipelines.promote import promote
from registry.aliases import CHALLENGER, CHAMPION, PREVIOUS, RegistryError, alias_version
from registry.audit import audit_log
from registry.client import mlflow_client
from registry.gate import ModelScores, PromoteParams, gate_checks, relative_change
from registry.rollback import rollback
from tests.registry_helpers import (
    fit_package,
    log_package,
    race_two_promotions,
    register_run,
    write_features_for,
)

GATE = PromoteParams()


def _scores(
    role: str, primary: float, coverage: float = 0.5, cold: float = 0.2, latency: float = 1.0
) -> ModelScores:
    return ModelScores(
        role=role,  # type: ignore[arg-type]
        label=role,
        version=None,
        primary=primary,
        coverage=coverage,
        cold=cold,
        warm=primary,
        per_user=np.full(10, primary),
        latency_p50_ms=latency,
    )


def _failed(checks: list[Any]) -> set[str]:
    return {c.name for c in checks if not c.passed}


# ------------------------------------------------------------------------------------------ pure gate


def test_gate_passes_a_clear_improvement() -> None:
    checks = gate_checks(_scores("challenger", 0.33), _scores("champion", 0.30), GATE, (0.03, 0.01, 0.05))
    assert _failed(checks) == set()


@pytest.mark.parametrize(
    ("challenger", "diff", "failed"),
    [
        (_scores("challenger", 0.303), (0.003, 0.001, 0.005), {"primary_improvement"}),  # +1% < +2%
        (_scores("challenger", 0.33), (0.03, -0.01, 0.07), {"ci_above_zero"}),
        (_scores("challenger", 0.33, coverage=0.40), (0.03, 0.01, 0.05), {"coverage_guardrail"}),  # -20%
        (_scores("challenger", 0.33, cold=0.15), (0.03, 0.01, 0.05), {"cold_user_guardrail"}),  # -25%
        (_scores("challenger", 0.33, latency=80.0), (0.03, 0.01, 0.05), {"latency_budget"}),
        (_scores("challenger", 0.25), (-0.05, -0.07, -0.03), {"primary_improvement", "ci_above_zero"}),
    ],
)
def test_gate_blocks_each_failure(
    challenger: ModelScores, diff: tuple[float, float, float], failed: set[str]
) -> None:
    assert _failed(gate_checks(challenger, _scores("champion", 0.30), GATE, diff)) == failed


def test_gate_edges() -> None:
    # coverage drop of exactly 10% and cold drop of exactly 10% are allowed
    ok = gate_checks(
        _scores("challenger", 0.33, coverage=0.45, cold=0.18),
        _scores("champion", 0.30),
        GATE,
        (0.03, 0.01, 0.05),
    )
    assert _failed(ok) == set()
    # without CI agreement the interval is not checked; no cold users -> the cold guardrail is moot
    relaxed = PromoteParams(require_ci_agreement=False)
    checks = gate_checks(
        _scores("challenger", 0.33, cold=math.nan), _scores("champion", 0.30), relaxed, (0.03, -1, 1)
    )
    assert _failed(checks) == set() and "ci_above_zero" not in {c.name for c in checks}
    assert relative_change(0.1, 0.0) == math.inf and relative_change(0.0, 0.0) == 0.0
    # an incumbent scoring 0 is beaten by anything positive, never by another 0
    assert _failed(gate_checks(_scores("challenger", 0.0), _scores("champion", 0.0), relaxed, (0, 0, 0))) == {
        "primary_improvement"
    }


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
    with pytest.raises(RegistryError, match="does not load"):
        rollback(to_version=v2, settings=settings, actor="oncall")
    with pytest.raises(RegistryError, match="no 'previous'"):
        rollback(settings=settings, actor="oncall")
