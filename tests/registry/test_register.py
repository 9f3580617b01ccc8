"""register_best: best child run ON VALIDATION -> one model version per lineage, alias challenger, model card,
audit; the step wrapper run_register."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import RecopsError
from core.settings import Settings
from pipelines.params import Params
from registry.aliases import CHALLENGER, RegistryError, alias_version, check_name
from registry.audit import audit_log
from registry.client import mlflow_client
from registry.loader import load_alias
from registry.register import lineage_key, register_best
from tests.registry_helpers import fit_package, log_package, write_features_for

METRICS_GOOD = {
    "ndcg_at_10": 0.40, "ndcg_at_10_ci_low": 0.35, "ndcg_at_10_ci_high": 0.45, "recall_at_10": 0.5,
    "recall_trunc_at_10": 0.6, "coverage_at_10": 0.8, "ndcg_at_10_cold": 0.1, "ndcg_at_10_warm": 0.45,
    "n_users": 120, "n_users_cold": 20, "n_users_warm": 100,
    "valid_ndcg_at_10": 0.38, "valid_recall_at_10": 0.45, "valid_n_users": 110,
}  # fmt: skip


def test_lineage_key_depends_on_commit_data_and_params_only() -> None:
    key = lineage_key("abc", "d1", "p1")
    assert key == lineage_key("abc", "d1", "p1")
    assert (
        len(
            {
                key,
                lineage_key("abd", "d1", "p1"),
                lineage_key("abc", "d2", "p1"),
                lineage_key("abc", "d1", "p2"),
            }
        )
        == 4
    )


@pytest.mark.parametrize("bad", ["", "a'b", "a\\b", "x`y"])
def test_names_that_break_filter_strings_are_refused(bad: str) -> None:
    with pytest.raises(RegistryError):
        check_name(bad, "model name")


def test_register_best_picks_best_child_is_idempotent_and_audited(
    recops_settings: Settings, tmp_path: Path
) -> None:
    fs = write_features_for(recops_settings)
    good = log_package(recops_settings, fit_package(fs, "good"), tmp_path, metrics=METRICS_GOOD)
    log_package(
        recops_settings, fit_package(fs, "popularity"), tmp_path,
        metrics={"ndcg_at_10": 0.2, "valid_ndcg_at_10": 0.21}, lineage=good.lineage,
        parent_run_id=good.parent_run_id,
    )  # fmt: skip
    params = Params()

    first = register_best(
        None, settings=recops_settings, primary_metric=params.promote.primary_metric, actor="tester"
    )
    assert first.created and first.version == 1 and first.family == "itemknn"
    assert first.run_id == good.run_id and first.previous_challenger is None
    again = register_best(
        good.parent_run_id,
        settings=recops_settings,
        primary_metric=params.promote.primary_metric,
        actor="tester",
    )
    assert not again.created and again.version == first.version and again.lineage_key == first.lineage_key

    client = mlflow_client(recops_settings)
    versions = client.search_model_versions(f"name = '{recops_settings.model_name}'")
    assert [int(v.version) for v in versions] == [1]
    mv = client.get_model_version(recops_settings.model_name, "1")
    for tag in (
        "git_commit",
        "data_md5",
        "dvc_lock_hash",
        "params_hash",
        "pipeline_run_id",
        "family",
        "lineage_key",
    ):
        assert mv.tags[tag], tag
    assert mv.tags["pipeline_run_id"] == good.parent_run_id
    assert mv.tags["lineage_key"] == lineage_key(
        good.lineage["git_commit"], good.lineage["data_md5"], params.digest()
    )
    card = mv.description
    assert card.startswith("# itemknn recommender")
    assert "Selected as the best family on `valid_ndcg_at_10` (0.3800)" in card
    assert "| ndcg_at_10 | 0.4000 | [0.3500, 0.4500] |" in card
    assert "| recall_trunc_at_10 | 0.6000 |" in card and "min(k, relevant items)" in card
    assert "## Validation metrics (selection)" in card and "| valid_recall_at_10 | 0.4500 |" in card
    assert "test users scored: 120 (20 cold, 100 warm)" in card and "validation users scored: 110" in card
    assert "| valid_ndcg_at_10 | 0.3800 | |" not in card  # validation figures stay out of the test table
    assert "| ndcg_at_10_cold | 0.1000 |" in card and "## Limitations" in card
    assert good.lineage["data_md5"] in card

    assert alias_version(client, recops_settings.model_name, CHALLENGER) == 1
    rows = audit_log(recops_settings).history(recops_settings.model_name)
    assert [(r.alias, r.from_version, r.to_version, r.action, r.actor) for r in rows] == [
        ("challenger", None, 1, "register", "tester")
    ]
    # the registered version loads through the scorer's loader
    assert load_alias(CHALLENGER, settings=recops_settings).package.family == "itemknn"

    # a new pipeline run (new lineage) gives a new version and moves challenger, audited
    newer = log_package(
        recops_settings, fit_package(fs, "popularity"), tmp_path,
        metrics={"ndcg_at_10": 0.3, "valid_ndcg_at_10": 0.3},
    )  # fmt: skip
    third = register_best(
        newer.parent_run_id, settings=recops_settings, primary_metric=params.promote.primary_metric
    )
    assert third.created and third.version == 2 and third.previous_challenger == 1
    assert [(r.from_version, r.to_version) for r in audit_log(recops_settings).history()] == [
        (None, 1),
        (1, 2),
    ]


def test_register_without_runs_or_metrics_is_a_clear_error(recops_settings: Settings, tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match=r"does not exist|no pipeline run"):
        register_best(None, settings=recops_settings, primary_metric=Params().promote.primary_metric)
    fs = write_features_for(recops_settings)
    # test metrics alone never select: a run without its validation value is not a candidate
    logged = log_package(recops_settings, fit_package(fs, "good"), tmp_path, metrics={"ndcg_at_10": 0.5})
    with pytest.raises(
        RegistryError, match=r"logged 'valid_ndcg_at_10' \(ndcg_at_10 on the validation split\)"
    ):
        register_best(
            logged.parent_run_id, settings=recops_settings, primary_metric=Params().promote.primary_metric
        )
    with pytest.raises(RegistryError, match="no pipeline run 'nope'"):
        register_best("nope", settings=recops_settings, primary_metric=Params().promote.primary_metric)


def test_a_family_that_wins_on_test_but_loses_on_validation_is_not_registered(
    recops_settings: Settings, tmp_path: Path
) -> None:
    fs = write_features_for(recops_settings)
    # itemknn: best on test, worse on validation; popularity: the reverse
    test_winner = log_package(
        recops_settings, fit_package(fs, "good"), tmp_path,
        metrics={"ndcg_at_10": 0.50, "valid_ndcg_at_10": 0.20},
    )  # fmt: skip
    valid_winner = log_package(
        recops_settings, fit_package(fs, "popularity"), tmp_path,
        metrics={"ndcg_at_10": 0.10, "valid_ndcg_at_10": 0.30},
        lineage=test_winner.lineage, parent_run_id=test_winner.parent_run_id,
    )  # fmt: skip
    result = register_best(None, settings=recops_settings, primary_metric="ndcg_at_10")
    assert result.family == "popularity" and result.run_id == valid_winner.run_id
    client = mlflow_client(recops_settings)
    versions = client.search_model_versions(f"name = '{recops_settings.model_name}'")
    assert [v.run_id for v in versions] == [valid_winner.run_id]  # the test winner was never registered
    rows = audit_log(recops_settings).history(recops_settings.model_name)
    assert "on valid_ndcg_at_10" in rows[-1].reason


def test_run_register_uses_the_context_pipeline_run(recops_settings: Settings, tmp_path: Path) -> None:
    from pipelines.register_step import run_register
    from pipelines.steps import StepContext, StepResult

    fs = write_features_for(recops_settings)
    first = log_package(
        recops_settings,
        fit_package(fs, "good"),
        tmp_path,
        metrics={"valid_ndcg_at_10": 0.4, "ndcg_at_10": 0.4},
    )
    # a later pipeline run: "the latest" would pick it, the context names the first one
    later = log_package(
        recops_settings, fit_package(fs, "popularity"), tmp_path,
        metrics={"valid_ndcg_at_10": 0.9, "ndcg_at_10": 0.9},
    )  # fmt: skip
    assert later.parent_run_id != first.parent_run_id
    ctx = StepContext(recops_settings, Params(), pipeline_run_id=first.parent_run_id, actor="airflow")
    result = run_register(ctx)
    assert result.step == "register" and result.info["family"] == "itemknn"
    assert result.run_ids["model"] == first.run_id and result.outputs["model_version"].endswith("/1")
    assert result.info["selected_on"] == "valid_ndcg_at_10" and result.metrics["valid_ndcg_at_10"] == 0.4
    assert StepResult.from_dict(result.to_dict()) == result  # JSON round trip (XCom)
    rows = audit_log(recops_settings).history(recops_settings.model_name)
    assert rows[-1].actor == "airflow"
    # an explicit --pipeline-run wins over the context
    assert run_register(ctx, later.parent_run_id).info["family"] == "popularity"


def test_cli_register_promote_rollback_audit_recommend(
    recops_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from core.privacy import pseudonymize
    from pipelines.cli import app
    from tests.factories import make_catalog
    from tests.registry_helpers import clustered_events

    # published data with pseudonymised shoppers (what `recops recommend` reads)
    events = clustered_events()
    events["user_id"] = pseudonymize(
        events["user_id"], recops_settings.pseudonymization_key.get_secret_value()
    )
    batch = recops_settings.data_dir / "2026-01-01"
    batch.mkdir(parents=True)
    events.to_parquet(batch / "events.parquet", index=False)
    make_catalog(40).to_parquet(batch / "catalog.parquet", index=False)

    fs = write_features_for(recops_settings)
    log_package(recops_settings, fit_package(fs, "good"), tmp_path, metrics=METRICS_GOOD)
    monkeypatch.setenv("COLUMNS", "220")  # rich tables are not wrapped in the captured output
    runner = CliRunner()

    out = runner.invoke(app, ["register", "--actor", "alice"])
    assert out.exit_code == 0, out.output
    assert "registered new recops-recommender v1 (itemknn" in out.output
    out = runner.invoke(app, ["promote", "--actor", "alice", "--fail-on-block"])
    assert out.exit_code == 0, out.output
    assert "promoted" in out.output and "recent_popularity (fresh)" in out.output

    out = runner.invoke(app, ["recommend", "--user", "u3", "--k", "5"])
    assert out.exit_code == 0, out.output
    assert "itemknn" in out.output and "cat3" in out.output  # user 3 prefers category 3
    assert "history:" in out.output
    out = runner.invoke(app, ["recommend", "--user", "never-seen", "--k", "3"])
    assert out.exit_code == 0 and "popularity fallback" in out.output
    out = runner.invoke(app, ["recommend", "--user", "p_0123456789abcdef0123"])
    assert isinstance(out.exception, RecopsError) and "--pseudonym" in str(out.exception)

    out = runner.invoke(app, ["rollback", "--reason", "test"])
    assert isinstance(out.exception, RegistryError) and "no 'previous'" in str(out.exception)

    out = runner.invoke(app, ["audit"])
    assert out.exit_code == 0 and "alice" in out.output and "register" in out.output
    out = runner.invoke(app, ["audit", "--at", "2000-01-01T00:00:00Z"])
    assert "no champion" in out.output
    out = runner.invoke(app, ["audit", "--at", "2999-01-01T00:00:00+02:00"])
    assert "champion at 2998-12-31T22:00:00+00:00: v1" in out.output
    out = runner.invoke(app, ["audit", "--at", "yesterday"])
    assert "not an ISO timestamp" in str(out.exception)


# ------------------------------------------------------------------------------ lineage with the code hash


def _dirty_lineage(code: str) -> dict[str, str]:
    """The lineage tags a run gets from a tree with uncommitted changes: same commit, its own code hash."""
    return {
        "git_commit": "0123abc-dirty",
        "data_md5": "d" * 32,
        "dvc_lock_hash": "l" * 16,
        "params_hash": Params().digest(),
        "code_hash": code,
    }


def test_a_run_from_uncommitted_code_is_registered_as_a_new_version(
    recops_settings: Settings, tmp_path: Path
) -> None:
    fs = write_features_for(recops_settings)
    before = log_package(
        recops_settings, fit_package(fs, "good"), tmp_path,
        metrics={"valid_ndcg_at_10": 0.30, "ndcg_at_10": 0.31}, lineage=_dirty_lineage("aaaa"),
    )  # fmt: skip
    first = register_best(None, settings=recops_settings, primary_metric="ndcg_at_10")
    # models/als.py edited again, still uncommitted: same commit, data and params, new code hash
    after = log_package(
        recops_settings, fit_package(fs, "popularity"), tmp_path,
        metrics={"valid_ndcg_at_10": 0.50, "ndcg_at_10": 0.52}, lineage=_dirty_lineage("bbbb"),
    )  # fmt: skip
    assert after.parent_run_id == before.parent_run_id  # one pipeline run per commit + data, as in the issue
    second = register_best(None, settings=recops_settings, primary_metric="ndcg_at_10")
    assert first.created and second.created and (first.version, second.version) == (1, 2)
    assert second.run_id == second.candidate_run_id == after.run_id
    assert second.metrics["valid_ndcg_at_10"] == 0.50 and second.lineage_key != first.lineage_key
    mv = mlflow_client(recops_settings).get_model_version(recops_settings.model_name, "2")
    assert mv.tags["code_hash"] == "bbbb" and mv.tags["lineage_key"] == lineage_key(
        "0123abc-dirty", "d" * 32, Params().digest(), "bbbb"
    )


def test_a_reused_version_reports_its_own_run_and_metrics_never_the_new_runs(
    recops_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from pipelines.cli import app

    fs = write_features_for(recops_settings)
    lineage = _dirty_lineage("cccc")
    original = log_package(
        recops_settings, fit_package(fs, "good"), tmp_path,
        metrics={"valid_ndcg_at_10": 0.30, "ndcg_at_10": 0.31}, lineage=lineage,
    )  # fmt: skip
    assert register_best(None, settings=recops_settings, primary_metric="ndcg_at_10").version == 1
    # the same inputs trained again (same package bytes) logged different figures
    rerun = log_package(
        recops_settings, fit_package(fs, "good"), tmp_path,
        metrics={"valid_ndcg_at_10": 0.90, "ndcg_at_10": 0.91}, lineage=lineage,
    )  # fmt: skip
    reused = register_best(None, settings=recops_settings, primary_metric="ndcg_at_10")
    assert not reused.created and reused.version == 1
    assert reused.run_id == original.run_id and reused.candidate_run_id == rerun.run_id
    assert reused.metrics["valid_ndcg_at_10"] == 0.30 and reused.metrics["ndcg_at_10"] == 0.31
    (row,) = audit_log(recops_settings).history(recops_settings.model_name)  # challenger was on v1 already
    assert row.metrics["valid_ndcg_at_10"] == 0.30

    monkeypatch.setenv("COLUMNS", "250")
    out = CliRunner().invoke(app, ["register"])
    assert out.exit_code == 0, out.output
    assert f"reused existing recops-recommender v1 (itemknn): run {rerun.run_id} has the same" in out.output
    assert f"figures of v1's own run {original.run_id}: selected on valid_ndcg_at_10=0.3000" in out.output
    assert "0.9000" not in out.output

    # same lineage key but different package bytes: never reused, a new version
    log_package(
        recops_settings, fit_package(fs, "popularity"), tmp_path,
        metrics={"valid_ndcg_at_10": 0.95, "ndcg_at_10": 0.95}, lineage=lineage,
    )  # fmt: skip
    different = register_best(None, settings=recops_settings, primary_metric="ndcg_at_10")
    assert different.created and different.version == 2 and different.lineage_key == reused.lineage_key


def test_production_refuses_to_register_a_run_from_a_dirty_tree(
    recops_settings: Settings, tmp_path: Path
) -> None:
    fs = write_features_for(recops_settings)
    log_package(
        recops_settings, fit_package(fs, "good"), tmp_path, metrics={"valid_ndcg_at_10": 0.3},
        lineage=_dirty_lineage("dddd"),
    )  # fmt: skip
    production = recops_settings.model_copy(update={"env": "production"})
    with pytest.raises(RegistryError, match="uncommitted changes"):
        register_best(None, settings=production, primary_metric="ndcg_at_10")
