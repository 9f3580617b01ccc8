"""I/O wrappers of the ``features`` and ``evaluate`` DVC stages (training lives in ``pipelines.train``).

The maths is in ``pipelines.features``, ``pipelines.evaluate`` and ``pipelines.metrics``; these functions
read inputs, write the DVC outputs (metrics JSON, plot data) and log to MLflow.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import RecopsError
from core.settings import Settings
from pipelines.steps import StepContext, StepResult, project_relative

if TYPE_CHECKING:
    from models.base import Recommender

log = logging.getLogger(__name__)


def features_dir(settings: Settings) -> Path:
    return settings.artifacts_dir / "features"


def run_features(ctx: StepContext) -> StepResult:
    """The ``features`` stage: published batches in ``data/`` -> ``artifacts/features``."""
    import shutil

    from pipelines.datastore import read_published
    from pipelines.features import build_features, write_features

    settings, params = ctx.settings, ctx.params
    events, catalog = read_published(settings.data_dir)
    fs = build_features(events, catalog, params.features)
    out = features_dir(settings)
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    write_features(fs, tmp)
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    summary: dict[str, Any] = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    summary_path = settings.artifacts_dir / "features-summary.json"
    _write_json(summary_path, summary)  # DVC metrics (outside the out)
    return StepResult(
        step="features",
        outputs={
            "features": project_relative(out, settings),
            "summary": project_relative(summary_path, settings),
        },
        metrics={
            k: float(v) for k, v in summary.items() if isinstance(v, int | float) and not isinstance(v, bool)
        },
    )


def _write_json(path: Path, payload: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, sort_keys=True, default=float) + "\n", encoding="utf-8")


def run_evaluate(ctx: StepContext) -> StepResult:
    """The ``evaluate`` stage: every trained family on the same test users, full ranking.

    Writes ``artifacts/metrics/metrics.json`` (DVC metrics), per-family plot data under
    ``artifacts/plots/`` (DVC plots), logs final metrics to each family's child run and the comparison
    plots to the parent run.
    """
    import matplotlib

    matplotlib.use("Agg")
    settings, params = ctx.settings, ctx.params
    from mlflow.entities import RunTag

    from models.package import ModelPackage
    from pipelines.evaluate import evaluate_models
    from pipelines.features import read_features
    from pipelines.lineage import lineage_tags
    from pipelines.plots import comparison_figures
    from pipelines.tracking import configure_mlflow, get_or_create_parent, mark_current
    from pipelines.train import PACKAGE_DIR, RUN_FILE, model_dir
    from registry.tags import TAG_SCORED_PREFIX

    fs = read_features(features_dir(settings))
    models: dict[str, Recommender] = {}
    runs: dict[str, dict[str, str]] = {}
    for family in params.train.families:
        folder = model_dir(settings, family)
        if not (folder / PACKAGE_DIR).is_dir():
            raise RecopsError(f"no trained {family} model in {folder}: run `recops train --family {family}`")
        models[family] = ModelPackage.load(folder / PACKAGE_DIR).model
        runs[family] = json.loads((folder / RUN_FILE).read_text(encoding="utf-8"))
    results = evaluate_models(models, fs, params.evaluate)

    metrics = {family: _scalar_metrics(result.to_dict()) for family, result in results.items()}
    metrics_dir = settings.artifacts_dir / "metrics"
    _write_json(metrics_dir / "metrics.json", metrics)
    _write_json(metrics_dir / "details.json", {f: r.to_dict() for f, r in results.items()})
    plots_dir = settings.artifacts_dir / "plots"
    plots_dir.mkdir(parents=True, exist_ok=True)
    ks = sorted(params.evaluate.ks)
    curve = [
        {
            "family": f,
            "k": k,
            "ndcg": metrics[f].get(f"ndcg_at_{k}", 0.0),
            "recall": metrics[f].get(f"recall_at_{k}", 0.0),
        }
        for f in metrics
        for k in ks
    ]
    _write_json(plots_dir / "ndcg_at_k.json", curve)
    primary = params.evaluate.primary_metric
    _write_json(
        plots_dir / "comparison.json",
        [
            {
                "family": f,
                primary: m.get(primary, 0.0),
                "coverage": m.get(f"coverage_at_{ks[len(ks) // 2]}", 0.0),
                "popularity_bias": m.get(f"popularity_bias_at_{ks[len(ks) // 2]}", 0.0),
            }
            for f, m in metrics.items()
        ],
    )
    figures = comparison_figures(results, params.evaluate)
    for name, fig in figures.items():  # image plots for `dvc plots show` (DVC-cached, not in git)
        fig.savefig(plots_dir / f"{name}.png", dpi=100, metadata={"Software": None})

    client = configure_mlflow(settings)
    for fam, record in runs.items():
        run_id = record["run_id"]
        for name, value in metrics[fam].items():
            client.log_metric(run_id, name, value)
        # the run whose model was scored is the current one, even if DVC restored it from its run cache
        mark_current(client, settings, record["parent_run_id"], fam, run_id)
    # The comparison belongs to the pipeline run doing this evaluation (not to older parents whose children
    # DVC restored from its run cache): it records which model runs it scored, with the plots.
    parent = get_or_create_parent(
        client, settings, lineage_tags(settings.project_dir, params.digest()), ctx.pipeline_run_id
    )
    client.log_batch(
        parent, tags=[RunTag(f"{TAG_SCORED_PREFIX}{fam}", r["run_id"]) for fam, r in runs.items()]
    )
    for name, fig in figures.items():
        client.log_figure(parent, fig, f"plots/{name}.png")
    client.log_dict(parent, metrics, "metrics/metrics.json")
    return StepResult(
        step="evaluate",
        outputs={"metrics": project_relative(metrics_dir / "metrics.json", settings)},
        run_ids={"parent": parent, **{f"model.{fam}": r["run_id"] for fam, r in runs.items()}},
        metrics={f"{fam}.{name}": value for fam, m in metrics.items() for name, value in m.items()},
    )


def _scalar_metrics(result: dict[str, Any]) -> dict[str, float]:
    """Flatten an evaluation result to the numeric metrics MLflow and DVC show."""
    flat: dict[str, float] = {}
    for key, value in result.get("metrics", result).items():
        if isinstance(value, bool):
            continue
        if isinstance(value, int | float):
            flat[key] = float(value)
    return flat
