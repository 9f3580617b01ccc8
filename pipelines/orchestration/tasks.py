"""The functions Airflow tasks call, one per task (see :mod:`pipelines.orchestration`).

Each takes primitives (the logical date as an ISO string, the DAG run id, a family name, project-relative
paths), runs one step and returns ``StepResult.to_dict()``: the task's XCom. Every call into another step
module (the generator, the validation gate, publish, DVC, register, promote) is in this module, so a
changed signature is adapted here and nowhere else.

Ingest (``recops_ingest``): :func:`fetch_batch` -> :func:`validate_landed` -> :func:`publish_landed` ->
:func:`announcement` (the extra of the Asset event, or None when nothing changed). :func:`ingest_history`
runs the same steps over a range of days in one go (a workspace's history, without one DAG run per day).

Monitor (``recops_monitor``): :func:`monitor` -> :func:`retrain_request` (the extra of the
retrain-request Asset event, or None).

Train (``recops_train``): :func:`pull_data` -> :func:`plan_training` -> :func:`run_stage` (``features``) ->
:func:`train_family` (mapped over the families) -> :func:`evaluate` -> :func:`register` -> :func:`promote`.
DVC-tracked steps run only through :func:`pipelines.dvc_stages.repro_stage` (``dvc repro --single-item``),
so ``dvc.lock`` stays the record of what produced ``artifacts/``. The DAG run id is the pipeline run id:
it reaches the ``recops`` processes DVC starts and keys the one MLflow parent run of the DAG run.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from core.errors import RecopsError
from pipelines.orchestration.context import (
    DEFAULT_ACTOR,
    batch_day,
    end_of_day,
    resolve,
    step_context,
)
from pipelines.orchestration.sources import (
    BatchNotAvailable,
    batch_folder,
    check_generated_day,
    check_source,
    generator_cache,
    landed,
    landing_folder,
)
from pipelines.steps import StepContext, StepResult, project_relative

log = logging.getLogger(__name__)

#: The stage names of ``dvc.yaml`` an orchestrator may run (``train@<family>`` per listed family).
FEATURES_STAGE = "features"
EVALUATE_STAGE = "evaluate"
TRAIN_STAGE_PREFIX = "train@"
#: How many published daily batches training needs beyond the validation and test days.
MIN_TRAIN_DAYS = 1


class GateRejected(RecopsError):
    """The validation gate rejected the batch; it is quarantined and nothing downstream may run.

    Attributes:
        batch_id: the rejected batch.
        quarantine: its quarantine folder.
        data_docs: the Data Docs summary page (``file://`` URI).
    """

    exit_code = 1

    def __init__(self, message: str, *, batch_id: str, quarantine: str, data_docs: str) -> None:
        super().__init__(message)
        self.batch_id = batch_id
        self.quarantine = quarantine
        self.data_docs = data_docs


class NotEnoughData(RecopsError):
    """Too few published days for the temporal split (training would fail): nothing to train yet."""


def _require_run_id(dag_run_id: str) -> str:
    if not dag_run_id.strip():
        raise RecopsError("an orchestrated training step needs the DAG run id (it keys the MLflow run)")
    return dag_run_id.strip()


# ------------------------------------------------------------------------------------------ ingest


def fetch_batch(
    *,
    logical_date: str,
    dag_run_id: str = "",
    source: str = "generator",
    landing: str = "",
    actor: str = DEFAULT_ACTOR,
) -> dict[str, Any]:
    """Find (or generate) the landed batch of the logical date's UTC day.

    Args:
        logical_date: the DAG run's logical date (ISO 8601); its UTC day is the batch id.
        dag_run_id: the DAG run id (logged only).
        source: ``generator`` (the deterministic generator of params.yaml, cached) or ``landing``.
        landing: the landing folder for ``landing`` (absolute or project-relative; default
            ``<landing_dir>/incoming``).
        actor: who asked.
    Returns:
        ``outputs["batch"]``: the batch folder (project-relative when inside the project);
        ``info``: ``batch_id``, ``source``, ``generated`` (True when this call generated it).
    Raises:
        BatchNotAvailable: no batch for that day (not landed yet, or outside the generator's period).
    """
    ctx = step_context(dag_run_id=dag_run_id, logical_date=logical_date, actor=actor)
    settings, params = ctx.settings, ctx.params
    day = batch_day(logical_date)
    kind = check_source(source)
    generated = False
    if kind == "generator":
        check_generated_day(day, params.generate)
        cache = generator_cache(settings, params.generate)
        folder = batch_folder(cache, day)
        if not landed(folder):
            from pipelines.datasets import GeneratorConfig, generate_dataset

            log.info("generating the dataset of params.yaml generate: into %s", cache)
            summary = generate_dataset(
                GeneratorConfig.from_params(params.generate),
                cache,
                settings.pseudonymization_key.get_secret_value(),
            )
            log.info("%s", summary.line())
            generated = True
    else:
        folder = batch_folder(landing_folder(settings, landing), day)
    if not landed(folder):
        raise BatchNotAvailable(f"no batch for {day.isoformat()}: {folder} holds no events file")
    log.info("batch %s for run %s: %s", day.isoformat(), dag_run_id or "-", folder)
    return StepResult(
        step="fetch",
        outputs={"batch": project_relative(folder, settings)},
        info={"batch_id": day.isoformat(), "source": kind, "generated": generated},
    ).to_dict()


def validate_landed(
    *, batch: str, logical_date: str, dag_run_id: str = "", actor: str = DEFAULT_ACTOR
) -> dict[str, Any]:
    """Run the validation gate on a landed batch; quarantine and raise :class:`GateRejected` if it fails.

    "Now" for the gate is the end of the logical date's day, so a rerun or a backfill of the same date
    judges the batch exactly as the first run did.

    Returns:
        ``outputs["batch"]`` (unchanged), the gate's statistics as metrics, the suite versions in ``info``.
    Raises:
        GateRejected: the batch failed; its quarantine folder and Data Docs page are in the message.
        pipelines.batch_io.BadBatchFile: a file cannot be read at all (nothing quarantined; may be transient).
    """
    from pipelines.validate import validate_batch

    ctx = step_context(dag_run_id=dag_run_id, logical_date=logical_date, actor=actor)
    settings = ctx.settings
    settings.ensure_runtime_dirs()
    folder = resolve(batch, settings)
    report = validate_batch(
        folder,
        data_dir=settings.data_dir,
        quarantine_dir=settings.quarantine_dir,
        params=ctx.params.validation,
        now=end_of_day(batch_day(logical_date)),
    )
    if not report.success:
        quarantine = report.quarantine_path or settings.quarantine_dir / report.batch_id
        docs = (quarantine / "data_docs" / "index.html").resolve().as_uri()
        lines = report.failure_lines()
        shown = "\n".join(lines[:20]) + (f"\n... and {len(lines) - 20} more" if len(lines) > 20 else "")
        message = (
            f"{report.summary()}\nquarantined at {quarantine}\nData Docs: {docs}\n"
            f"result: {report.result_path}\n{shown}"
        )
        log.error("%s", message)
        raise GateRejected(message, batch_id=report.batch_id, quarantine=str(quarantine), data_docs=docs)
    stats = {k: float(v) for k, v in report.statistics.items()}
    log.info("%s", report.summary())
    return StepResult(
        step="validate",
        outputs={"batch": batch},
        metrics=stats,
        info={
            "batch_id": report.batch_id,
            "suite_versions": dict(report.suite_versions),
            "skipped": len(report.skipped),
        },
    ).to_dict()


def publish_landed(
    *, batch: str, dag_run_id: str = "", replace: bool = False, actor: str = DEFAULT_ACTOR
) -> dict[str, Any]:
    """Publish a validated batch into ``data/`` (atomic, idempotent), ``dvc add data`` and a verified push.

    Re-publishing the same content is ``unchanged`` (and finishes an interrupted ``dvc add``/push).

    Returns:
        ``outputs``: ``data`` (``data/<batch_id>``), ``dvc_file``; ``metrics``: events, items;
        ``info``: ``batch_id``, ``status`` (published/replaced/unchanged), ``content_hash``, ``data_md5``
        (the new ``data.dvc`` md5), ``pushed``, ``remote``.
    """
    from pipelines.dvc_ops import prepare_remote
    from pipelines.lineage import data_md5
    from pipelines.publish import publish_batches

    ctx = step_context(dag_run_id=dag_run_id, actor=actor)
    settings = ctx.settings
    remote = settings.dvc_remote
    prepare_remote(
        settings.project_dir, remote, endpoint_url=settings.s3_endpoint_url, bucket=settings.s3_bucket
    )
    results = publish_batches(
        [resolve(batch, settings)],
        data_dir=settings.data_dir,
        repo_root=settings.project_dir,
        replace=replace,
        push=True,
        remote=remote,
        validator=None,  # the validate task ran the gate on this very folder
    )
    result = results[-1]
    log.info("%s: batch %s (%d events)", result.status, result.batch_id, result.events)
    return StepResult(
        step="publish",
        outputs={
            "data": project_relative(result.path, settings),
            "dvc_file": project_relative(result.dvc_file, settings),
        },
        metrics={"events": float(result.events), "items": float(result.items)},
        info={
            "batch_id": result.batch_id,
            "status": result.status,
            "content_hash": result.content_hash,
            "data_md5": data_md5(settings.project_dir),
            "pushed": result.pushed,
            "remote": result.remote or "",
        },
    ).to_dict()


def ingest_history(
    *,
    first_day: str,
    last_day: str,
    dag_run_id: str = "",
    source: str = "generator",
    landing: str = "",
    actor: str = DEFAULT_ACTOR,
) -> dict[str, Any]:
    """The ingest steps for a run of days in one go: fetch each day's batch, gate and publish them all.

    What ``recops_ingest`` does one logical date at a time (:func:`fetch_batch`, :func:`validate_landed`,
    :func:`publish_landed`), for bringing up a workspace with its history (the demo, a new environment)
    without one DAG run per day: the batches are fetched from the same source, each is gated against the
    history published before it (so the volume check sees the earlier days), and all of them are recorded
    with one ``dvc add`` and one verified push. "Now" for the gate is the end of ``last_day``. Idempotent:
    days already published with the same content are ``unchanged``.

    Args:
        first_day: first logical date (ISO 8601; its UTC day).
        last_day: last logical date, included.
        dag_run_id: the run this belongs to (logged only).
        source: ``generator`` or ``landing``, as for :func:`fetch_batch`.
        landing: the landing folder of the ``landing`` source.
        actor: who asked.
    Returns:
        :func:`pipelines.publish_step.run_publish`'s result: ``metrics`` ``batches``, ``batches_changed``
        and ``events``; ``info["batches"]`` the status of each day; ``info["data_md5"]`` the new
        ``data.dvc`` md5.
    Raises:
        BatchNotAvailable: a day of the range has no batch in the source.
        pipelines.publish.ValidationRefused: a batch failed the gate (quarantined; it and the later days
            are not published, the earlier ones are recorded and pushed).
    """
    from pipelines.lineage import data_md5
    from pipelines.publish_step import run_publish

    first, last = batch_day(first_day), batch_day(last_day)
    if last < first:
        raise RecopsError(f"the history ends ({last.isoformat()}) before it starts ({first.isoformat()})")
    ctx = step_context(dag_run_id=dag_run_id, logical_date=end_of_day(last).isoformat(), actor=actor)
    folders: list[Path] = []
    for offset in range((last - first).days + 1):
        day = (first + timedelta(days=offset)).isoformat()
        fetched = fetch_batch(logical_date=day, dag_run_id=dag_run_id, source=source, landing=landing)
        folders.append(resolve(fetched["outputs"]["batch"], ctx.settings))
    log.info("publishing %d batches %s .. %s in one go", len(folders), first, last)
    result = run_publish(ctx, folders, remote=ctx.settings.dvc_remote).to_dict()
    result["info"]["data_md5"] = data_md5(ctx.settings.project_dir)
    return result


def announcement(publish_result: Mapping[str, Any]) -> dict[str, Any] | None:
    """The ``extra`` of the published-data Asset event, or None when the publish changed nothing.

    An ``unchanged`` publish (a rerun, or a backfill over published days) announces nothing, so it
    does not start a training run on data that was already announced.
    """
    result = StepResult.from_dict(publish_result)
    if result.info.get("status") == "unchanged":
        return None
    return {
        "batch_id": str(result.info.get("batch_id", "")),
        "status": str(result.info.get("status", "")),
        "data_md5": str(result.info.get("data_md5", "")),
        "events": int(result.metrics.get("events", 0)),
    }


# ------------------------------------------------------------------------------------------ train


def pull_data(*, dag_run_id: str, actor: str = DEFAULT_ACTOR) -> dict[str, Any]:
    """``dvc pull data.dvc`` from the configured remote: the published data this run trains on.

    A worker whose workspace already holds that version only checks it (no download).
    """
    from pipelines.dvc_ops import dvc_pull, prepare_remote
    from pipelines.lineage import data_md5

    ctx = step_context(dag_run_id=_require_run_id(dag_run_id), actor=actor)
    settings = ctx.settings
    dvc_file = settings.project_dir / f"{settings.data_dir.name}.dvc"
    if not dvc_file.is_file():
        raise NotEnoughData(f"{dvc_file.name} does not exist: nothing has been published yet")
    remote = settings.dvc_remote
    prepare_remote(
        settings.project_dir, remote, endpoint_url=settings.s3_endpoint_url, bucket=settings.s3_bucket
    )
    dvc_pull(settings.project_dir, remote, [dvc_file])
    return StepResult(
        step="pull",
        outputs={"data": project_relative(settings.data_dir, settings), "dvc_file": dvc_file.name},
        info={"data_md5": data_md5(settings.project_dir), "remote": remote},
    ).to_dict()


def plan_training(
    *, dag_run_id: str, families: Sequence[str] = (), actor: str = DEFAULT_ACTOR
) -> dict[str, Any]:
    """Which families this run trains, after checking there is enough data for the temporal split.

    Args:
        dag_run_id: the DAG run id.
        families: the families asked for (the DAG's ``families`` param); empty: every family of
            ``params.yaml`` ``train.families``. Each must be one of those (only they have DVC stages).
    Returns:
        ``info``: ``families``, ``published_batches``, ``min_batches``, ``data_md5``.
    Raises:
        RecopsError: a family is not in ``train.families``.
        NotEnoughData: fewer published daily batches than ``features.valid_days + test_days + 1``.
    """
    from pipelines.datastore import published_batches
    from pipelines.lineage import data_md5

    ctx = step_context(dag_run_id=_require_run_id(dag_run_id), actor=actor)
    known = list(ctx.params.train.families)
    chosen = [str(f) for f in families] or known
    unknown = [f for f in chosen if f not in known]
    if unknown:
        raise RecopsError(
            f"family {', '.join(map(repr, unknown))} is not in params.yaml train.families "
            f"({', '.join(known)}): only those have DVC stages"
        )
    if len(set(chosen)) != len(chosen):
        raise RecopsError(f"families listed more than once: {chosen}")
    features = ctx.params.features
    need = features.valid_days + features.test_days + MIN_TRAIN_DAYS
    have = len(published_batches(ctx.settings.data_dir))
    if have < need:
        raise NotEnoughData(
            f"{have} published daily batch(es); training needs at least {need} "
            f"(features.valid_days={features.valid_days} + test_days={features.test_days} + "
            f"{MIN_TRAIN_DAYS} to train on)"
        )
    return StepResult(
        step="plan",
        info={
            "families": chosen,
            "published_batches": have,
            "min_batches": need,
            "data_md5": data_md5(ctx.settings.project_dir),
        },
    ).to_dict()


def _repro(ctx: StepContext, stage: str, *, force: bool = False) -> StepResult:
    from pipelines.dvc_stages import repro_stage

    result = repro_stage(ctx, stage, force=force)
    what = "ran" if result.info.get("ran") else "up to date (or restored from the run cache)"
    log.info("%s: %s", stage, what)
    return result


def run_stage(
    *, stage: str, dag_run_id: str, logical_date: str | None = None, actor: str = DEFAULT_ACTOR
) -> dict[str, Any]:
    """Bring one DVC stage up to date (``dvc repro --single-item STAGE``) for this DAG run.

    Returns:
        ``outputs``: the stage's outputs and their md5 in ``dvc.lock``; ``info["ran"]``.
    """
    ctx = step_context(dag_run_id=_require_run_id(dag_run_id), logical_date=logical_date, actor=actor)
    return _repro(ctx, stage).to_dict()


def train_family(
    *, family: str, dag_run_id: str, logical_date: str | None = None, actor: str = DEFAULT_ACTOR
) -> dict[str, Any]:
    """The ``train@<family>`` DVC stage (one mapped task per family)."""
    out = run_stage(
        stage=f"{TRAIN_STAGE_PREFIX}{family}", dag_run_id=dag_run_id, logical_date=logical_date, actor=actor
    )
    out["info"]["family"] = family
    return out


def _scored_under(ctx: StepContext) -> bool:
    """True when this pipeline run's MLflow parent exists and records the models an evaluation scored."""
    from pipelines.tracking import pipeline_key
    from registry.aliases import check_name
    from registry.client import mlflow_client
    from registry.tags import TAG_KIND, TAG_PIPELINE_KEY, TAG_SCORED_PREFIX

    client = mlflow_client(ctx.settings)
    experiment = client.get_experiment_by_name(ctx.settings.mlflow_experiment)
    if experiment is None:
        return False
    key = check_name(pipeline_key({}, ctx.pipeline_run_id), "pipeline key")
    found = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`{TAG_PIPELINE_KEY}` = '{key}' and tags.`{TAG_KIND}` = 'pipeline'",
        max_results=1,
    )
    return bool(found) and any(k.startswith(TAG_SCORED_PREFIX) for k in found[0].data.tags)


def evaluate(
    *, dag_run_id: str, logical_date: str | None = None, actor: str = DEFAULT_ACTOR
) -> dict[str, Any]:
    """The ``evaluate`` DVC stage, so that this DAG run has its MLflow parent run with the scored models.

    When DVC finds the stage up to date (nothing changed since an earlier run) and this DAG run has no
    parent run yet, the stage is forced once: its outputs are a pure function of its inputs (``dvc.lock``
    stays byte-identical) and the evaluation is logged under this DAG run, which register reads. A
    cleared and re-run DAG run finds its parent and does nothing.
    """
    ctx = step_context(dag_run_id=_require_run_id(dag_run_id), logical_date=logical_date, actor=actor)
    result = _repro(ctx, EVALUATE_STAGE)
    forced = False
    if not result.info.get("ran") and not _scored_under(ctx):
        log.info("evaluate is up to date but run %s has no evaluation in MLflow: forcing it", dag_run_id)
        result = _repro(ctx, EVALUATE_STAGE, force=True)
        forced = True
    out = result.to_dict()
    out["info"]["forced"] = forced
    return out


def register(*, dag_run_id: str, actor: str = DEFAULT_ACTOR) -> dict[str, Any]:
    """Register the best model of this DAG run's pipeline run (``challenger``); idempotent on lineage."""
    from pipelines.register_step import run_register

    ctx = step_context(dag_run_id=_require_run_id(dag_run_id), actor=actor)
    return run_register(ctx).to_dict()


def promote(*, dag_run_id: str, actor: str = DEFAULT_ACTOR) -> dict[str, Any]:
    """Run the promotion gate for the current ``challenger``; the decision is in ``info``."""
    from pipelines.promote import run_promote

    ctx = step_context(dag_run_id=_require_run_id(dag_run_id), actor=actor)
    result = run_promote(ctx).to_dict()
    log.info("promotion decision: %s", result["info"].get("outcome", result["info"]))
    return result


# ------------------------------------------------------------------------------------------ monitor


def monitor(
    *, dag_run_id: str, logical_date: str | None = None, actor: str = DEFAULT_ACTOR
) -> dict[str, Any]:
    """Drift of recent batches against the champion's training data; report logged to MLflow.

    Returns:
        ``outputs["report"]`` (HTML), ``run_ids["monitor"]``, ``metrics`` ``drift.<signal>``; ``info``:
        ``status``, ``retrain`` and ``reasons``.
    """
    from pipelines.monitor.step import run_monitor

    ctx = step_context(dag_run_id=_require_run_id(dag_run_id), logical_date=logical_date, actor=actor)
    return run_monitor(ctx).to_dict()


def retrain_request(monitor_result: Mapping[str, Any]) -> dict[str, Any] | None:
    """The ``extra`` of the retrain-request Asset event (why), or None when the monitor asks for nothing."""
    result = StepResult.from_dict(monitor_result)
    if not result.info.get("retrain"):
        return None
    return {
        "reasons": [str(r) for r in result.info.get("reasons", [])],
        "status": str(result.info.get("status", "")),
        "champion_version": result.info.get("champion_version"),
        "data_md5": str(result.info.get("data_md5", "")),
        "monitor_run_id": result.run_ids.get("monitor", ""),
        "report": result.outputs.get("report", ""),
    }


__all__ = [
    "BatchNotAvailable",
    "GateRejected",
    "NotEnoughData",
    "announcement",
    "evaluate",
    "fetch_batch",
    "ingest_history",
    "monitor",
    "plan_training",
    "promote",
    "publish_landed",
    "pull_data",
    "register",
    "retrain_request",
    "run_stage",
    "train_family",
    "validate_landed",
]
