"""The validation gate: check a landed batch against the versioned suites, quarantine it when it fails.

:func:`validate_batch` is what the CLI (``recops validate``), the publish step and the Airflow task call.
It reads the batch raw (:mod:`pipelines.batch_io`), builds text and typed views
(:mod:`pipelines.validation.frames`), runs the GX suites loaded from ``pipelines/expectations/*.json`` plus
the recops checks, applies the no-silent-pass guards, and on failure writes
``quarantine_dir/<batch_id>/`` (:mod:`pipelines.validation.quarantine`). The landing folder is *copied*,
not moved: nothing is lost, and the landing folder stays as the producer left it until it is re-sent.
``data_dir`` is only read (volume history), never written.
"""

from __future__ import annotations

import math
import re
import statistics as stats
import time
from dataclasses import asdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from core.errors import RecopsError
from core.schema import (
    EVENT_TYPES,
    EVENTS_FILE,
    MAX_TEXT_LENGTH,
    NULL_TOKEN_REGEX,
    PRICE_MIN_EXCLUSIVE,
    QUANTITY_MIN,
    TABLE_COLUMNS,
    UNSAFE_TEXT_REGEX,
    Column,
)
from pipelines.batch_io import BadBatchFile, RawBatch, read_batch
from pipelines.datastore import published_batches
from pipelines.params import ValidateParams
from pipelines.validation import checks, guards, quarantine
from pipelines.validation.frames import PreparedTable, prepare_table
from pipelines.validation.report import Failure, Outcome, ValidationReport, render_summary_html
from pipelines.validation.suites import (
    EXPECTATIONS_DIR,
    TABLES,
    VIEWS,
    ItemSpec,
    SuiteSpec,
    build_gx_suite,
    fill_parameters,
    load_suite,
    note,
)

__all__ = [
    "BadBatchFile",
    "Failure",
    "ValidationFailed",
    "ValidationReport",
    "ensure_valid",
    "validate_batch",
]

SCHEMAS: Final = TABLE_COLUMNS
_DAY_ID = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class ValidationFailed(RecopsError):
    """A batch failed the gate (raised by :func:`ensure_valid`); exit code 1 like ``recops validate``."""

    exit_code = 1

    def __init__(self, report: ValidationReport) -> None:
        lines = "\n".join(report.failure_lines())
        super().__init__(f"{report.summary()}; quarantined at {report.quarantine_path}\n{lines}")
        self.report = report


def ensure_valid(report: ValidationReport) -> ValidationReport:
    """Return ``report`` if the batch passed, else raise :class:`ValidationFailed` (for publish / Airflow)."""
    if not report.success:
        raise ValidationFailed(report)
    return report


