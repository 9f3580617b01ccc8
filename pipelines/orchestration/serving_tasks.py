"""The task functions of the scoring service's batch side: the online seed and the feedback loop.

Like :mod:`pipelines.orchestration.tasks` (primitives in, ``StepResult.to_dict()`` out), for the steps the
scoring service needs from the workflow:

* :func:`refresh_online_seed`: ``recops online seed`` (:func:`pipelines.online.seed.run_online_seed`), after
  every publish (``recops_ingest``, ``recops_feedback``) and after promote (``recops_train``). Idempotent:
  the same published data gives the same digest and nothing is rewritten.
* :func:`export_feedback`: ``recops feedback export`` (:func:`pipelines.feedback.export.run_feedback_export`)
  for ``recops_feedback``. A feedback batch id is not a day (``<UTC end>-feedback``): the batch the gate
  and publish take is the one this export wrote, handed on by path, never derived from the logical date.
  The window ends ``lag_minutes`` before the run's logical date, so late writes from the service's queues
  are in the database before their window is exported; a cleared and re-run DAG run has the same end, so
  it exports nothing new and hands on the batch its first try wrote (publish then says ``unchanged``).
* :func:`feedback_announcement`: the ``recops_published_data`` Asset extra of a published feedback batch.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from core.errors import RecopsError
from pipelines.orchestration.context import DEFAULT_ACTOR, parse_instant, step_context
from pipelines.steps import StepResult, project_relative

log = logging.getLogger(__name__)

#: Default distance between a feedback window's end and the run's logical date.
DEFAULT_FEEDBACK_LAG_MINUTES = 10


class NothingToExport(RecopsError):
    """No feedback batch this run: nothing new since the watermark, or nothing published to join it with."""


def refresh_online_seed(*, dag_run_id: str = "", actor: str = DEFAULT_ACTOR) -> dict[str, Any]:
    """Rebuild the online-store seed from the published data (``info["changed"]`` False: same digest).

    Returns:
        :func:`pipelines.online.seed.run_online_seed`'s result: ``outputs`` ``seed`` and ``manifest``,
        ``metrics`` ``users`` and ``events``, ``info`` ``digest`` and ``changed``.
    """
    from pipelines.online.seed import run_online_seed

    ctx = step_context(dag_run_id=dag_run_id, actor=actor)
    result = run_online_seed(ctx)
    log.info(
        "online seed %s: %d shoppers (digest %s)",
        "written" if result.info["changed"] else "unchanged",
        int(result.metrics["users"]),
        str(result.info["digest"])[:12],
    )
    return result.to_dict()


def feedback_window_end(logical_date: str, lag_minutes: int, *, now: datetime | None = None) -> datetime:
    """The end of the feedback window a run exports: its logical date (else ``now``) minus the lag.

    Raises:
        RecopsError: a negative lag, or a logical date that is not ISO 8601.
    """
    if lag_minutes < 0:
        raise RecopsError(f"lag_minutes must be >= 0, not {lag_minutes}")
    moment = parse_instant(logical_date) or (now or datetime.now(UTC)).astimezone(UTC)
    return moment - timedelta(minutes=lag_minutes)


def export_feedback(
    *,
    logical_date: str,
    dag_run_id: str = "",
    lag_minutes: int = DEFAULT_FEEDBACK_LAG_MINUTES,
    actor: str = DEFAULT_ACTOR,
) -> dict[str, Any]:
    """Export the feedback up to :func:`feedback_window_end` as a landing batch for the gate.

    Returns:
        The export's result; ``outputs["batch"]`` is the batch folder to validate and publish and
        ``info["gate_date"]`` the instant the gate judges it at (the window's end); ``info["reused"]`` is
        True when this run's batch was written by an earlier try of the same run.
    Raises:
        NothingToExport: nothing is published yet, or no new feedback event since the watermark (the DAG
            skips validate and publish).
    """
    from pipelines.datastore import published_batches
    from pipelines.feedback.export import LANDING_SET, feedback_batch_id, run_feedback_export

    until = feedback_window_end(logical_date, lag_minutes)
    ctx = step_context(dag_run_id=dag_run_id, logical_date=until.isoformat(), actor=actor)
    settings = ctx.settings
    if not published_batches(settings.data_dir):
        raise NothingToExport(f"nothing published in {settings.data_dir} yet: no catalogue to export against")
    out = run_feedback_export(ctx).to_dict()
    out["info"]["reused"] = False
    if "batch" not in out["outputs"]:
        # A cleared DAG run: its first try exported this very window (same end, same batch id).
        earlier = settings.landing_dir / LANDING_SET / feedback_batch_id(until)
        if not (earlier / "manifest.json").is_file():
            raise NothingToExport(f"no new feedback event up to {until.isoformat()}: no batch to publish")
        out["outputs"]["batch"] = project_relative(earlier, settings)
        out["info"].update(batch_id=earlier.name, reused=True)
    window_end = parse_instant(str(out["info"].get("until") or until.isoformat())) or until
    out["info"]["gate_date"] = window_end.isoformat()
    log.info("feedback batch %s -> %s", out["info"]["batch_id"], out["outputs"]["batch"])
    return out


def feedback_announcement(publish_result: Mapping[str, Any]) -> dict[str, Any] | None:
    """The Asset extra of a published feedback batch (``source: feedback``), None when it changed nothing."""
    from pipelines.orchestration.tasks import announcement

    extra = announcement(publish_result)
    if extra is None:
        return None
    result = StepResult.from_dict(publish_result)
    return {**extra, "source": "feedback", "batch_id": str(result.info.get("batch_id", ""))}


__all__ = [
    "DEFAULT_FEEDBACK_LAG_MINUTES",
    "NothingToExport",
    "export_feedback",
    "feedback_announcement",
    "feedback_window_end",
    "refresh_online_seed",
]
