"""recops checks: the per-value and cross-table checks that GX core expectations do not cover.

Each check takes the prepared tables and its filled-in keyword arguments and returns one :class:`Outcome`
per column it judged (with the failing rows), or raises :class:`Skip` when it cannot apply to this batch.
They are listed by type in the suite files next to the GX expectations, so the suite stays the one list of
what the gate checks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import pandas as pd

from core.schema import Column
from pipelines.validation.frames import PreparedTable, stored_kind_fits
from pipelines.validation.report import Outcome, show


class Skip(Exception):
    """The check does not apply to this batch (the reason is recorded in the report)."""


@dataclass(frozen=True)
class CheckContext:
    """What a check may look at: its own table, the batch's other tables and the table's schema."""

    table: PreparedTable
    tables: dict[str, PreparedTable]
    schema: tuple[Column, ...]
    check_id: str


CheckFn = Callable[[CheckContext, dict[str, Any]], list[Outcome]]


def _rows(mask: pd.Series) -> tuple[int, ...]:
    return tuple(int(i) for i in np.flatnonzero(mask.to_numpy(dtype=bool)))


def _outcome(ctx: CheckContext, kind: str, column: str | None, mask: pd.Series, detail: str) -> Outcome:
    rows = _rows(mask)
    return Outcome(
        table=ctx.table.name,
        check_id=f"{ctx.check_id}.{column}" if column and not ctx.check_id.endswith(column) else ctx.check_id,
        expectation=kind,
        column=column,
        success=not rows,
        detail=detail if rows else "ok",
        unexpected_count=len(rows),
        rows=rows,
        source="check",
    )


def _example(text: pd.Series, mask: pd.Series) -> str:
    values = text[mask.to_numpy(dtype=bool)].drop_duplicates().head(3).tolist()
    return ", ".join(show(v, 40) for v in values)


def schema_types(ctx: CheckContext, _kwargs: dict[str, Any]) -> list[Outcome]:
    """Stored column types fit the schema (Parquet ints where ids must be text, text where bools must be)."""
    kind = "expect_column_values_to_be_of_schema_type"
    out = []
    for col in ctx.schema:
        if col.name not in ctx.table.stored_kinds:
            continue
        stored = ctx.table.stored_kinds[col.name]
        fits = stored_kind_fits(stored, col.dtype)
        mask = ctx.table.text[col.name].notna() & (not fits)
        out.append(_outcome(ctx, kind, col.name, mask, f"stored as {stored}; the schema type is {col.dtype}"))
    return out


def parseable(ctx: CheckContext, _kwargs: dict[str, Any]) -> list[Outcome]:
    """Every present value of a typed schema column parses as that type (mixed formats fail here)."""
    kind = "expect_column_values_to_be_parseable"
    out = []
    for col in ctx.schema:
        parsed = ctx.table.parsed.get(col.name)
        if parsed is None or col.dtype == "string":
            continue
        mask = parsed.unparseable
        detail = f"values that are not {parsed.expected}, e.g. {_example(ctx.table.text[col.name], mask)}"
        out.append(_outcome(ctx, kind, col.name, mask, detail))
    return out


def finite(ctx: CheckContext, _kwargs: dict[str, Any]) -> list[Outcome]:
    """Float columns hold no NaN or infinity (a missing value must be empty/null, not NaN)."""
    kind = "expect_column_values_to_be_finite"
    out = []
    for col in ctx.schema:
        parsed = ctx.table.parsed.get(col.name)
        if parsed is None or col.dtype != "float64":
            continue
        mask = parsed.non_finite
        out.append(
            _outcome(
                ctx,
                kind,
                col.name,
                mask,
                f"NaN or infinite values: {_example(ctx.table.text[col.name], mask)}",
            )
        )
    return out


def in_other_table(ctx: CheckContext, kwargs: dict[str, Any]) -> list[Outcome]:
    """Every value of ``column`` occurs in ``other_table.other_column`` (event items in the catalogue)."""
    column, other, other_column = (
        kwargs["column"],
        kwargs["other_table"],
        kwargs.get("other_column", kwargs["column"]),
    )
    reference = ctx.tables.get(other)
    if reference is None or other_column not in reference.text.columns:
        raise Skip(f"{other}.{other_column} is missing (reported by the {other} suite)")
    values = ctx.table.text[column]
    known = set(reference.text[other_column].dropna())
    mask = values.notna() & ~values.isin(known)
    detail = f"values not in {other}.{other_column}, e.g. {_example(values, mask)}"
    return [_outcome(ctx, "expect_column_values_to_be_in_other_table", column, mask, detail)]


def duplicate_rate(ctx: CheckContext, kwargs: dict[str, Any]) -> list[Outcome]:
    """The share of rows repeating an earlier row on ``column_list`` is at most ``max_rate``."""
    columns: list[str] = list(kwargs["column_list"])
    max_rate = float(kwargs["max_rate"])
    frame = pd.DataFrame(
        {c: ctx.table.typed[c] if c in ctx.table.typed.columns else ctx.table.text[c] for c in columns}
    )
    complete = frame.notna().all(axis=1)
    repeats = complete & frame.duplicated(keep="first")
    n = max(ctx.table.rows, 1)
    rate = float(repeats.sum()) / n
    ok = rate <= max_rate
    rows = () if ok else _rows(repeats)
    return [
        Outcome(
            table=ctx.table.name,
            check_id=ctx.check_id,
            expectation="expect_duplicate_rate_to_be_at_most",
            column=",".join(columns),
            success=ok,
            detail=f"duplicate rate {rate:.2%} on ({', '.join(columns)}) exceeds {max_rate:.2%}"
            if not ok
            else "ok",
            unexpected_count=int(repeats.sum()),
            rows=rows,
            source="check",
        )
    ]


CHECKS: Final[dict[str, CheckFn]] = {
    "expect_columns_to_have_schema_types": schema_types,
    "expect_column_values_to_be_parseable": parseable,
    "expect_column_values_to_be_finite": finite,
    "expect_column_values_to_be_in_other_table": in_other_table,
    "expect_duplicate_rate_to_be_at_most": duplicate_rate,
}
