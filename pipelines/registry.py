"""Register the best model of a pipeline run as a version of ``settings.model_name``, alias ``challenger``.

The registry works by alias only (``champion``, ``challenger``, ``previous``); stages are never used and
aliases are resolved only with ``MlflowClient.get_model_version_by_alias``. Registration is idempotent: a
version is identified by its lineage key (git commit + data md5 + params hash), so registering the same
pipeline output twice returns the existing version instead of creating a second one. Alias moves are
serialised by the metadata-database lock and recorded in the audit trail (:mod:`pipelines.audit`).
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipelines.audit import Action, AuditLog, audit_log
from pipelines.errors import RecopsError
from pipelines.params import Params
from pipelines.settings import Settings
from pipelines.tracking import TAG_FAMILY, TAG_KIND, TAG_PIPELINE_KEY, TAG_SCORED_PREFIX, TAG_SUPERSEDED

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run
    from sqlalchemy.engine import Connection

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
PREVIOUS = "previous"
ALIASES = (CHAMPION, CHALLENGER, PREVIOUS)
MODEL_ARTIFACT_NAME = "model"
LINEAGE_TAGS = ("git_commit", "data_md5", "dvc_lock_hash", "params_hash", "pipeline_run_id", "family")
TAG_LINEAGE_KEY = "lineage_key"
TAG_SOURCE_RUN = "source_run_id"
#: Model-version descriptions are stored in a 5000-character column by MLflow's SQL stores.
MAX_DESCRIPTION = 4900


class RegistryError(RecopsError):
    """A registry operation was refused or cannot be carried out."""


@dataclass(frozen=True)
class RegisterResult:
    """Outcome of :func:`register_best`."""

    name: str
    version: int
    run_id: str
    family: str
    lineage_key: str
    created: bool  # False: a version with the same lineage existed and was reused
    previous_challenger: int | None
    primary_metric: str
    metrics: dict[str, float] = field(default_factory=dict)


def lineage_key(git_commit: str, data_md5: str, params_hash: str) -> str:
    """Identity of a trained model's inputs: code version, data version and parameters."""
    basis = f"{git_commit}|{data_md5}|{params_hash}"
    return hashlib.sha256(basis.encode("utf-8")).hexdigest()[:24]


def check_name(value: str, what: str) -> str:
    """Refuse values that cannot be quoted safely inside an MLflow filter string."""
    if not value or "'" in value or "\\" in value or "`" in value:
        raise RegistryError(f"invalid {what} {value!r}: it must be non-empty without quotes or backslashes")
    return value


def lock_name(model_name: str) -> str:
    """Name of the metadata-database lock that serialises alias moves of one registered model."""
    return f"recops:registry:{model_name}"


# ------------------------------------------------------------------------------------------ MLflow helpers


def ensure_registered_model(client: MlflowClient, name: str) -> None:
    """Create the registered model if it does not exist yet."""
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(
            name, description="recops recommender (aliases: champion, challenger, previous)"
        )
    except MlflowException as exc:
        if "ALREADY_EXISTS" not in str(getattr(exc, "error_code", "")):
            raise


def alias_version(client: MlflowClient, name: str, alias: str) -> int | None:
    """The version number ``alias`` points to (None when unset), via ``get_model_version_by_alias``."""
    from service.model_loader import resolve_alias

    mv = resolve_alias(client, name, alias)
    return None if mv is None else int(mv.version)


