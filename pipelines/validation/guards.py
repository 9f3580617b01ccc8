"""No-silent-pass guards: conditions under which GX would report success although nothing was checked.

GX passes a suite with zero expectations (great_expectations#3494), reports an expectation that raised as
merely unsuccessful (``exception_info.raised_exception``), and a skipped column expectation leaves no trace.
Each guard returns failing :class:`Outcome` objects (``source="guard"``) that fail the batch.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from pipelines.validation.report import Outcome

COLUMNS_EXPECTATION = "expect_table_columns_to_match_set"


def _guard(table: str, check_id: str, detail: str, column: str | None = None) -> Outcome:
    return Outcome(
        table=table,
        check_id=check_id,
        expectation="recops_no_silent_pass",
        column=column,
        success=False,
        detail=detail,
        source="guard",
    )


def suite_run_failures(table: str, view: str, expected: int, result: Any) -> list[Outcome]:
    """Failures when a GX run evaluated nothing, fewer expectations than submitted, or did not run.

    Args:
        table: table name, for the messages.
        view: ``text`` or ``typed``.
        expected: number of expectations submitted in the suite.
        result: the GX ``ExpectationSuiteValidationResult`` (or ``None`` if the run produced none).
    """
    check_id = f"guard.{view}"
    if result is None:
        return [_guard(table, check_id, f"the {view} suite produced no result")]
    statistics = getattr(result, "statistics", None) or {}
    evaluated = int(statistics.get("evaluated_expectations") or 0)
    if evaluated == 0:
        return [_guard(table, check_id, f"GX evaluated 0 expectations in the {view} suite (a silent pass)")]
    if evaluated != expected or len(getattr(result, "results", [])) != expected:
        return [_guard(table, check_id, f"GX evaluated {evaluated} of the {expected} expectations submitted")]
    return []


def evaluated_failures(outcomes: Sequence[Outcome]) -> list[Outcome]:
    """A failure when no expectation or check was evaluated at all."""
    if any(o.source != "guard" for o in outcomes):
        return []
    return [_guard("batch", "guard.evaluated", "no expectation or check was evaluated (a silent pass)")]


def missing_column_failures(
    table: str, required: Iterable[str], present: Iterable[str], outcomes: Sequence[Outcome]
) -> list[Outcome]:
    """A failure per missing required column, unless the column-set expectation already failed for it."""
    missing = sorted(set(required) - set(present))
    reported = any(
        o.table == table and o.expectation == COLUMNS_EXPECTATION and not o.success for o in outcomes
    )
    if not missing or reported:
        return []
    return [
        _guard(table, "guard.required_columns", f"required column missing: {c}", column=c) for c in missing
    ]
