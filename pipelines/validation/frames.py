"""Two views of a raw table that the expectations run on, and the per-value parse results behind them.

* The *text view* holds every column of the raw table as text (``None`` for a missing value), whatever the
  file type: CSV cells as written, Parquet values rendered (``NaN`` as ``"nan"``, timestamps in ISO form).
  Column-set, null, uniqueness, set, length and formula checks run on it, so they judge what was sent.
* The *typed view* holds the schema columns converted to their schema types; a value that does not parse
  becomes null there and is reported by the parse check instead (never a crash, never a silent pass).
  Range checks (time window, price > 0, quantity >= 1) run on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

import numpy as np
import pandas as pd
from pandas.api.types import infer_dtype

from core.schema import BOOL_TEXT, Column, parse_timestamp_text

_NAN_TEXT: Final = frozenset({"nan", "+nan", "-nan"})

#: Stored value kinds (``pandas.api.types.infer_dtype``) that can hold each schema type. Text is always
#: accepted here because its values are parsed one by one afterwards.
_COMPATIBLE_KINDS: Final[dict[str, frozenset[str]]] = {
    "string": frozenset({"string", "empty"}),
    "datetime64[us, UTC]": frozenset({"string", "empty", "datetime64", "datetime"}),
    "float64": frozenset({"string", "empty", "floating", "integer", "mixed-integer-float", "decimal"}),
    "Int64": frozenset({"string", "empty", "integer", "floating", "mixed-integer-float"}),
    "bool": frozenset({"string", "empty", "boolean"}),
}


@dataclass
class ParsedColumn:
    """One schema column converted from text.

    Attributes:
        values: the converted values (null where the text was null or did not parse).
        unparseable: rows whose text is present but is not a valid value of the schema type.
        non_finite: rows holding NaN or +-infinity (float columns only).
        expected: what a valid value looks like, for messages.
    """

    values: pd.Series
    unparseable: pd.Series
    non_finite: pd.Series
    expected: str


@dataclass
class PreparedTable:
    """A raw table with its text and typed views (all three share one 0..n-1 row index)."""

    name: str
    raw: pd.DataFrame
    text: pd.DataFrame
    typed: pd.DataFrame
    parsed: dict[str, ParsedColumn] = field(default_factory=dict)
    stored_kinds: dict[str, str] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return len(self.raw)


def prepare_table(name: str, raw: pd.DataFrame, columns: tuple[Column, ...]) -> PreparedTable:
    """Build the text and typed views of ``raw`` for the schema ``columns``."""
    raw = raw.reset_index(drop=True)
    raw.columns = [str(c) for c in raw.columns]
    text = pd.DataFrame({c: as_text(raw[c]) for c in raw.columns}, index=raw.index)
    typed = pd.DataFrame(index=raw.index)
    parsed: dict[str, ParsedColumn] = {}
    kinds: dict[str, str] = {}
    for col in columns:
        if col.name not in raw.columns:
            continue
        kinds[col.name] = infer_dtype(raw[col.name], skipna=True)
        parsed[col.name] = parse_column(text[col.name], col.dtype)
        typed[col.name] = parsed[col.name].values
    return PreparedTable(name=name, raw=raw, text=text, typed=typed, parsed=parsed, stored_kinds=kinds)


def stored_kind_fits(kind: str, dtype: str) -> bool:
    """Whether a stored column of value kind ``kind`` can hold the schema type ``dtype``."""
    return kind in _COMPATIBLE_KINDS.get(dtype, frozenset({"string", "empty"}))


def as_text(series: pd.Series) -> pd.Series:
    """The values of ``series`` as text (object dtype), ``None`` where a value is missing.

    A float NaN stored in an object column (how :mod:`pipelines.batch_io` keeps Parquet NaN apart from null)
    becomes ``"nan"``; in a float column NaN is pandas' null and stays missing.
    """
    if series.dtype == object:
        return pd.Series([_cell_text(v) for v in series], index=series.index, dtype=object)
    missing = series.isna().to_numpy()
    try:
        rendered = series.astype(str).astype(object)
    except (ValueError, OverflowError, NotImplementedError):
        # e.g. a timestamp far outside Python's datetime range: such cells become unparseable text, so the
        # parse check reports those rows instead of the gate crashing
        rendered = pd.Series([_safe_str(v) for v in series], index=series.index, dtype=object)
    rendered[missing] = None
    return rendered


def _safe_str(value: object) -> str:
    try:
        return str(value)
    except (ValueError, OverflowError, NotImplementedError):
        return f"<unrepresentable {type(value).__name__}>"


def _cell_text(value: object) -> str | None:
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float):
        return "nan" if np.isnan(value) else str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, str):
        return value
    return str(value)


def parse_column(text: pd.Series, dtype: str) -> ParsedColumn:
    """Convert one text column to the schema type ``dtype``; never raises on bad values."""
    present = text.notna()
    nothing = pd.Series(False, index=text.index)
    if dtype.startswith("datetime64"):
        return _parse_timestamps(text, present, nothing)
    if dtype in ("float64", "Int64"):
        return _parse_numbers(text, present, integer=dtype == "Int64")
    if dtype == "bool":
        lowered = text.where(present).str.strip().str.lower()
        values = lowered.map(BOOL_TEXT).astype(object)
        values = values.where(values.notna(), None)
        return ParsedColumn(values, present & values.isna(), nothing, "a boolean (true/false/1/0/yes/no/t/f)")
    return ParsedColumn(text, nothing, nothing, "text")


def _parse_timestamps(text: pd.Series, present: pd.Series, nothing: pd.Series) -> ParsedColumn:
    values = parse_timestamp_text(text.where(present))  # the schema's rule, shared with the loaders
    return ParsedColumn(values, present & values.isna(), nothing, "an ISO-8601 date or timestamp")


def _parse_numbers(text: pd.Series, present: pd.Series, *, integer: bool) -> ParsedColumn:
    stripped = text.where(present).str.strip()
    numbers = pd.to_numeric(stripped, errors="coerce").astype(float)
    nan_text = stripped.str.lower().isin(_NAN_TEXT)
    infinite = pd.Series(np.isinf(numbers.to_numpy()), index=text.index)
    non_finite = present & (nan_text | infinite)
    finite = numbers.where(~infinite)
    unparseable = present & numbers.isna() & ~nan_text
    if integer:
        fractional = finite.notna() & (finite != np.floor(finite.fillna(0)))
        unparseable = unparseable | fractional | non_finite
        finite = finite.where(~fractional)
        return ParsedColumn(finite, unparseable, pd.Series(False, index=text.index), "an integer")
    return ParsedColumn(finite, unparseable, non_finite, "a number")
