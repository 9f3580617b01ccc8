"""What the recops DAG files share: the Assets, the DVC pool, default task arguments, the ingest window.

Not a DAG file (listed in ``.airflowignore``); the DAG files import it from the DAGs folder, which Airflow
puts on ``sys.path``. Like them it imports nothing heavy: the work happens in ``pipelines.orchestration``,
imported inside the task bodies.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import Asset, get_current_context, task

#: The published, validated data layer (``data/`` + ``data.dvc``). ``recops_ingest`` updates it after a
#: publish that changed something; ``recops_train`` is scheduled on it.
PUBLISHED_DATA = Asset(name="recops_published_data", uri="recops://data/published", group="recops")
#: A request to retrain (drift past a threshold); ``recops_monitor`` updates it with the reasons in the
#: event's ``extra``; ``recops_train`` is scheduled on it too.
RETRAIN_REQUEST = Asset(name="recops_retrain_request", uri="recops://train/request", group="recops")

#: Pool of size 1 for every task that runs DVC in the shared workspace (publish, pull, features, train,
#: evaluate): one workspace has one dvc.lock and one artifacts/ folder (see docs/operations.md).
DVC_POOL = "recops_dvc"

#: Transient failures (a DVC remote or the MLflow server that is briefly away, a worker that died) retry
#: with exponential backoff: about 30 s, 60 s. A failed validation gate never retries
#: (``AirflowFailException``).
DEFAULT_ARGS: dict[str, Any] = {
    "owner": "recops",
    "retries": 2,
    "retry_delay": timedelta(seconds=30),
    "retry_exponential_backoff": 2.0,
    "max_retry_delay": timedelta(minutes=10),
    "execution_timeout": timedelta(hours=2),
}

TAGS = ["recops"]


def _day(variable: str, default: str | None) -> pendulum.DateTime | None:
    value = os.environ.get(variable, default or "").strip()
    return pendulum.parse(value, tz="UTC") if value else None


#: First and (optionally) last logical date of ``recops_ingest``: the generator's first day by default.
#: ``RECOPS_INGEST_START`` / ``RECOPS_INGEST_END`` (YYYY-MM-DD) move the window; read at parse time
#: because a schedule must be static.
INGEST_START = _day("RECOPS_INGEST_START", "2026-01-01")
INGEST_END = _day("RECOPS_INGEST_END", None)


def actor(context: Any) -> str:
    """Who the steps act as in the audit trail: ``airflow:<dag_id>``."""
    return f"airflow:{context['dag'].dag_id}"


def logical_date(context: Any) -> str:
    """The run's logical date as ISO 8601 ("" for a run that has none, e.g. an Asset-triggered one)."""
    value = context.get("logical_date")
    return value.isoformat() if value is not None else ""


@task(pool=DVC_POOL)  # reads data/ as one version: not while another task pulls or publishes
def online_seed() -> dict[str, Any]:
    """Rebuild the scoring service's online-store seed from the published data (idempotent: an unchanged
    digest rewrites nothing). Used by recops_ingest, recops_feedback and recops_train."""
    from pipelines.orchestration import serving_tasks

    ctx = get_current_context()
    return serving_tasks.refresh_online_seed(dag_run_id=ctx["run_id"], actor=actor(ctx))
