"""recops_monitor: daily drift check of recent batches against the champion's training data.

measure (category mix, item popularity, events per shopper and day: PSI or Jensen-Shannon; the share of
events on items the champion does not know; thresholds in ``params.yaml`` ``monitor:``) -> request_retrain.

* The report (an HTML page with plots) is written to ``runtime/monitor/<day>/`` and logged to the MLflow
  experiment ``recops-monitoring`` with the drift metrics, the thresholds and the verdict.
* Online metrics: when the scoring service's feedback store exists in the metadata database
  (``RECOPS_METADATA_DB_URL``, the same as the service's), click-through and conversion per model version
  and A/B variant over the ``monitor.online_window_days`` before the logical date (which ``measure``
  passes on) join the report; a champion below ``monitor.online_min_click_through`` counts as a reason.
  The feedback itself reaches training through ``recops_feedback``.
* When a signal is past its threshold and data was published since the champion was trained,
  ``request_retrain`` updates the ``recops_retrain_request`` Asset (which schedules ``recops_train``); the
  event's ``extra`` records why (the reasons, the champion version, the MLflow run). Otherwise it is skipped.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import dag, get_current_context, task
from recops_common import DEFAULT_ARGS, INGEST_START, RETRAIN_REQUEST, TAGS, actor, logical_date


@dag(
    dag_id="recops_monitor",
    schedule="@daily",
    start_date=INGEST_START,
    catchup=False,  # drift is judged on the data as it is now; old days have nothing to add
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=[*TAGS, "monitor"],
    doc_md=__doc__,
)
def recops_monitor() -> None:
    @task
    def measure() -> dict[str, Any]:
        from pipelines.orchestration import tasks

        ctx = get_current_context()
        return tasks.monitor(dag_run_id=ctx["run_id"], logical_date=logical_date(ctx), actor=actor(ctx))

    @task(outlets=[RETRAIN_REQUEST])
    def request_retrain(measured: dict[str, Any]) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowSkipException

        from pipelines.orchestration import tasks

        extra = tasks.retrain_request(measured)
        if extra is None:
            status = measured["info"].get("status")
            raise AirflowSkipException(f"no retraining requested ({status})")
        get_current_context()["outlet_events"][RETRAIN_REQUEST].extra = extra
        return extra

    request_retrain(measure())


recops_monitor()
