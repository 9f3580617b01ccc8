"""recops_ingest: one daily batch per logical date, from the source to the published data layer.

fetch (generator or landing folder) -> validate (the Great Expectations gate) -> publish (``data/<day>/``,
``data.dvc``, verified DVC push) -> announce (updates the ``recops_published_data`` Asset, which schedules
``recops_train``) and, beside it, online_seed (rebuilds the scoring service's online-store seed from the
published data; same data, same digest, nothing rewritten).

* Daily, ``catchup`` on, one run at a time: run D ingests the batch of UTC day D after the day ended
  (``CronDataIntervalTimetable``: logical date = start of the interval). Backfill with
  ``airflow backfill create --dag-id recops_ingest --from-date ... --to-date ...`` (docs/operations.md).
* A batch that fails the gate is quarantined (``runtime/quarantine/<day>/``, the Data Docs link is in
  the task log) and the task raises ``AirflowFailException``: no retry, nothing downstream runs.
* Idempotent: a rerun or backfill of a published day publishes ``unchanged`` and announces nothing.

Params: ``source`` (``generator`` or ``landing``), ``landing`` (folder of ``YYYY-MM-DD/`` batches for the
``landing`` source; empty: ``runtime/landing/incoming``), ``replace`` (re-publish a day with different
content). The work is in ``pipelines.orchestration.tasks``.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import CronDataIntervalTimetable, Param, dag, get_current_context, task
from recops_common import (
    DEFAULT_ARGS,
    DVC_POOL,
    INGEST_END,
    INGEST_START,
    PUBLISHED_DATA,
    TAGS,
    actor,
    logical_date,
    online_seed,
)


@dag(
    dag_id="recops_ingest",
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=INGEST_START,
    end_date=INGEST_END,
    catchup=True,
    max_active_runs=1,  # the gate's volume check compares a day with the days published before it
    default_args=DEFAULT_ARGS,
    params={
        "source": Param("generator", enum=["generator", "landing"], description="where batches come from"),
        "landing": Param("", type="string", description="landing folder (source=landing); empty: default"),
        "replace": Param(False, type="boolean", description="re-publish a day whose content changed"),
    },
    tags=[*TAGS, "ingest"],
    doc_md=__doc__,
)
def recops_ingest() -> None:
    @task
    def fetch() -> dict[str, Any]:
        from pipelines.orchestration import tasks

        ctx = get_current_context()
        return tasks.fetch_batch(
            logical_date=logical_date(ctx),
            dag_run_id=ctx["run_id"],
            source=ctx["params"]["source"],
            landing=ctx["params"]["landing"],
            actor=actor(ctx),
        )

    @task
    def validate(fetched: dict[str, Any]) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowFailException

        from pipelines.orchestration import tasks

        ctx = get_current_context()
        try:
            return tasks.validate_landed(
                batch=fetched["outputs"]["batch"],
                logical_date=logical_date(ctx),
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
            batch=validated["outputs"]["batch"],
            dag_run_id=ctx["run_id"],
            replace=bool(ctx["params"]["replace"]),
            actor=actor(ctx),
        )

    @task(outlets=[PUBLISHED_DATA])
    def announce(published: dict[str, Any]) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowSkipException

        from pipelines.orchestration import tasks

        extra = tasks.announcement(published)
        if extra is None:
            raise AirflowSkipException("the publish changed nothing: no Asset event, no training")
        get_current_context()["outlet_events"][PUBLISHED_DATA].extra = extra
        return extra

    published = publish(validate(fetch()))
    announce(published)
    published >> online_seed()


recops_ingest()
