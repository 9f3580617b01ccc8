"""recops_feedback: the scoring service's feedback loop, a daily export through the same gate as any batch.

export (clicks, add-to-cart and purchases since the watermark -> ``runtime/landing/feedback/<id>/``) ->
validate (the Great Expectations gate) -> publish (``data/<id>/``, ``data.dvc``, verified DVC push) ->
announce (updates the ``recops_published_data`` Asset, so the next ``recops_train`` run trains on it) and,
beside it, online_seed (the scoring service's online-store seed, rebuilt from the published data).

* Why a DAG of its own rather than a task of ``recops_ingest``: a feedback batch is not the batch of a day.
  Its id is ``<UTC end of the window>-feedback`` and its window runs from the watermark
  (``runtime/feedback/export-state.json``) to ``lag_minutes`` before this run's logical date. Ingest is
  one batch per logical date with catchup and backfills; a backfill would export nothing (the watermark
  never moves back) and a day that is not landed yet would hold the feedback up. So the batch validate and
  publish take is the folder the export wrote, handed on through XCom, never derived from the date.
* Daily, no catchup, one run at a time. No new feedback: validate, publish and announce are skipped.
* A feedback batch that fails the gate is quarantined and the task raises ``AirflowFailException`` (no
  retry); its window stays exported (the watermark moved), so fix and publish it by hand (docs/operations.md).
* Idempotent: a cleared and re-run DAG run has the same window end; it hands on the batch its first try
  wrote, which publishes ``unchanged`` and announces nothing.

Params: ``lag_minutes`` (how far behind the logical date the window ends; default 10). The work is in
``pipelines.orchestration.serving_tasks`` and ``pipelines.orchestration.tasks``.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import Param, dag, get_current_context, task
from recops_common import (
    DEFAULT_ARGS,
    DVC_POOL,
    INGEST_START,
    PUBLISHED_DATA,
    TAGS,
    actor,
    logical_date,
    online_seed,
)


@dag(
    dag_id="recops_feedback",
    schedule="@daily",
    start_date=INGEST_START,
    catchup=False,  # the window runs from the watermark: past dates have nothing to add
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    params={
        "lag_minutes": Param(
            10, type="integer", minimum=0, description="the window ends this many minutes before the run"
        ),
    },
    tags=[*TAGS, "feedback"],
    doc_md=__doc__,
)
def recops_feedback() -> None:
    @task
    def export() -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowSkipException

        from pipelines.orchestration import serving_tasks

        ctx = get_current_context()
        try:
            return serving_tasks.export_feedback(
                logical_date=logical_date(ctx),
                dag_run_id=ctx["run_id"],
                lag_minutes=int(ctx["params"]["lag_minutes"]),
                actor=actor(ctx),
            )
        except serving_tasks.NothingToExport as exc:
            raise AirflowSkipException(str(exc)) from exc

    @task
    def validate(exported: dict[str, Any]) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowFailException

        from pipelines.orchestration import tasks

        ctx = get_current_context()
        try:
            return tasks.validate_landed(
                batch=exported["outputs"]["batch"],
                logical_date=exported["info"]["gate_date"],
                dag_run_id=ctx["run_id"],
                actor=actor(ctx),
            )
        except tasks.GateRejected as exc:  # deterministic: retrying cannot help
            raise AirflowFailException(str(exc)) from exc

    @task(pool=DVC_POOL)
    def publish(validated: dict[str, Any]) -> dict[str, Any]:
        from pipelines.orchestration import tasks

        ctx = get_current_context()
        return tasks.publish_landed(
            batch=validated["outputs"]["batch"], dag_run_id=ctx["run_id"], actor=actor(ctx)
        )

    @task(outlets=[PUBLISHED_DATA])
    def announce(published: dict[str, Any]) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowSkipException

        from pipelines.orchestration import serving_tasks

        extra = serving_tasks.feedback_announcement(published)
        if extra is None:
            raise AirflowSkipException("the publish changed nothing: no Asset event, no training")
        get_current_context()["outlet_events"][PUBLISHED_DATA].extra = extra
        return extra

    published = publish(validate(export()))
    announce(published)
    published >> online_seed()


recops_feedback()