def move_alias(
    client: MlflowClient,
    audit: AuditLog,
    conn: Connection,
    *,
    name: str,
    alias: str,
    to_version: int,
    actor: str,
    action: Action,
    reason: str,
    metrics: Mapping[str, Any] | None = None,
) -> int | None:
    """Point ``alias`` at ``to_version`` and append the audit row (inside :meth:`AuditLog.lock`).

    Returns the version the alias pointed to before (None when unset); nothing is written when it already
    pointed at ``to_version``.
    """
    before = alias_version(client, name, alias)
    if before == to_version:
        return before
    client.set_registered_model_alias(name, alias, str(to_version))
    audit.record(
        actor=actor,
        model_name=name,
        alias=alias,
        from_version=before,
        to_version=to_version,
        action=action,
        reason=reason,
        metrics=metrics,
        conn=conn,
    )
    log.info("%s: %s@%s %s -> %s (%s by %s)", action, name, alias, before, to_version, reason, actor)
    return before


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
    """The model runs compared in the pipeline run ``parent`` that finished and logged ``primary_metric``.

    When the evaluate stage ran under ``parent`` it tagged the runs it scored (``recops.scored.<family>``);
    those are the candidates even if DVC restored some families from an earlier pipeline run's cache.
    Otherwise: the finished, current (not superseded) child runs of ``parent``.
    """
    scored = [v for k, v in parent.data.tags.items() if k.startswith(TAG_SCORED_PREFIX)]
    if scored:
        runs = [client.get_run(run_id) for run_id in sorted(set(scored))]
        return [
            r for r in runs if r.info.status == "FINISHED" and _finite(r.data.metrics.get(primary_metric))
        ]
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
        and _finite(run.data.metrics.get(primary_metric))
    ]


def pick_best(runs: list[Run], primary_metric: str) -> Run:
    """The run with the highest ``primary_metric`` (ties: the later run)."""
    if not runs:
        raise RegistryError(f"no finished child run logged {primary_metric!r}: run the evaluate stage first")
    return max(runs, key=lambda r: (float(r.data.metrics[primary_metric]), int(r.info.start_time or 0)))


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


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(float(value))


# ------------------------------------------------------------------------------------------ model card


def model_card(run: Run, parent: Run | None, lineage: Mapping[str, str], primary_metric: str) -> str:
    """A markdown model card for the version description: data, metrics with CIs, slices, limitations."""
    tags, params = run.data.tags, run.data.params
    metrics = {k: float(v) for k, v in run.data.metrics.items() if _finite(v)}
    family = tags.get(TAG_FAMILY, params.get("family", "unknown"))
    lines = [
        f"# {family} recommender",
        "",
        f"Trained by pipeline run `{lineage.get('pipeline_run_id', '')}`, child run `{run.info.run_id}`. "
        f"Selected as the best family on `{primary_metric}`.",
        "",
        "## Data",
        "",
        f"- data version (data.dvc md5): `{lineage.get('data_md5', '')}`",
        f"- dvc.lock hash: `{lineage.get('dvc_lock_hash', '')}`",
        f"- params hash: `{lineage.get('params_hash', '')}`",
        f"- code: `{lineage.get('git_commit', '')}`",
    ]
    for key in ("train_interactions", "n_items", "n_users", "test_users"):
        if key in params:
            lines.append(f"- {key.replace('_', ' ')}: {params[key]}")
    for key in ("n_test_users", "n_cold_users", "n_warm_users"):
        if key in metrics:
            lines.append(f"- {key.removeprefix('n_').replace('_', ' ')}: {int(metrics[key])}")
    hyper = {k.removeprefix("hp."): v for k, v in params.items() if k.startswith("hp.")}
    if hyper:
        lines.append("- hyper-parameters: " + ", ".join(f"{k}={v}" for k, v in sorted(hyper.items())))
    lines += [
        "",
        "## Offline metrics (test period, full ranking)",
        "",
        "| metric | value | CI |",
        "|---|---|---|",
    ]
    slices = ("_cold", "_warm")
    for name in sorted(metrics):
        if (
            name.endswith(("_ci_low", "_ci_high"))
            or name.endswith(slices)
            or name.startswith(("train_", "n_"))
        ):
            continue
        low, high = metrics.get(f"{name}_ci_low"), metrics.get(f"{name}_ci_high")
        ci = f"[{low:.4f}, {high:.4f}]" if low is not None and high is not None else ""
        lines.append(f"| {name} | {metrics[name]:.4f} | {ci} |")
    sliced = sorted(n for n in metrics if n.endswith(slices))
    if sliced:
        lines += ["", "## Cold and warm users", "", "| metric | value |", "|---|---|"]
        lines += [f"| {n} | {metrics[n]:.4f} |" for n in sliced]
    lines += [
        "",
        "## Limitations",
        "",
        "- Offline metrics replay one temporal split of logged events; they ignore position bias and the "
        "feedback loop of the live system, so online results can differ.",
        "- Users without history get popularity-based lists; items absent from the training catalogue "
        "cannot be recommended until the next retraining.",
        "- Promotion re-scores this version against the champion on the current test data; the numbers "
        "above are those of its own pipeline run.",
    ]
    if parent is not None and parent.data.tags.get("orchestrator_run_id"):
        lines.append(f"- Orchestrator run: `{parent.data.tags['orchestrator_run_id']}`.")
    card = "\n".join(lines) + "\n"
    return card if len(card) <= MAX_DESCRIPTION else card[: MAX_DESCRIPTION - 20] + "\n\n(truncated)\n"


