"""Register the best model of a pipeline run as a version of ``settings.model_name``, alias ``challenger``.

The best model is chosen on the **validation** split only: the family whose selection model (fitted on
train) scored the highest ``valid_<primary_metric>`` (:func:`pick_best`). Test metrics are the report and
never choose; a family that wins on test but loses on validation is not registered.

The registry works by alias only (``champion``, ``challenger``, ``previous``); stages are never used and
aliases are resolved only with ``MlflowClient.get_model_version_by_alias``. Registration is idempotent: a
version is identified by its lineage key (git commit + data md5 + params hash + the hash of the code the
stages depend on, working-tree contents included) together with its package digest, so registering the same
pipeline output twice returns the existing version instead of creating a second one; a reused version is
reported with its own source run and metrics, never the new run's. Alias moves are serialised by the
metadata-database lock and recorded in the audit trail (:mod:`registry.audit`).

Each new version records the sha256 of every file of its package (:mod:`registry.integrity`), computed from
the package the run logged and checked against the digest the training run recorded, so the loader can
refuse bytes that changed in the artifact store afterwards.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from core.settings import Settings
from registry.aliases import (
    CHALLENGER,
    RegistryError,
    alias_lock,
    check_name,
    ensure_registered_model,
    move_alias,
)
from registry.audit import AuditLog, audit_log
from registry.card import finite, model_card
from registry.client import mlflow_client
from registry.notices import redis_notifier
from registry.tags import (
    LINEAGE_TAGS,
    TAG_CODE_HASH,
    TAG_KIND,
    TAG_LINEAGE_KEY,
    TAG_PACKAGE_DIGEST,
    TAG_PIPELINE_KEY,
    TAG_SCORED_PREFIX,
    TAG_SOURCE_RUN,
    TAG_SUPERSEDED,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run
    from mlflow.entities.model_registry import ModelVersion

log = logging.getLogger(__name__)

MODEL_ARTIFACT_NAME = "model"
#: Prefix of the metrics the evaluate stage measured on the validation split (``valid_ndcg_at_10``).
VALID_PREFIX = "valid_"


def selection_metric(primary_metric: str) -> str:
    """The logged metric that selects a family: ``primary_metric`` on the validation split."""
    return f"{VALID_PREFIX}{primary_metric}"


@dataclass(frozen=True)
class RegisterResult:
    """Outcome of :func:`register_best`."""

    name: str
    version: int
    run_id: str  # the version's own source run (for a reused version: the run it was registered from)
    family: str
    lineage_key: str
    created: bool  # False: a version with the same lineage and package existed and was reused
    previous_challenger: int | None
    primary_metric: str
    metrics: dict[str, float] = field(default_factory=dict)  # logged by ``run_id``
    candidate_run_id: str = ""  # the best run of this pipeline run (== run_id when created)


def lineage_key(git_commit: str, data_md5: str, params_hash: str, code_hash: str = "") -> str:
    """Identity of a trained model's inputs: code version (commit, and the hash of the code the stages
    depend on when the run recorded one), data version and parameters."""
    basis = f"{git_commit}|{data_md5}|{params_hash}" + (f"|{code_hash}" if code_hash else "")
    return hashlib.sha256(basis.encode("utf-8")).hexdigest()[:24]


# ------------------------------------------------------------------------------------------ MLflow helpers


def experiment_id(client: MlflowClient, settings: Settings) -> str:
    experiment = client.get_experiment_by_name(settings.mlflow_experiment)
    if experiment is None:
        raise RegistryError(
            f"MLflow experiment {settings.mlflow_experiment!r} does not exist at "
            f"{settings.mlflow_tracking_uri}: run the training pipeline first"
        )
    return str(experiment.experiment_id)


def find_parent_run(client: MlflowClient, settings: Settings, pipeline_run_id: str | None) -> Run:
    """The parent run of a pipeline run: by MLflow run id or orchestrator run id, or the latest one."""
    from mlflow.exceptions import MlflowException

    exp = experiment_id(client, settings)
    if pipeline_run_id:
        check_name(pipeline_run_id, "pipeline run id")
        try:
            run = client.get_run(pipeline_run_id)
            if run.data.tags.get(TAG_KIND) == "pipeline":
                return run
        except MlflowException:
            pass
        found = client.search_runs(
            [exp],
            filter_string=f"tags.`{TAG_PIPELINE_KEY}` = 'orchestrated:{pipeline_run_id}'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        if not found:
            raise RegistryError(
                f"no pipeline run {pipeline_run_id!r} in experiment {settings.mlflow_experiment!r}"
            )
        return found[0]
    found = client.search_runs(
        [exp],
        filter_string=f"tags.`{TAG_KIND}` = 'pipeline'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if not found:
        raise RegistryError(
            f"no pipeline run in experiment {settings.mlflow_experiment!r}: run `dvc repro` first"
        )
    return found[0]


def candidate_runs(client: MlflowClient, parent: Run, primary_metric: str) -> list[Run]:
    """The model runs compared in the pipeline run ``parent`` that finished and logged ``primary_metric``
    on the validation split (``valid_<primary_metric>``, what :func:`pick_best` selects on).

    When the evaluate stage ran under ``parent`` it tagged the runs it scored (``recops.scored.<family>``);
    those are the candidates even if DVC restored some families from an earlier pipeline run's cache.
    Otherwise: the finished, current (not superseded) child runs of ``parent``.
    """
    key = selection_metric(primary_metric)
    scored = [v for k, v in parent.data.tags.items() if k.startswith(TAG_SCORED_PREFIX)]
    if scored:
        runs = [client.get_run(run_id) for run_id in sorted(set(scored))]
        return [r for r in runs if r.info.status == "FINISHED" and finite(r.data.metrics.get(key))]
    children = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'",
        max_results=1000,
    )
    return [
        run
        for run in children
        if run.info.status == "FINISHED"
        and run.data.tags.get(TAG_SUPERSEDED) != "true"
        and finite(run.data.metrics.get(key))
    ]


def pick_best(runs: list[Run], primary_metric: str) -> Run:
    """The run with the highest validation ``primary_metric`` (``valid_<primary_metric>``; ties: the later
    run). The test value of the metric is never read: selecting on it would make the report optimistic."""
    key = selection_metric(primary_metric)
    runs = [r for r in runs if finite(r.data.metrics.get(key))]
    if not runs:
        raise RegistryError(
            f"no finished child run logged {key!r} ({primary_metric} on the validation split): "
            "run the evaluate stage first"
        )
    return max(runs, key=lambda r: (float(r.data.metrics[key]), int(r.info.start_time or 0)))


def logged_model_id(client: MlflowClient, run: Run) -> str:
    """The id of the model logged as ``model`` by ``run`` (MLflow 3 logged models)."""
    outputs = getattr(run, "outputs", None)
    model_outputs = list(getattr(outputs, "model_outputs", None) or [])
    candidates = []
    if model_outputs:
        for output in sorted(model_outputs, key=lambda o: -int(o.step or 0)):
            model = client.get_logged_model(output.model_id)
            if model.name == MODEL_ARTIFACT_NAME:
                candidates.append(model.model_id)
    if not candidates:
        uri = run.data.tags.get("recops.model_uri", "")
        if uri.startswith("models:/m-"):
            candidates.append(uri.removeprefix("models:/"))
    if not candidates:
        raise RegistryError(f"run {run.info.run_id} logged no model named {MODEL_ARTIFACT_NAME!r}")
    return str(candidates[0])


# ------------------------------------------------------------------------------------------ register


def run_lineage(run: Run) -> dict[str, str]:
    """Lineage tags of a child run plus the lineage key derived from them."""
    tags = run.data.tags
    lineage = {key: str(tags.get(key, "")) for key in LINEAGE_TAGS}
    if not lineage["family"]:
        lineage["family"] = str(run.data.params.get("family", ""))
    if not lineage["pipeline_run_id"]:
        lineage["pipeline_run_id"] = str(tags.get("mlflow.parentRunId", ""))
    lineage[TAG_LINEAGE_KEY] = lineage_key(
        lineage["git_commit"], lineage["data_md5"], lineage["params_hash"], lineage[TAG_CODE_HASH]
    )
    return lineage


def package_checksums(client: MlflowClient, settings: Settings, run: Run, model_id: str) -> dict[str, str]:
    """sha256 of every file of the package ``run`` logged (downloaded from the artifact store now), checked
    against the ``recops.package_digest`` the training run recorded from the folder it logged.

    Raises:
        RegistryError: the logged package differs from what training wrote, or (production) the run
            recorded no digest to check it against.
    """
    from models.package import digest_of, file_checksums
    from registry.fetch import ModelLoaderError, download_package

    run_id = run.info.run_id
    base = str(client.get_logged_model(model_id).artifact_location)
    with tempfile.TemporaryDirectory(prefix="recops-register-") as tmp:
        try:
            files = file_checksums(download_package(base, Path(tmp), settings, f"run {run_id}"))
        except ModelLoaderError as exc:
            raise RegistryError(f"cannot register run {run_id}: {exc}") from exc
    recorded = run.data.tags.get(TAG_PACKAGE_DIGEST, "")
    if recorded and digest_of(files) != recorded:
        raise RegistryError(
            f"refusing to register run {run_id}: its logged package in the artifact store (digest "
            f"{digest_of(files)[:12]}...) is not the one training wrote (digest {recorded[:12]}...); "
            "the stored files were altered or corrupted: run the training again"
        )
    if not recorded:
        if settings.env == "production":
            raise RegistryError(
                f"refusing to register run {run_id}: it recorded no package digest, so its logged files "
                "cannot be verified; run the training again"
            )
        log.warning(
            "run %s recorded no package digest: checksums taken from the stored files as they are", run_id
        )
    return files


def reusable_version(versions: list[ModelVersion], run: Run) -> ModelVersion | None:
    """Among versions with the run's lineage key, the oldest holding the same package: registered from this
    very run, or carrying the same package digest. A version whose bytes differ is never reused."""
    digest = run.data.tags.get(TAG_PACKAGE_DIGEST, "")
    same = [
        v
        for v in versions
        if v.run_id == run.info.run_id or (digest and (v.tags or {}).get(TAG_PACKAGE_DIGEST) == digest)
    ]
    return min(same, key=lambda v: int(v.version)) if same else None


def register_best(
    pipeline_run_id: str | None,
    *,
    settings: Settings,
    primary_metric: str,
    actor: str = "recops",
    client: MlflowClient | None = None,
    audit: AuditLog | None = None,
) -> RegisterResult:
    """Register the best child run of a pipeline run and point ``challenger`` at it.

    Args:
        pipeline_run_id: MLflow run id of the parent run, or the orchestrator's run id; None: the latest.
        settings: MLflow URIs, model name and metadata database.
        primary_metric: the metric whose validation value (``valid_<primary_metric>``) picks the best
            family (``promote.primary_metric``).
        actor: who asked (recorded in the audit trail).
    Returns:
        The version (new, or the existing one with the same lineage key) and whether it was created.
    """
    name = check_name(settings.model_name, "model name")
    client = client or mlflow_client(settings)
    audit = audit or audit_log(settings)
    primary = primary_metric
    parent = find_parent_run(client, settings, pipeline_run_id)
    best = pick_best(candidate_runs(client, parent, primary), primary)
    best = client.get_run(best.info.run_id)  # search results may omit run outputs (logged models)
    lineage = run_lineage(best)
    key = lineage[TAG_LINEAGE_KEY]
    if settings.env == "production" and lineage["git_commit"].endswith("-dirty"):
        raise RegistryError(
            f"refusing to register run {best.info.run_id} in production: it was trained from a working tree "
            f"with uncommitted changes ({lineage['git_commit']}); commit, then run the pipeline again"
        )
    lineage_filter = f"name = '{name}' AND tags.{TAG_LINEAGE_KEY} = '{key}'"

    ensure_registered_model(client, name)
    files: dict[str, str] | None = None
    if reusable_version(client.search_model_versions(lineage_filter), best) is None:
        files = package_checksums(client, settings, best, logged_model_id(client, best))  # slow: not locked
    with alias_lock(client, audit, name, redis_notifier(settings)) as lock:
        reused = reusable_version(client.search_model_versions(lineage_filter), best)
        if reused is not None:
            version, created, source_run = int(reused.version), False, client.get_run(str(reused.run_id))
            log.info("lineage %s and package already registered as %s v%d (run %s)",
                     key, name, version, source_run.info.run_id)  # fmt: skip
        else:
            version, source_run = (
                _create_version(client, settings, name, best, parent, lineage, files, primary),
                best,
            )
            created = True
        source_metrics = {k: float(v) for k, v in source_run.data.metrics.items() if finite(v)}
        reason = f"best of pipeline run {parent.info.run_id} on {selection_metric(primary)}"
        if not created:
            reason += f" (existing version from run {source_run.info.run_id}: same lineage and package)"
        before = move_alias(
            lock,
            alias=CHALLENGER,
            to_version=version,
            actor=actor,
            action="register",
            reason=reason,
            metrics={
                selection_metric(primary): source_metrics.get(selection_metric(primary)),
                primary: source_metrics.get(primary),
                "family": lineage["family"],
            },
        )
    return RegisterResult(
        name=name,
        version=version,
        run_id=source_run.info.run_id,
        family=lineage["family"],
        lineage_key=key,
        created=created,
        previous_challenger=before,
        primary_metric=primary,
        metrics=source_metrics,
        candidate_run_id=best.info.run_id,
    )


def _create_version(
    client: MlflowClient,
    settings: Settings,
    name: str,
    run: Run,
    parent: Run,
    lineage: dict[str, str],
    files: dict[str, str] | None,
    primary: str,
) -> int:
    """A new model version of ``run``'s logged model, with lineage, package checksums and the model card."""
    from registry.integrity import manifest_tags

    model_id = logged_model_id(client, run)
    if files is None:
        files = package_checksums(client, settings, run, model_id)
    same_key = client.search_model_versions(
        f"name = '{name}' AND tags.{TAG_LINEAGE_KEY} = '{lineage[TAG_LINEAGE_KEY]}'"
    )
    if same_key:
        log.warning(
            "%s v%s has the same lineage key but a different package: registering a new version",
            name, ", v".join(sorted((str(v.version) for v in same_key), key=int)),
        )  # fmt: skip
    mv = client.create_model_version(
        name,
        source=f"models:/{model_id}",
        run_id=run.info.run_id,
        tags={
            **{k: v for k, v in lineage.items() if v},
            TAG_SOURCE_RUN: run.info.run_id,
            **manifest_tags(files),
        },
        description=model_card(run, parent, lineage, primary),
        model_id=model_id,
    )
    log.info("registered %s v%s from run %s (%s)", name, mv.version, run.info.run_id, lineage["family"])
    return int(mv.version)
