"""What the gate reports: one :class:`Outcome` per evaluated item, and the :class:`ValidationReport`."""

from __future__ import annotations

import html
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

Source = Literal["gx", "check", "guard"]


def shorten(text: str, limit: int = 60) -> str:
    """``text`` cut to ``limit`` characters (values may be megabytes long)."""
    if len(text) > limit:
        return f"{text[:limit]}…(+{len(text) - limit} chars)"
    return text


def show(value: object, limit: int = 60) -> str:
    """A value for a message: text quoted (so blanks, tabs and formula prefixes show), others as ``str``."""
    return shorten(repr(value) if isinstance(value, str) else str(value), limit)


@dataclass(frozen=True)
class Outcome:
    """The result of one expectation or check on one table.

    Attributes:
        table: ``events``, ``catalog`` or ``batch``.
        check_id: the item's id in its suite (e.g. ``not_null.user_id``).
        expectation: the GX expectation type or recops check type.
        column: the column checked, if any.
        success: whether the item passed.
        detail: one short line for a person.
        unexpected_count: rows that failed (``None`` for table-level items).
        rows: 0-based positions of the failing rows in the table as read.
        source: ``gx`` (Great Expectations), ``check`` (recops check) or ``guard`` (no-silent-pass guard).
    """

    table: str
    check_id: str
    expectation: str
    column: str | None
    success: bool
    detail: str
    unexpected_count: int | None = None
    rows: tuple[int, ...] = ()
    source: Source = "gx"

    def failure(self) -> Failure:
        return Failure(
            table=self.table,
            expectation=self.expectation,
            column=self.column,
            detail=self.detail,
            unexpected_count=self.unexpected_count,
            check_id=self.check_id,
        )


@dataclass(frozen=True)
class Failure:
    """One failed expectation or check, as shown to people and returned to callers."""

    table: str
    expectation: str
    column: str | None
    detail: str
    unexpected_count: int | None
    check_id: str

    def line(self) -> str:
        """``FAIL <expectation> <table>.<column>: <detail> (<n> rows)``."""
        where = f"{self.table}.{self.column}" if self.column else self.table
        rows = f" ({self.unexpected_count} rows)" if self.unexpected_count is not None else ""
        return f"FAIL {self.expectation} {where}: {self.detail}{rows}"


@dataclass(frozen=True)
class ValidationReport:
    """The gate's verdict on one batch.

    Attributes:
        batch_id: the batch folder name.
        success: True only if every evaluated item passed and the no-silent-pass guards hold.
        failures: every failed item, in evaluation order.
        statistics: ``evaluated_expectations``, ``successful_expectations``, ``unsuccessful_expectations``,
            ``skipped_expectations``, ``gx_expectations``, ``recops_checks``, ``events_rows``,
            ``catalog_rows`` (ints) and ``duration_s`` (float).
        quarantine_path: ``quarantine_dir/<batch_id>`` when the batch failed, else ``None``.
        result_path: the result JSON inside the quarantine folder when failed, else ``None``.
        skipped: ids of items not evaluated in this run, with the reason.
        suite_versions: ``{suite name: version}`` of the suites used.
    """

    batch_id: str
    success: bool
    failures: tuple[Failure, ...]
    statistics: dict[str, float | int]
    quarantine_path: Path | None = None
    result_path: Path | None = None
    skipped: tuple[str, ...] = ()
    suite_versions: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        """One line: verdict, evaluated items and rows."""
        s = self.statistics
        verdict = "passed" if self.success else f"FAILED ({len(self.failures)} failed)"
        return (
            f"batch {self.batch_id} {verdict}: {s.get('evaluated_expectations', 0)} expectations evaluated, "
            f"{s.get('events_rows', 0)} events, {s.get('catalog_rows', 0)} catalogue rows"
        )

    def failure_lines(self) -> list[str]:
        return [f.line() for f in self.failures]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (paths as strings)."""
        out = asdict(self)
        out["quarantine_path"] = str(self.quarantine_path) if self.quarantine_path else None
        out["result_path"] = str(self.result_path) if self.result_path else None
        out["failures"] = [asdict(f) for f in self.failures]
        out["skipped"] = list(self.skipped)
        return out


def render_summary_html(report: ValidationReport, outcomes: list[Outcome], pages: list[str]) -> str:
    """A self-contained HTML page listing every item's outcome, linking the GX Data Docs pages."""
    esc = html.escape
    rows = []
    for o in outcomes:
        status = "pass" if o.success else "FAIL"
        count = "" if o.unexpected_count is None else str(o.unexpected_count)
        rows.append(
            f"<tr class='{status.lower()}'><td>{status}</td><td>{esc(o.table)}</td><td>{esc(o.check_id)}</td>"
            f"<td>{esc(o.expectation)}</td><td>{esc(o.column or '')}</td><td>{esc(count)}</td>"
            f"<td>{esc(shorten(o.detail, 300))}</td></tr>"
        )
    links = "".join(f"<li><a href='{esc(p)}'>{esc(p)}</a></li>" for p in pages)
    stats = "".join(f"<li>{esc(k)}: {esc(str(v))}</li>" for k, v in report.statistics.items())
    verdict = "passed" if report.success else "failed"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>recops validation {esc(report.batch_id)}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}}
tr.fail td{{background:#fde2e2}}tr.pass td{{background:#e6f4ea}}</style></head>
<body><h1>Batch {esc(report.batch_id)}: validation {verdict}</h1>
<ul>{stats}</ul>
<h2>Great Expectations Data Docs</h2><ul>{links or "<li>(none rendered)</li>"}</ul>
<h2>Expectations and checks</h2>
<table><tr><th>status</th><th>table</th><th>id</th><th>expectation</th><th>column</th><th>unexpected rows</th>
<th>detail</th></tr>
{"".join(rows)}
</table></body></html>
"""