def validate_batch(
    batch_dir: Path,
    *,
    data_dir: Path,
    quarantine_dir: Path,
    params: ValidateParams,
    now: datetime | None = None,
    suites_dir: Path = EXPECTATIONS_DIR,
) -> ValidationReport:
    """Validate one landed batch; quarantine it if anything fails.

    Args:
        batch_dir: the batch folder (its name is the batch id).
        data_dir: published batches (read for the volume history only, never written).
        quarantine_dir: where ``<batch_id>/`` is written when the batch fails.
        params: the ``validate`` section of params.yaml.
        now: the current time (default: the clock); events after ``now + max_future_skew_minutes`` fail.
        suites_dir: folder of the suite JSON files (tests point it elsewhere).

    Returns:
        The report; ``success`` is False when any expectation, check or guard failed, and then
        ``quarantine_path``/``result_path`` point at the quarantine entry.

    Raises:
        BadBatchFile: a batch file cannot be read at all (nothing is quarantined).
        SuiteError: a suite file is missing or invalid.
        RecopsError: ``quarantine_dir`` lies inside ``data_dir``.
    """
    started = time.perf_counter()
    now = _as_utc(now) if now is not None else datetime.now(UTC)
    _refuse_quarantine_in_data(quarantine_dir, data_dir)
    suites = {table: load_suite(table, suites_dir) for table in TABLES}
    raw = read_batch(Path(batch_dir))
    _refuse_overwriting_the_batch(raw.batch_dir, quarantine_dir / raw.batch_id)
    tables = {name: prepare_table(name, getattr(raw, name), SCHEMAS[name]) for name in TABLES}
    parameters = run_parameters(raw, params, now=now, data_dir=data_dir)

    outcomes: list[Outcome] = []
    skipped: list[str] = []
    gx_results: dict[str, Any] = {}
    for name, suite in suites.items():
        table_parameters = {**parameters, "expected_columns": expected_columns(SCHEMAS[name], tables[name])}
        outcomes += _run_gx(suite, tables[name], table_parameters, skipped, gx_results)
        outcomes += _run_checks(suite, tables, table_parameters, skipped)
    for name in TABLES:
        required = [c.name for c in SCHEMAS[name] if not c.nullable]
        outcomes += guards.missing_column_failures(name, required, tables[name].raw.columns, outcomes)
    outcomes += guards.evaluated_failures(outcomes)

    evaluated = [o for o in outcomes if o.source != "guard"]
    failures = tuple(o.failure() for o in outcomes if not o.success)
    statistics: dict[str, float | int] = {
        "evaluated_expectations": len(evaluated),
        "successful_expectations": sum(o.success for o in evaluated),
        "unsuccessful_expectations": sum(not o.success for o in evaluated),
        "skipped_expectations": len(skipped),
        "gx_expectations": sum(o.source == "gx" for o in evaluated),
        "recops_checks": sum(o.source == "check" for o in evaluated),
        "events_rows": tables["events"].rows,
        "catalog_rows": tables["catalog"].rows,
    }
    versions = {s.name: s.version for s in suites.values()}
    report = ValidationReport(
        batch_id=raw.batch_id,
        success=not failures,
        failures=failures,
        statistics=statistics,
        skipped=tuple(skipped),
        suite_versions=versions,
    )
    if not report.success:
        report = _quarantine(report, raw, tables, outcomes, parameters, gx_results, quarantine_dir, started)
    statistics["duration_s"] = round(time.perf_counter() - started, 3)
    return report


def run_parameters(raw: RawBatch, params: ValidateParams, *, now: datetime, data_dir: Path) -> dict[str, Any]:
    """The values the suites' ``$PARAMETER`` references take for this batch (``None``: item skipped)."""
    window_start, window_end, window_source = batch_window(raw)
    volume = volume_bounds(data_dir, raw.batch_id, params)
    return {
        "event_types": list(EVENT_TYPES),
        "max_text_length": MAX_TEXT_LENGTH,
        "unsafe_text_regex": UNSAFE_TEXT_REGEX,
        "null_token_regex": NULL_TOKEN_REGEX,
        "price_min_exclusive": PRICE_MIN_EXCLUSIVE,
        "quantity_min": QUANTITY_MIN,
        "max_duplicate_rate": params.max_duplicate_rate,
        "now": now.isoformat(),
        "max_future_skew_minutes": params.max_future_skew_minutes,
        "latest_allowed_ts": now + timedelta(minutes=params.max_future_skew_minutes),
        "window_start": window_start,
        "window_end": window_end,
        "window_source": window_source,
        **volume,
    }


def batch_window(raw: RawBatch) -> tuple[datetime | None, datetime | None, str]:
    """The event-time window: ``manifest.json`` if it gives one, else the UTC day of a ``YYYY-MM-DD`` id."""
    if raw.window_start is not None or raw.window_end is not None:
        return raw.window_start, raw.window_end, "from manifest.json"
    if _DAY_ID.match(raw.batch_id):
        try:
            day = date.fromisoformat(raw.batch_id)
        except ValueError:
            return None, None, "none"
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        return start, start + timedelta(days=1), f"UTC day {raw.batch_id}"
    return None, None, "none"


