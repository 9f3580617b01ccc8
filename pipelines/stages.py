"""I/O wrappers of the ``features`` and ``evaluate`` DVC stages (training lives in ``pipelines.train``).

The maths is in ``pipelines.features``, ``pipelines.evaluate``, ``pipelines.evaluate_report`` and
``pipelines.metrics``; these functions read inputs, write the DVC outputs (metrics JSON, plot data) and log
to MLflow.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import RecopsError
from core.fsio import atomic_file, atomic_write_text, staged_dir
from core.settings import Settings
from pipelines.params import Params
from pipelines.steps import StepContext, StepResult, project_relative

if TYPE_CHECKING:
    from models.package import ModelPackage
    from pipelines.evaluate_report import StageEvaluation
    from pipelines.features import FeatureSet

log = logging.getLogger(__name__)


def features_dir(settings: Settings) -> Path:
    return settings.artifacts_dir / "features"


def run_features(ctx: StepContext) -> StepResult:
    """The ``features`` stage: published batches in ``data/`` -> ``artifacts/features``."""

    from pipelines.datastore import read_published
    from pipelines.features import build_features, write_features

    settings, params = ctx.settings, ctx.params
    events, catalog = read_published(settings.data_dir)
    fs = build_features(events, catalog, params.features)
    out = features_dir(settings)
    with staged_dir(out, if_exists="replace") as tmp:
        write_features(fs, tmp)
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
    """Write ``payload`` as sorted, indented JSON, atomically (a temp file renamed over the target)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(payload, indent=2, sort_keys=True, default=float) + "\n")


def run_evaluate(ctx: StepContext) -> StepResult:
    """The ``evaluate`` stage: select on validation, report on test (see :mod:`pipelines.evaluate_report`).

    1. **read** the features and, per family, the ``selection`` package (fitted on train) and the
       ``package`` (refitted on train + valid), checking their training cut-offs against the split;
    2. **pure core**: score selection models on valid and packages on test, all families on the same users;
    3. **write** the DVC outputs: ``artifacts/metrics/metrics.json`` (test metrics and ``valid_`` metrics per
       family), ``details.json``, the plot data and figures under ``artifacts/plots/`` (a pure function of
       data, code and params: no run ids, times or commits);
    4. **track**: the metrics on each family's child run, the figures and the scored runs on the parent run.
    """
    from models.threads import limit_threads
    from pipelines.evaluate_report import evaluate_stage

    limit_threads()  # one BLAS thread, as in training: scores (and so ties in top-k) do not depend on it
    settings, params = ctx.settings, ctx.params
    fs, selection, packages = _read_trained(settings, params)
    evaluation = evaluate_stage(
        fs,
        {family: package.model for family, package in selection.items()},
        {family: package.model for family, package in packages.items()},
        params.evaluate,
        seed=params.seed,
    )
    outputs, figures = _write_evaluation(settings, params, evaluation)
    records = {family: _train_record(settings, family) for family in packages}
    run_ids = _track_evaluation(ctx, evaluation, records, figures)

    chosen = evaluation.selected()
    enough = evaluation.n_test_users >= params.promote.min_test_users
    log.info(
        "scored %d test users (%d validation users); %s is best on valid_%s",
        evaluation.n_test_users, evaluation.n_valid_users, chosen, params.evaluate.primary_metric,
    )  # fmt: skip
    if not enough:
        log.warning(
            "only %d test users scored (promote.min_test_users = %d): the promotion gate will refuse",
            evaluation.n_test_users, params.promote.min_test_users,
        )  # fmt: skip
    metrics = evaluation.metrics()
    return StepResult(
        step="evaluate",
        outputs=outputs,
        run_ids=run_ids,
        metrics={f"{fam}.{name}": value for fam, m in metrics.items() for name, value in m.items()},
        info={
            "selected": chosen,
            "selected_by": f"valid_{params.evaluate.primary_metric}",
            "n_test_users": evaluation.n_test_users,
            "n_valid_users": evaluation.n_valid_users,
            "min_test_users": params.promote.min_test_users,
            "enough_test_users": enough,
            "families": evaluation.families,
        },
    )


def _read_trained(
    settings: Settings, params: Params
) -> tuple[FeatureSet, dict[str, ModelPackage], dict[str, ModelPackage]]:
    """The feature set and, per family, its selection and refitted packages (cut-offs checked)."""
    from models.base import ModelLoadError
    from models.package import ModelPackage
    from pipelines.features import read_features
    from pipelines.train import PACKAGE_DIR, SELECTION_DIR, model_dir

    fs = read_features(features_dir(settings))
    info = fs.split_info
    limits = {
        SELECTION_DIR: (datetime.fromtimestamp(info.valid_start, UTC), "the validation period"),
        PACKAGE_DIR: (datetime.fromtimestamp(info.test_start, UTC), "the test period"),
    }
    loaded: dict[str, dict[str, ModelPackage]] = {SELECTION_DIR: {}, PACKAGE_DIR: {}}
    for family in params.train.families:
        for kind, (limit, period) in limits.items():
            folder = model_dir(settings, family) / kind
            if not folder.is_dir():
                raise RecopsError(
                    f"no {kind} model of {family} in {folder}: run `recops train --family {family}` "
                    "(it writes selection/ fitted on train and package/ refitted on train + valid)"
                )
            try:
                package = ModelPackage.load(folder)
            except ModelLoadError as exc:
                raise RecopsError(f"{family} {kind} model does not load: {exc}") from exc
            problem = cutoff_problem(package.training_cutoff, limit, period)
            if problem:
                raise RecopsError(f"{family} {kind} model in {folder}: {problem}; re-run its train stage")
            loaded[kind][family] = package
    return fs, loaded[SELECTION_DIR], loaded[PACKAGE_DIR]


