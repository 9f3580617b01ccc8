"""MLflow tracking: one parent run per pipeline run, one child run per model family.

A *pipeline run* is identified by the orchestrator's run id when there is one
(:attr:`pipelines.steps.StepContext.pipeline_run_id`) and otherwise by the code and data versions (git
commit + data md5), so the separate processes of one ``dvc repro`` (features, train@family, evaluate)
find the same parent. A family
trained again inside the same pipeline run gets a new child; the older child is tagged superseded.
The tracking URI only ever comes from settings.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from core.settings import Settings
from registry.client import ensure_experiment, mlflow_client
from registry.tags import TAG_FAMILY, TAG_KIND, TAG_PIPELINE_KEY, TAG_SUPERSEDED

if TYPE_CHECKING:
    from mlflow import ActiveRun
    from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)


def configure_mlflow(settings: Settings) -> MlflowClient:
    """Point MLflow at the configured stores, make sure the experiment exists, and return a client."""
    import mlflow

    client = mlflow_client(settings)
    ensure_experiment(client, settings, settings.mlflow_experiment)
    mlflow.set_experiment(settings.mlflow_experiment)
    return client


def pipeline_key(lineage: dict[str, str], pipeline_run_id: str = "") -> str:
    """The key that ties the stages of one pipeline run to one parent run: the orchestrator's run id when
    there is one, else the code and data versions."""
    orchestrated = pipeline_run_id.strip()
    if orchestrated:
        return f"orchestrated:{orchestrated}"
    basis = f"{lineage.get('git_commit', '')}|{lineage.get('data_md5', '')}"
    return "local:" + hashlib.sha256(basis.encode()).hexdigest()[:16]


def get_or_create_parent(
    client: MlflowClient, settings: Settings, lineage: dict[str, str], pipeline_run_id: str = ""
) -> str:
    """Run id of the parent run for this pipeline run, creating it (with lineage tags) if needed."""
    key = pipeline_key(lineage, pipeline_run_id)
    experiment = client.get_experiment_by_name(settings.mlflow_experiment)
    assert experiment is not None, "configure_mlflow() must run first"
    found = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`{TAG_PIPELINE_KEY}` = '{key}' and tags.`{TAG_KIND}` = 'pipeline'",
        max_results=1,
        order_by=["attributes.start_time DESC"],
    )
    if found:
        return str(found[0].info.run_id)
    orchestrated = pipeline_run_id.strip()
    name = f"pipeline {orchestrated}" if orchestrated else f"pipeline {lineage.get('git_commit', '')[:8]}"
    tags = {TAG_PIPELINE_KEY: key, TAG_KIND: "pipeline", **lineage}
    if orchestrated:
        tags["orchestrator_run_id"] = orchestrated
    run = client.create_run(experiment.experiment_id, run_name=name, tags=tags)
    client.set_terminated(run.info.run_id, status="FINISHED")
    log.info("created MLflow parent run %s for %s", run.info.run_id, key)
    return str(run.info.run_id)


def supersede_children(
    client: MlflowClient, settings: Settings, parent_run_id: str, family: str, keep: str | None = None
) -> None:
    """Tag the child runs of ``family`` under ``parent_run_id`` as superseded, all but ``keep``."""
    experiment = client.get_experiment_by_name(settings.mlflow_experiment)
    assert experiment is not None
    older = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{parent_run_id}' and tags.`{TAG_FAMILY}` = '{family}'",
    )
    for run in older:
        if run.info.run_id != keep and run.data.tags.get(TAG_SUPERSEDED) != "true":
            client.set_tag(run.info.run_id, TAG_SUPERSEDED, "true")


def mark_current(
    client: MlflowClient, settings: Settings, parent_run_id: str, family: str, run_id: str
) -> None:
    """Make ``run_id`` the current child run of ``family`` under its parent; the others become superseded.

    DVC restores a train stage from its run cache without running it (e.g. after a parameter is set back),
    so the model in the workspace can come from a child run that a later training superseded. The evaluate
    stage calls this for the runs whose models it scored, so the registry picks those.
    """
    supersede_children(client, settings, parent_run_id, family, keep=run_id)
    run = client.get_run(run_id)
    if run.data.tags.get(TAG_SUPERSEDED, "false") != "false":
        client.set_tag(run_id, TAG_SUPERSEDED, "false")


@contextmanager
def child_run(
    client: MlflowClient, settings: Settings, parent_run_id: str, family: str, lineage: dict[str, str]
) -> Iterator[ActiveRun]:
    """Start the child run of one model family under the parent (earlier ones become superseded)."""
    import mlflow

    supersede_children(client, settings, parent_run_id, family)
    tags = {TAG_FAMILY: family, TAG_KIND: "model", **lineage, "pipeline_run_id": parent_run_id}
    with mlflow.start_run(run_name=family, parent_run_id=parent_run_id, tags=tags, nested=True) as run:
        yield run