def volume_bounds(data_dir: Path, batch_id: str, params: ValidateParams) -> dict[str, Any]:
    """Row-count bounds from the median event count of the trailing published batches.

    The bounds are ``volume_min_ratio`` and ``volume_max_ratio`` times the median. They are ``None`` (the
    check is skipped, with the reason in ``volume_skip_reason``) when there is no history, or when the
    median is below ``volume_floor_rows``: a day of 1 purchase against a median of 6 says nothing about a
    broken feed, it is what a sparse shop looks like.
    """
    out: dict[str, Any] = {
        "volume_min_rows": None,
        "volume_max_rows": None,
        "volume_median": None,
        "volume_history": 0,
        "volume_floor_rows": params.volume_floor_rows,
        "volume_skip_reason": _UNSET_REASONS["volume_min_rows"],
    }
    if params.volume_history_batches == 0:
        out["volume_skip_reason"] = "volume_history_batches is 0 (volume check off)"
        return out
    import pyarrow.parquet as pq

    from pipelines.feedback import is_feedback_batch  # feedback batches are judged among themselves

    feed = is_feedback_batch(batch_id)
    earlier = [
        p for p in published_batches(data_dir) if p.name < batch_id and is_feedback_batch(p.name) == feed
    ]
    counts = []
    for batch in earlier[-params.volume_history_batches :]:
        try:
            counts.append(pq.read_metadata(batch / f"{EVENTS_FILE}.parquet").num_rows)
        except (OSError, ValueError):  # an unreadable published file is the data layer's problem, not ours
            continue
    if not counts:
        return out
    median = float(stats.median(counts))
    out.update(volume_median=median, volume_history=len(counts))
    if median < params.volume_floor_rows:
        out["volume_skip_reason"] = (
            f"trailing median of {median:g} rows is below volume_floor_rows={params.volume_floor_rows}: "
            "too few rows for a volume check to mean anything"
        )
        return out
    out.update(
        volume_min_rows=math.ceil(params.volume_min_ratio * median),
        volume_max_rows=math.floor(params.volume_max_ratio * median),
        volume_skip_reason=None,
    )
    return out


def expected_columns(schema: tuple[Column, ...], table: PreparedTable) -> list[str]:
    """Required columns plus the optional ones this table has: the exact column set it must show."""
    present = set(table.raw.columns)
    return [c.name for c in schema if not c.nullable or c.name in present]


def _run_gx(
    suite: SuiteSpec,
    table: PreparedTable,
    parameters: dict[str, Any],
    skipped: list[str],
    gx_results: dict[str, Any],
) -> list[Outcome]:
    from pipelines.validation import gx_runner

    outcomes: list[Outcome] = []
    for view in VIEWS:
        frame = table.text if view == "text" else table.typed
        items: list[tuple[ItemSpec, dict[str, Any], str]] = []
        for spec in (s for s in suite.expectations if s.view == view):
            kwargs, unset = fill_parameters(spec.kwargs, parameters)
            reason = _skip_reason(spec, unset, frame.columns, parameters)
            if reason:
                skipped.append(f"{suite.table}.{spec.id}: {reason}")
            else:
                items.append((spec, kwargs, note(spec, parameters)))
        if not items:
            continue
        result = gx_runner.run_suite(
            f"{suite.table}_{view}", frame, build_gx_suite(f"{suite.table}.{view}", items)
        )
        outcomes += gx_runner.to_outcomes(suite.table, result)
        outcomes += guards.suite_run_failures(suite.table, view, len(items), result)
        gx_results[f"{suite.table}-{view}"] = result
    return outcomes