def cutoff_problem(cutoff: datetime | None, limit: datetime, period: str) -> str:
    """Why a model with training cut-off ``cutoff`` may not be scored on ``period`` starting at ``limit``
    (empty when it may: every event it learned from is before ``limit``)."""
    if cutoff is None:
        return "it records no training cut-off, so it cannot be shown not to have seen " + period
    if cutoff > limit:
        return (
            f"its training cut-off {cutoff.isoformat()} is after the start of {period} "
            f"({limit.isoformat()}): it was trained on the events it would be scored on"
        )
    return ""


def _train_record(settings: Settings, family: str) -> dict[str, str]:
    """The MLflow record (run_id, parent_run_id, model_uri, package_digest) of a family's training.

    The single place the evaluate stage asks ``pipelines.train`` which run produced the package.
    """
    from pipelines.train import PACKAGE_DIR, model_dir, read_train_record

    record = read_train_record(settings, family, model_dir(settings, family) / PACKAGE_DIR)
    return {str(k): str(v) for k, v in record.items()}


def _write_evaluation(
    settings: Settings, params: Params, evaluation: StageEvaluation
) -> tuple[dict[str, str], dict[str, Any]]:
    """Write the DVC outputs of the evaluate stage; returns their paths and the figures (for MLflow)."""
    import matplotlib

    matplotlib.use("Agg")
    from pipelines.evaluate_report import details_payload, metrics_payload, plot_payloads
    from pipelines.plots import comparison_figures

    metrics_dir = settings.artifacts_dir / "metrics"
    plots_dir = settings.artifacts_dir / "plots"
    _write_json(metrics_dir / "metrics.json", metrics_payload(evaluation))
    _write_json(metrics_dir / "details.json", details_payload(evaluation))
    outputs = {
        "metrics": project_relative(metrics_dir / "metrics.json", settings),
        "details": project_relative(metrics_dir / "details.json", settings),
    }
    for name, rows in plot_payloads(evaluation, params.evaluate.ks).items():
        _write_json(plots_dir / name, rows)
        outputs[f"plot:{name}"] = project_relative(plots_dir / name, settings)
    figures = comparison_figures(evaluation.report, params.evaluate, seed=params.seed)
    for name, fig in figures.items():  # image plots for `dvc plots show` (no timestamps in the PNG)
        with atomic_file(plots_dir / f"{name}.png") as tmp:
            fig.savefig(tmp, dpi=100, format="png", metadata={"Software": None})
    return outputs, figures


def _track_evaluation(
    ctx: StepContext,
    evaluation: StageEvaluation,
    records: dict[str, dict[str, str]],
    figures: dict[str, Any],
) -> dict[str, str]:
    """Log the metrics to each family's child run and the comparison to the pipeline's parent run."""
    import time

    from mlflow.entities import Metric, RunTag

    from pipelines.lineage import lineage_tags
    from pipelines.tracking import configure_mlflow, get_or_create_parent, mark_current
    from registry.tags import TAG_SCORED_PREFIX

    settings, params = ctx.settings, ctx.params
    client = configure_mlflow(settings)
    metrics = evaluation.metrics()
    now = int(time.time() * 1000)
    for family, record in records.items():
        run_id = record["run_id"]
        batch = [Metric(name, value, now, 0) for name, value in metrics[family].items()]
        for lo in range(0, len(batch), 1000):  # MLflow takes at most 1000 metrics per batch
            client.log_batch(run_id, metrics=batch[lo : lo + 1000])
        # the run whose model was scored is the current one, even if DVC restored it from its run cache
        mark_current(client, settings, record["parent_run_id"], family, run_id)
    # The comparison belongs to the pipeline run doing this evaluation (not to older parents whose children
    # DVC restored from its run cache): it records which model runs it scored, with the plots.
    parent = get_or_create_parent(
        client, settings, lineage_tags(settings.project_dir, params.digest()), ctx.pipeline_run_id
    )
    client.log_batch(
        parent,
        tags=[RunTag(f"{TAG_SCORED_PREFIX}{fam}", r["run_id"]) for fam, r in records.items()]
        + [RunTag("recops.selected_family", evaluation.selected())],
    )
    for name, fig in figures.items():
        client.log_figure(parent, fig, f"plots/{name}.png")
    client.log_dict(parent, metrics, "metrics/metrics.json")
    return {"parent": parent, **{f"model.{fam}": r["run_id"] for fam, r in records.items()}}
