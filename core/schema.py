"""The one event and catalogue schema, shared by loaders, the generator, GX suites, features and the service.

A *batch* is a folder holding ``events.parquet`` and ``catalog.parquet`` (``.csv`` accepted on input).
Ids are strings everywhere (real data uses ints, UUIDs or hashes); timestamps are timezone-aware UTC.

The **column rules** are declared here once and used on both sides of the landing zone: the loaders and the
generator apply them when they write a batch, the validation gate (``pipelines/expectations/*.json``, whose
length, text and null-token items are expanded per column from :data:`TABLE_COLUMNS`) checks them when it
reads one, so a batch a loader writes always passes the gate on these rules.

* Text columns (``Column.text`` ``"id"`` or ``"label"``): at most :data:`MAX_TEXT_LENGTH` characters; no
  value a spreadsheet would run as a formula (:data:`UNSAFE_TEXT_REGEX`: a leading ``=``, ``+``, ``-``,
  ``@``, tab or carriage return, unless the whole value is a plain number such as ``-1``) and no value made
  only of blanks.
* Id columns (``"id"``): the usual null tokens (:data:`NULL_TOKENS`: ``NA``, ``N/A``, ``null``, ``None``,
  ``nan``, any case, and empty or blank text) mean *no value*, never an id called "NA".
* Prices are > :data:`PRICE_MIN_EXCLUSIVE` (a zero price says nothing), quantities >= :data:`QUANTITY_MIN`.
* Timestamps in text are ISO 8601 (:data:`TIMESTAMP_PATTERN`): a date, optionally with a time, fraction and
  offset; naive values are UTC.
* Booleans in text: :data:`BOOL_TEXT` (true/false, 1/0, yes/no, t/f, y/n), any case.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import pandas as pd

from core.errors import RecopsError

EVENT_TYPES: Final[tuple[str, ...]] = ("view", "click", "add_to_cart", "purchase")

EVENTS_FILE: Final = "events"
CATALOG_FILE: Final = "catalog"

#: Longest text accepted in an id, session, category or brand value.
MAX_TEXT_LENGTH: Final = 256
#: Text a spreadsheet would run as a formula (OWASP "CSV injection": a leading =, +, -, @, tab or carriage
#: return) unless the whole value is a plain number, or text made only of blanks. Python ``re`` syntax,
#: searched (``str.contains``) exactly as GX's ``expect_column_values_to_not_match_regex`` does.
UNSAFE_TEXT_REGEX: Final = r"^(?![+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?\Z)(?:[=+\-@\t\r]|\s+\Z)"
#: Values that mean "no value" in an id column (compared stripped and case-insensitively), besides empty text.
NULL_TOKENS: Final[frozenset[str]] = frozenset({"na", "n/a", "nan", "null", "none", "<na>"})
#: The null tokens (and empty or blank text) as one regex, for the gate.
NULL_TOKEN_REGEX: Final = r"(?i)^\s*(?:na|n/a|nan|null|none|<na>)?\s*\Z"
#: Event and catalogue prices must be greater than this.
PRICE_MIN_EXCLUSIVE: Final = 0.0
#: Event quantities must be at least this.
QUANTITY_MIN: Final = 1
#: ISO 8601 date, optionally with a time (minutes at least), fraction and offset.
TIMESTAMP_PATTERN: Final = (
    r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}(?::?\d{2})?)?)?"
)
#: Text spellings of booleans (after stripping and lower-casing).
BOOL_TEXT: Final[Mapping[str, bool]] = {
    "true": True, "false": False, "1": True, "0": False, "yes": True, "no": False,
    "t": True, "f": False, "y": True, "n": False, "1.0": True, "0.0": False,
}  # fmt: skip

TextKind = Literal["id", "label"]


@dataclass(frozen=True)
class Column:
    """One column of a table.

    Attributes:
        name: the column name.
        dtype: its pandas dtype.
        nullable: whether it may hold nulls (an absent nullable column is all nulls).
        text: the text rules it follows: ``"id"`` (identifier: length, safe text, null tokens are nulls) or
            ``"label"`` (free text such as a category: length and safe text); None for other columns.
    """

    name: str
    dtype: str
    nullable: bool = False
    text: TextKind | None = None


EVENT_COLUMNS: Final[tuple[Column, ...]] = (
    Column("event_id", "string", text="id"),
    Column("user_id", "string", text="id"),
    Column("item_id", "string", text="id"),
    Column("event_type", "string"),  # one of EVENT_TYPES
    Column("ts", "datetime64[us, UTC]"),
    Column("session_id", "string", text="id"),
    Column("price", "float64", nullable=True),
    Column("quantity", "Int64", nullable=True),
)

CATALOG_COLUMNS: Final[tuple[Column, ...]] = (
    Column("item_id", "string", text="id"),
    Column("category", "string", text="label"),
    Column("brand", "string", text="label"),
    Column("price", "float64", nullable=True),  # unknown in some public datasets
    Column("in_stock", "bool"),
    Column("created_at", "datetime64[us, UTC]"),
)

#: The columns of each table of a batch, by table name.
TABLE_COLUMNS: Final[Mapping[str, tuple[Column, ...]]] = {"events": EVENT_COLUMNS, "catalog": CATALOG_COLUMNS}

EVENT_COLUMN_NAMES: Final[tuple[str, ...]] = tuple(c.name for c in EVENT_COLUMNS)
CATALOG_COLUMN_NAMES: Final[tuple[str, ...]] = tuple(c.name for c in CATALOG_COLUMNS)
REQUIRED_EVENT_COLUMNS: Final[tuple[str, ...]] = tuple(c.name for c in EVENT_COLUMNS if not c.nullable)


class SchemaError(RecopsError, ValueError):
    """A table does not fit the schema; the message names every offending column."""


def _coerce(df: pd.DataFrame, columns: tuple[Column, ...], table: str) -> pd.DataFrame:
    missing = [c.name for c in columns if c.name not in df.columns and not c.nullable]
    if missing:
        raise SchemaError(f"{table}: missing required column(s): {', '.join(missing)}")
    out = pd.DataFrame(index=df.index)
    bad: list[str] = []
    for col in columns:
        if col.name not in df.columns:
            out[col.name] = pd.Series(None, index=df.index, dtype=col.dtype)  # NaN / <NA> / NaT
            continue
        try:
            out[col.name] = _convert(df[col.name], col.dtype)
        except (ValueError, TypeError, OverflowError) as exc:
            bad.append(f"{col.name} ({col.dtype}): {exc}".splitlines()[0][:200])
    if bad:
        raise SchemaError(f"{table}: column(s) cannot be parsed: " + "; ".join(bad))
    return out.reset_index(drop=True)


def _convert(series: pd.Series, dtype: str) -> pd.Series:
    if dtype.startswith("datetime64"):
        return to_utc(series)
    if dtype == "string":
        return series.astype("string")
    if dtype == "bool":
        if series.isna().any():
            raise ValueError("null values in a boolean column")
        if series.dtype == bool:
            return series
        lowered = series.astype("string").str.strip().str.lower()
        unknown = sorted(set(lowered.dropna().unique()) - set(BOOL_TEXT))
        if unknown:
            raise ValueError(f"not a boolean: {unknown[:3]}")
        return lowered.map(BOOL_TEXT).astype(bool)
    if dtype == "Int64":
        numeric = pd.to_numeric(series, errors="raise")
        return numeric.astype("Int64")
    return pd.to_numeric(series, errors="raise").astype(pd.api.types.pandas_dtype(dtype))


def to_utc(series: pd.Series) -> pd.Series:
    """Parse timestamps into UTC (naive values are taken as UTC); raise on anything unparseable.

    Datetime columns are converted; text must match :data:`TIMESTAMP_PATTERN` (the gate's rule).
    """
    if pd.api.types.is_numeric_dtype(series):
        raise ValueError("numeric values where timestamps were expected (give them as datetimes or ISO text)")
    if isinstance(series.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(series):
        parsed = pd.to_datetime(series, utc=True)
    else:
        present = series.notna()
        parsed = parse_timestamp_text(series)
        bad = present & parsed.isna()
        if bool(bad.any()):
            examples = ", ".join(repr(str(v)) for v in series[bad].drop_duplicates().head(3))
            raise ValueError(f"not ISO-8601 timestamps: {examples}")
    return parsed.astype("datetime64[us, UTC]")


def parse_timestamp_text(text: pd.Series) -> pd.Series:
    """Timestamps from text (``datetime64[us, UTC]``): NaT where a value is null or not ISO 8601.

    Values are stripped first; naive values are UTC.
    """
    values = text.astype("string").str.strip()
    well_formed = values.str.fullmatch(TIMESTAMP_PATTERN).fillna(False).astype(bool)
    parsed = pd.to_datetime(values.where(well_formed), utc=True, format="ISO8601", errors="coerce")
    return pd.Series(parsed, index=text.index).astype("datetime64[us, UTC]")


# --------------------------------------------------------------------------------------------- text rules


def text_columns(table: str, kinds: tuple[TextKind, ...] = ("id", "label")) -> tuple[str, ...]:
    """Names of the columns of ``table`` (``events`` or ``catalog``) that follow text rules of ``kinds``."""
    return tuple(c.name for c in TABLE_COLUMNS[table] if c.text in kinds)


def null_id_mask(values: pd.Series) -> pd.Series:
    """Rows whose id is missing: null, empty or blank text, or a null token such as ``NA`` or ``null``."""
    import pyarrow.compute as pc

    text = _arrow_text(values)
    first, last = pc.utf8_slice_codeunits(text, 0, 1), pc.utf8_slice_codeunits(text, -1)
    # Only short values, or values with something other than a letter or digit at either end, can match
    # the regex; it runs on those alone (the check stays exact, only cheaper).
    maybe = pc.or_(
        pc.less_equal(pc.utf8_length(text), 4),
        pc.or_(pc.invert(pc.utf8_is_alnum(first)), pc.invert(pc.utf8_is_alnum(last))),
    )
    return _search(values, text, maybe, NULL_TOKEN_REGEX, null=True)


def too_long_mask(values: pd.Series) -> pd.Series:
    """Rows whose text is longer than :data:`MAX_TEXT_LENGTH` characters (nulls are not)."""
    return (values.astype("string").str.len() > MAX_TEXT_LENGTH).fillna(False).astype(bool)


def unsafe_text_mask(values: pd.Series) -> pd.Series:
    """Rows holding formula or blank-only text (:data:`UNSAFE_TEXT_REGEX`; nulls are not)."""
    import pyarrow.compute as pc

    text = _arrow_text(values)
    first = pc.utf8_slice_codeunits(text, 0, 1)
    # the regex needs a formula character or a blank first: run it where the first character is neither a
    # letter nor a digit (the check stays exact, only cheaper)
    maybe = pc.invert(pc.utf8_is_alnum(first))
    return _search(values, text, maybe, UNSAFE_TEXT_REGEX, null=False)


def _arrow_text(values: pd.Series) -> Any:
    import pyarrow as pa

    return pa.array(values.astype("string[pyarrow]")).cast(pa.large_string())


def _search(values: pd.Series, text: Any, maybe: Any, regex: str, *, null: bool) -> pd.Series:
    """``re.search(regex)`` on the ``maybe`` rows (False elsewhere; a null row gives ``null``).

    ``re.search`` is what GX's ``expect_column_values_to_not_match_regex`` applies, so this mask and the
    gate agree value for value.
    """
    import numpy as np

    pattern = re.compile(regex)
    flags = np.asarray(maybe.fill_null(null).to_numpy(zero_copy_only=False), dtype=bool)
    rows = np.flatnonzero(flags)
    out = np.zeros(len(values), dtype=bool)
    out[rows] = [null if s is None else pattern.search(s) is not None for s in text.take(rows).to_pylist()]
    return pd.Series(out, index=values.index, dtype=bool)


def text_rule_problems(table: str, df: pd.DataFrame) -> list[str]:
    """Every text rule ``df`` (a schema table) breaks, one line per column and rule ([] when none).

    This is what the gate's length, formula and null-token expectations check, so a table without problems
    passes them.
    """
    problems: list[str] = []
    for col in TABLE_COLUMNS[table]:
        if col.text is None or col.name not in df.columns:
            continue
        values = df[col.name]
        checks = [(f"longer than {MAX_TEXT_LENGTH} characters", too_long_mask(values))]
        checks.append(("spreadsheet-formula or blank text", unsafe_text_mask(values)))
        if col.text == "id":
            checks.append(("missing (empty or a null token such as NA)", null_id_mask(values)))
        for what, mask in checks:
            if bool(mask.any()):
                examples = ", ".join(repr(_short(v)) for v in values[mask].drop_duplicates().head(3))
                problems.append(f"{table}.{col.name}: {int(mask.sum()):,} value(s) {what}, e.g. {examples}")
    return problems


def _short(value: object, limit: int = 40) -> str:
    text = "<null>" if value is None or value is pd.NA else str(value)
    return text if len(text) <= limit else text[:limit] + "..."


def coerce_events(df: pd.DataFrame) -> pd.DataFrame:
    """Return ``df`` with exactly the event columns, in order and with the schema's dtypes."""
    return _coerce(df, EVENT_COLUMNS, "events")


def coerce_catalog(df: pd.DataFrame) -> pd.DataFrame:
    """Return ``df`` with exactly the catalogue columns, in order and with the schema's dtypes."""
    return _coerce(df, CATALOG_COLUMNS, "catalog")


def batch_file(batch_dir: Path, name: str) -> Path:
    """The events or catalogue file of a batch: ``NAME.parquet`` if present, else ``NAME.csv``."""
    for suffix in (".parquet", ".csv"):
        candidate = batch_dir / f"{name}{suffix}"
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"batch {batch_dir} has no {name}.parquet or {name}.csv")