def _run_checks(
    suite: SuiteSpec, tables: dict[str, PreparedTable], parameters: dict[str, Any], skipped: list[str]
) -> list[Outcome]:
    outcomes: list[Outcome] = []
    for spec in suite.checks:
        fn = checks.CHECKS[spec.type]  # load_suite refused unknown check types
        kwargs, unset = fill_parameters(spec.kwargs, parameters)
        reason = _skip_reason(spec, unset, tables[suite.table].raw.columns, parameters)
        if reason:
            skipped.append(f"{suite.table}.{spec.id}: {reason}")
            continue
        context = checks.CheckContext(tables[suite.table], tables, SCHEMAS[suite.table], spec.id)
        try:
            outcomes += fn(context, kwargs)
        except checks.Skip as skip:
            skipped.append(f"{suite.table}.{spec.id}: {skip}")
        except Exception as exc:  # a check that breaks must fail the batch, never pass it
            outcomes.append(
                Outcome(
                    suite.table, spec.id, spec.type, None, False, f"check raised {type(exc).__name__}: {exc}"
                )
            )
    return outcomes


_UNSET_REASONS: Final = {
    "volume_min_rows": "no published batches before this one to compare the volume with",
    "volume_max_rows": "no published batches before this one to compare the volume with",
    "window_start": "no time window (batch id is not YYYY-MM-DD and manifest.json gives none)",
    "window_end": "no time window (batch id is not YYYY-MM-DD and manifest.json gives none)",
}


def _skip_reason(spec: ItemSpec, unset: list[str], columns: Any, parameters: dict[str, Any]) -> str:
    """Why an item does not apply to this batch ('' when it does)."""
    if unset:
        if unset[0].startswith("volume_") and parameters.get("volume_skip_reason"):
            return str(parameters["volume_skip_reason"])
        return _UNSET_REASONS.get(unset[0], f"parameter {unset[0]} has no value for this batch")
    absent = [c for c in spec.columns() if c not in columns]
    return f"column {', '.join(absent)} absent (see the column-set expectation)" if absent else ""


def _quarantine(
    report: ValidationReport,
    raw: RawBatch,
    tables: dict[str, PreparedTable],
    outcomes: list[Outcome],
    parameters: dict[str, Any],
    gx_results: dict[str, Any],
    quarantine_dir: Path,
    started: float,
) -> ValidationReport:
    from dataclasses import replace

    from pipelines.validation import gx_runner

    failed_rows: dict[str, dict[int, list[str]]] = {name: {} for name in TABLES}
    for o in outcomes:
        if not o.success and o.table in failed_rows:
            for row in o.rows:
                failed_rows[o.table].setdefault(row, []).append(o.check_id)
    unexpected = {
        name: quarantine.unexpected_rows(tables[name].text, rows)
        for name, rows in failed_rows.items()
        if rows
    }
    pages: dict[str, str] = {}
    for key, result in gx_results.items():
        gx_runner.trim_result(result)
        try:
            pages[f"{key}.html"] = gx_runner.render_data_docs(result)
        except Exception:  # the summary page still lists every outcome
            continue
    target = quarantine_dir / raw.batch_id
    report = replace(report, quarantine_path=target, result_path=target / quarantine.RESULT_FILE)
    report.statistics["duration_s"] = round(time.perf_counter() - started, 3)
    document = {
        "report": report.to_dict(),
        "parameters": parameters,
        "outcomes": [{k: v for k, v in asdict(o).items() if k != "rows"} for o in outcomes],
        "gx_results": {key: result.to_json_dict() for key, result in gx_results.items()},
    }
    pages["index.html"] = render_summary_html(report, outcomes, sorted(p for p in pages if p != "index.html"))
    quarantine.write_entry(
        quarantine_dir, raw.batch_id, files=raw.files, unexpected=unexpected, result=document, pages=pages
    )
    return report


def _refuse_quarantine_in_data(quarantine_dir: Path, data_dir: Path) -> None:
    q, d = quarantine_dir.resolve(), data_dir.resolve()
    if q == d or d in q.parents:
        raise RecopsError(
            f"quarantine folder {quarantine_dir} lies inside the data folder {data_dir}: refused"
        )


def _refuse_overwriting_the_batch(batch_dir: Path, entry: Path) -> None:
    batch, target = batch_dir.resolve(), entry.resolve()
    if batch == target or target in batch.parents:
        raise RecopsError(f"batch {batch_dir} lies inside its own quarantine entry {entry}: refused")


def _as_utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
