"""`recops validate`: the data-quality gate for one landed batch (GX suites + recops checks + quarantine)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from core.errors import RecopsError


def parse_now(value: str | None) -> datetime | None:
    """Parse ``--now`` (ISO-8601; naive values are UTC)."""
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise RecopsError(
            f"--now {value!r} is not an ISO-8601 timestamp (e.g. 2026-01-02T00:00:00Z)"
        ) from exc


def validate_command(
    batch_dir: Annotated[
        Path, typer.Argument(help="Batch folder (named after the batch id), e.g. runtime/landing/2026-01-01.")
    ],
    now: Annotated[
        str | None, typer.Option("--now", help="Current time for the not-in-the-future check (ISO-8601).")
    ] = None,
) -> None:
    """Validate a landed batch; on failure quarantine it, list the failed expectations and exit 1."""
    from core.settings import get_settings
    from pipelines.params import load_params
    from pipelines.validate import validate_batch

    settings = get_settings()
    params = load_params(settings.params_file)
    report = validate_batch(
        batch_dir,
        data_dir=settings.data_dir,
        quarantine_dir=settings.quarantine_dir,
        params=params.validation,
        now=parse_now(now),
    )
    if report.success:
        typer.echo(f"{report.summary()} in {report.statistics.get('duration_s', 0)} s")
        return
    for line in report.failure_lines():
        typer.echo(line)
    typer.echo(report.summary())
    typer.echo(f"quarantined: {report.quarantine_path}")
    typer.echo(f"result: {report.result_path}")
    raise typer.Exit(1)


def register(app: typer.Typer, data_app: typer.Typer) -> None:
    """Add ``recops validate``."""
    app.command("validate")(validate_command)
