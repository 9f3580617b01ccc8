"""The one event and catalogue schema, shared by loaders, the generator, GX suites, features and the service.

A *batch* is a folder holding ``events.parquet`` and ``catalog.parquet`` (``.csv`` accepted on input).
Ids are strings everywhere (real data uses ints, UUIDs or hashes); timestamps are timezone-aware UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pandas as pd

from core.errors import RecopsError

EVENT_TYPES: Final[tuple[str, ...]] = ("view", "click", "add_to_cart", "purchase")

EVENTS_FILE: Final = "events"
CATALOG_FILE: Final = "catalog"


@dataclass(frozen=True)
class Column:
    """One column of a table: its name, pandas dtype and whether it may hold nulls."""

    name: str
    dtype: str
    nullable: bool = False


EVENT_COLUMNS: Final[tuple[Column, ...]] = (
    Column("event_id", "string"),
    Column("user_id", "string"),
    Column("item_id", "string"),
    Column("event_type", "string"),
    Column("ts", "datetime64[us, UTC]"),
    Column("session_id", "string"),
    Column("price", "float64", nullable=True),
    Column("quantity", "Int64", nullable=True),
)

CATALOG_COLUMNS: Final[tuple[Column, ...]] = (
    Column("item_id", "string"),
    Column("category", "string"),
    Column("brand", "string"),
    Column("price", "float64", nullable=True),  # unknown in some public datasets
    Column("in_stock", "bool"),
    Column("created_at", "datetime64[us, UTC]"),
)

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
        mapping = {"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False}
        unknown = sorted(set(lowered.dropna().unique()) - set(mapping))
        if unknown:
            raise ValueError(f"not a boolean: {unknown[:3]}")
        return lowered.map(mapping).astype(bool)
    if dtype == "Int64":
        numeric = pd.to_numeric(series, errors="raise")
        return numeric.astype("Int64")
    return pd.to_numeric(series, errors="raise").astype(pd.api.types.pandas_dtype(dtype))


def to_utc(series: pd.Series) -> pd.Series:
    """Parse timestamps into UTC (naive values are taken as UTC); raise on anything unparseable."""
    if pd.api.types.is_numeric_dtype(series):
        raise ValueError("numeric values where timestamps were expected (give them as datetimes or ISO text)")
    parsed = pd.to_datetime(series, utc=True, errors="raise", format="ISO8601")
    return parsed.astype("datetime64[us, UTC]")


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
