"""The ``evaluate`` stage end to end on small trained families: DVC outputs, reruns, MLflow, cut-offs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from core.errors import RecopsError
from core.settings import Settings
from pipelines.params import Params
from pipelines.steps import StepContext
from tests.registry_helpers import write_features_for

FAMILIES = ["popularity", "itemknn"]
PARAMS = Params.model_validate(
    {
        "train": {"families": FAMILIES, "itemknn": {"neighbours": 20}},
        "evaluate": {"ks": [5, 10], "bootstrap_samples": 200},
    }
)


@pytest.fixture
def trained(recops_settings: Settings) -> StepContext:
    """Features of the clustered shop and both packages of each family, trained by the real train stage."""
    from pipelines.train import run_train

    write_features_for(recops_settings)
    ctx = StepContext(recops_settings, PARAMS)
    for family in FAMILIES:
        run_train(ctx, family)
    return ctx


def _outputs(settings: Settings) -> dict[str, bytes]:
    """Every file the evaluate stage writes for DVC, by path relative to the artifacts folder."""
    roots = [settings.artifacts_dir / "metrics", settings.artifacts_dir / "plots"]
    return {
        p.relative_to(settings.artifacts_dir).as_posix(): p.read_bytes()
        for root in roots
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_evaluate_selects_on_valid_reports_on_test_and_reruns_byte_identically(trained: StepContext) -> None:
    from pipelines.stages import run_evaluate
    from registry.client import mlflow_client

    settings = trained.settings
    result = run_evaluate(trained)
    first = _outputs(settings)
    assert {
        "metrics/metrics.json", "metrics/details.json", "plots/ndcg_at_k.json", "plots/comparison.json",
        "plots/metric_comparison.png", "plots/coverage_vs_popularity.png", "plots/ndcg_curve.png",
    } <= set(first)  # fmt: skip
    run_evaluate(trained)
    assert _outputs(settings) == first  # the same inputs give the same bytes (dvc.lock does not move)

    metrics = json.loads(first["metrics/metrics.json"])
    assert list(metrics) == sorted(FAMILIES)
    for family in FAMILIES:
        values = metrics[family]
        assert {"ndcg_at_10", "valid_ndcg_at_10", "recall_at_10", "recall_trunc_at_10", "n_users"} <= set(
            values
        )
        assert values["n_users"] == result.info["n_test_users"]
        assert values["valid_n_users"] == result.info["n_valid_users"]
    best = max(FAMILIES, key=lambda f: (metrics[f]["valid_ndcg_at_10"], -FAMILIES.index(f)))
    assert result.info["selected"] == best and result.info["selected_by"] == "valid_ndcg_at_10"
    text = b"".join(first[name] for name in first if name.endswith(".json")).decode()
    for record_key in ("run_id", result.run_ids["parent"], result.run_ids["model.itemknn"]):
        assert record_key not in text  # no run ids or lineage inside DVC outputs
    assert json.loads(json.dumps(result.to_dict(), allow_nan=False))["info"]["enough_test_users"] is True

    client = mlflow_client(settings)
    logged = client.get_run(result.run_ids["model.itemknn"]).data.metrics
    assert logged["valid_ndcg_at_10"] == pytest.approx(metrics["itemknn"]["valid_ndcg_at_10"])
    assert logged["ndcg_at_10"] == pytest.approx(metrics["itemknn"]["ndcg_at_10"])
    parent = client.get_run(result.run_ids["parent"]).data.tags
    assert parent["recops.selected_family"] == best
    assert parent["recops.scored.itemknn"] == result.run_ids["model.itemknn"]


def test_cli_evaluate_prints_selection_and_user_counts(
    trained: StepContext, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from pipelines.cli import app

    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(PARAMS.model_dump(mode="json", by_alias=True)), encoding="utf-8")
    monkeypatch.setenv("RECOPS_PARAMS_FILE", str(params_file))
    monkeypatch.setenv("COLUMNS", "200")
    from core.settings import get_settings

    get_settings.cache_clear()
    out = CliRunner().invoke(app, ["evaluate"])
    assert out.exit_code == 0, out.output
    metrics = json.loads((trained.settings.artifacts_dir / "metrics" / "metrics.json").read_text())
    best = max(FAMILIES, key=lambda f: (metrics[f]["valid_ndcg_at_10"], -FAMILIES.index(f)))
    assert f"selected on valid_ndcg_at_10: {best}" in out.output
    assert f"{metrics[best]['n_users']:.0f} test users" in out.output
    assert "valid ndcg@10" in out.output and "recall_trunc@10" in out.output


def _rewrite_cutoff(package_dir: Path, cutoff: str | None) -> None:
    meta: dict[str, Any] = json.loads((package_dir / "package.json").read_text(encoding="utf-8"))
    if cutoff is None:
        meta.pop("training_cutoff", None)
    else:
        meta["training_cutoff"] = cutoff
    (package_dir / "package.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


def test_models_trained_into_the_evaluated_period_are_refused(trained: StepContext) -> None:
    from pipelines.stages import run_evaluate
    from pipelines.train import PACKAGE_DIR, SELECTION_DIR, model_dir

    settings = trained.settings
    selection = model_dir(settings, "itemknn") / SELECTION_DIR
    original = (selection / "package.json").read_text(encoding="utf-8")
    # the selection model claims to have trained up to the test start: it has seen the validation period
    _rewrite_cutoff(selection, "2026-01-12T00:00:00Z")
    with pytest.raises(
        RecopsError, match=r"itemknn selection model .* after the start of the validation period"
    ):
        run_evaluate(trained)
    _rewrite_cutoff(selection, None)
    with pytest.raises(RecopsError, match="records no training cut-off"):
        run_evaluate(trained)
    (selection / "package.json").write_text(original, encoding="utf-8")
    _rewrite_cutoff(model_dir(settings, "popularity") / PACKAGE_DIR, "2026-01-14T00:00:00Z")
    with pytest.raises(RecopsError, match=r"popularity package model .* after the start of the test period"):
        run_evaluate(trained)
