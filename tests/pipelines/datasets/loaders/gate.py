"""Run the validation gate over landing batches the way publish does: in batch order, each one judged
against the batches "published" before it (copied into a data folder), with the default params."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

from pipelines.params import ValidateParams
from pipelines.validate import ValidationReport, validate_batch

#: A "now" after every test data set, so the not-in-the-future check never depends on the clock.
NOW = datetime(2030, 1, 1, tzinfo=UTC)


def gate_in_order(
    batches: list[Path], work: Path, params: ValidateParams | None = None
) -> list[ValidationReport]:
    """Validate ``batches`` in name order; every batch that passes is copied into ``work/data``."""
    data, quarantine = work / "data", work / "quarantine"
    data.mkdir(parents=True, exist_ok=True)
    reports = []
    for batch in sorted(batches, key=lambda p: p.name):
        report = validate_batch(
            batch, data_dir=data, quarantine_dir=quarantine, params=params or ValidateParams(), now=NOW
        )
        reports.append(report)
        if report.success:
            shutil.copytree(batch, data / batch.name)
    return reports


def failures(reports: list[ValidationReport]) -> list[str]:
    """Every failure line of every report, prefixed by its batch id (empty when all passed)."""
    return [f"{r.batch_id}: {line}" for r in reports for line in r.failure_lines()]