# ------------------------------------------------------------------------------------------ register


def run_lineage(run: Run) -> dict[str, str]:
    """Lineage tags of a child run plus the lineage key derived from them."""
    tags = run.data.tags
    lineage = {key: str(tags.get(key, "")) for key in LINEAGE_TAGS}
    if not lineage["family"]:
        lineage["family"] = str(run.data.params.get("family", ""))
    if not lineage["pipeline_run_id"]:
        lineage["pipeline_run_id"] = str(tags.get("mlflow.parentRunId", ""))
    lineage[TAG_LINEAGE_KEY] = lineage_key(lineage["git_commit"], lineage["data_md5"], lineage["params_hash"])
    return lineage


def register_best(
    pipeline_run_id: str | None,
    *,
    settings: Settings,
    params: Params,
    actor: str = "recops",
    client: MlflowClient | None = None,
    audit: AuditLog | None = None,
) -> RegisterResult:
    """Register the best child run of a pipeline run and point ``challenger`` at it.

    Args:
        pipeline_run_id: MLflow run id of the parent run, or the orchestrator's run id; None: the latest.
        settings: MLflow URIs, model name and metadata database.
        params: ``params.promote.primary_metric`` picks the best family.
        actor: who asked (recorded in the audit trail).
    Returns:
        The version (new, or the existing one with the same lineage key) and whether it was created.
    """
    from service.model_loader import registry_client

    name = check_name(settings.model_name, "model name")
    client = client or registry_client(settings)
    audit = audit or audit_log(settings)
    primary = params.promote.primary_metric
    parent = find_parent_run(client, settings, pipeline_run_id)
    best = pick_best(candidate_runs(client, parent, primary), primary)
    best = client.get_run(best.info.run_id)  # search results may omit run outputs (logged models)
    lineage = run_lineage(best)
    key = lineage[TAG_LINEAGE_KEY]
    metrics = {k: float(v) for k, v in best.data.metrics.items() if _finite(v)}

    ensure_registered_model(client, name)
    with audit.lock(lock_name(name)) as conn:
        existing = client.search_model_versions(f"name = '{name}' AND tags.{TAG_LINEAGE_KEY} = '{key}'")
        if existing:
            version = min(int(v.version) for v in existing)
            created = False
            log.info("lineage %s is already registered as %s v%d", key, name, version)
        else:
            model_id = logged_model_id(client, best)
            mv = client.create_model_version(
                name,
                source=f"models:/{model_id}",
                run_id=best.info.run_id,
                tags={**{k: v for k, v in lineage.items() if v}, TAG_SOURCE_RUN: best.info.run_id},
                description=model_card(best, parent, lineage, primary),
                model_id=model_id,
            )
            version, created = int(mv.version), True
            log.info("registered %s v%d from run %s (%s)", name, version, best.info.run_id, lineage["family"])
        before = move_alias(
            client,
            audit,
            conn,
            name=name,
            alias=CHALLENGER,
            to_version=version,
            actor=actor,
            action="register",
            reason=f"best of pipeline run {parent.info.run_id} on {primary}"
            + ("" if created else " (existing version, same lineage)"),
            metrics={primary: metrics.get(primary), "family": lineage["family"]},
        )
    return RegisterResult(
        name=name,
        version=version,
        run_id=best.info.run_id,
        family=lineage["family"],
        lineage_key=key,
        created=created,
        previous_challenger=before,
        primary_metric=primary,
        metrics=metrics,
    )
