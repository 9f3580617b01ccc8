"""The step context of an orchestrated run, and the small conversions every task needs.

Airflow hands a task its logical date and DAG run id; tasks hand them on as strings (ISO 8601 for dates),
so everything in :mod:`pipelines.orchestration.tasks` takes primitives and rebuilds the
:class:`~pipelines.steps.StepContext` here, from the settings (environment) and ``params.yaml``.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

from core.errors import RecopsError
from core.settings import Settings, get_settings
from pipelines.params import load_params
from pipelines.steps import StepContext

#: Who an orchestrated step acts as in the audit trail, unless the DAG says more (``airflow:<dag_id>``).
DEFAULT_ACTOR = "airflow"


def parse_instant(value: str | None) -> datetime | None:
    """An ISO 8601 date-time as an aware UTC datetime (naive values are UTC); None for None or ``""``.

    Raises:
        RecopsError: ``value`` is not ISO 8601.
    """
    if value is None or not value.strip():
        return None
    raw = value.strip()
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError as exc:
        raise RecopsError(f"{raw!r} is not an ISO 8601 date-time") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def batch_day(logical_date: str) -> date:
    """The UTC day whose batch the run with this logical date ingests (one batch per logical date).

    Raises:
        RecopsError: the logical date is missing or not ISO 8601.
    """
    moment = parse_instant(logical_date)
    if moment is None:
        raise RecopsError("an ingest run needs a logical date (it names the daily batch to ingest)")
    return moment.date()


def end_of_day(day: date) -> datetime:
    """The first instant after ``day`` (UTC): "now" for the gate when it checks that day's batch, so a
    rerun or a backfill judges future timestamps exactly as the first run did."""
    return datetime.combine(day, time.min, tzinfo=UTC) + timedelta(days=1)


def step_context(
    *, dag_run_id: str = "", logical_date: str | None = None, actor: str = DEFAULT_ACTOR
) -> StepContext:
    """The step context of one task: settings from the environment, params from ``params.yaml``."""
    settings = get_settings()
    return StepContext(
        settings,
        load_params(settings.params_file),
        pipeline_run_id=dag_run_id,
        logical_date=parse_instant(logical_date),
        actor=actor,
    )


def resolve(path: str, settings: Settings) -> Path:
    """A path handed on through XCom (project-relative or absolute) as an absolute path."""
    if not path.strip():
        raise RecopsError("empty path")
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() else settings.project_dir / candidate
