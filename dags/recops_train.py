"""recops_train: DVC pull -> features -> train (mapped over the families) -> evaluate -> register -> promote.

* Scheduled on the ``recops_published_data`` Asset (a publish that changed ``data/``) or the
  ``recops_retrain_request`` Asset (drift found by ``recops_monitor``); runnable by hand with the
  ``families`` param (a subset of ``params.yaml`` ``train.families``; empty: all of them).
* DVC-tracked steps run ``dvc repro --single-item <stage>`` (``dvc.lock`` stays the truth) in the
  ``recops_dvc`` pool of size 1: one workspace, one ``dvc.lock`` (docs/operations.md says why).
* The DAG run id is the pipeline run id: one MLflow parent run per DAG run, tagged with it.
* Idempotent: clearing and re-running a DAG run leaves ``dvc.lock`` as it was and registers no second
  model version (the registry is keyed on the lineage of code, data and params).
* With too few published days for the temporal split, ``plan`` skips the run (nothing to train yet).
* After promote, ``online_seed`` rebuilds the scoring service's online-store seed from the data this run
  pulled (idempotent: an unchanged digest rewrites nothing), whatever the promotion decided.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import Param, dag, get_current_context, task
from recops_common import (
    DEFAULT_ARGS,
    DVC_POOL,
    INGEST_START,
    PUBLISHED_DATA,
    RETRAIN_REQUEST,
    TAGS,
    actor,
    online_seed,
)


@dag(
    dag_id="recops_train",
    schedule=(PUBLISHED_DATA | RETRAIN_REQUEST),
    start_date=INGEST_START,
    catchup=False,
    max_active_runs=1,  # one workspace: a second run would rebuild artifacts/ under the first
    default_args=DEFAULT_ARGS,
    params={
        "families": Param(
            [],
            type="array",
            items={"type": "string"},
            description="model families to train (subset of params.yaml train.families); empty: all",
        ),
    },
    tags=[*TAGS, "train"],
    doc_md=__doc__,
)
def recops_train() -> None:
    @task(pool=DVC_POOL)
    def pull_data() -> dict[str, Any]:
        from pipelines.orchestration import tasks

        ctx = get_current_context()
        return tasks.pull_data(dag_run_id=ctx["run_id"], actor=actor(ctx))

    @task
    def plan() -> list[str]:
        """The families to train (the mapped tasks); skips the run when there is too little data."""
        from airflow.sdk.exceptions import AirflowSkipException

        from pipelines.orchestration import tasks

        ctx = get_current_context()
        try:
            planned = tasks.plan_training(
                dag_run_id=ctx["run_id"], families=ctx["params"]["families"], actor=actor(ctx)
            )
        except tasks.NotEnoughData as exc:
            raise AirflowSkipException(str(exc)) from exc
        families: list[str] = planned["info"]["families"]
        return families

    @task(pool=DVC_POOL)
    def features() -> dict[str, Any]:
        from pipelines.orchestration import tasks

        ctx = get_current_context()
        return tasks.run_stage(stage="features", dag_run_id=ctx["run_id"], actor=actor(ctx))

    @task(pool=DVC_POOL, map_index_template="{{ task.op_kwargs['family'] }}")
    def train(family: str) -> dict[str, Any]:
        from pipelines.orchestration import tasks

        ctx = get_current_context()
        return tasks.train_family(family=family, dag_run_id=ctx["run_id"], actor=actor(ctx))

    @task(pool=DVC_POOL)
    def evaluate() -> dict[str, Any]:
        from pipelines.orchestration import tasks

        ctx = get_current_context()
        return tasks.evaluate(dag_run_id=ctx["run_id"], actor=actor(ctx))

    @task
    def register() -> dict[str, Any]:
        from pipelines.orchestration import tasks

        ctx = get_current_context()
        return tasks.register(dag_run_id=ctx["run_id"], actor=actor(ctx))

    @task
    def promote() -> dict[str, Any]:
        from pipelines.orchestration import tasks

        ctx = get_current_context()
        return tasks.promote(dag_run_id=ctx["run_id"], actor=actor(ctx))

    planned = plan()
    trained = train.expand(family=planned)
    pull_data() >> planned >> features() >> trained >> evaluate() >> register() >> promote() >> online_seed()


recops_train()
