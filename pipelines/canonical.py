"""The canonical form of a published batch: schema dtypes, rows sorted on every column, fixed Parquet bytes.

The same content always gives the same bytes (and so the same DVC hash), whatever the row order or file
format of the landed batch. :func:`content_hash` identifies a batch's content independently of encoding,
so publishing the same content twice is recognised as a no-op.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd

from core.errors import RecopsError
from core.schema import (
    CATALOG_COLUMN_NAMES,
    CATALOG_FILE,
    EVENT_COLUMN_NAMES,
    EVENTS_FILE,
    batch_file,
    coerce_catalog,
    coerce_events,
)
from pipelines.batch_io import read_table
from pipelines.batch_io import write_parquet as _write_parquet
from pipelines.datastore import read_published_table

#: Sort keys of the canonical form: every column, so ties are identical rows and order is total.
EVENT_SORT: tuple[str, ...] = (
    "ts",
    "event_id",
    *[c for c in EVENT_COLUMN_NAMES if c not in ("ts", "event_id")],
)
CATALOG_SORT: tuple[str, ...] = CATALOG_COLUMN_NAMES


# ------------------------------------------------------------------------------------------- canonical form


def canonical_events(df: pd.DataFrame) -> pd.DataFrame:
    """Events with the schema's columns and dtypes, sorted on every column (stable, total order)."""
    events = coerce_events(df)
    return events.sort_values(list(EVENT_SORT), kind="mergesort", na_position="last").reset_index(drop=True)


def canonical_catalog(df: pd.DataFrame) -> pd.DataFrame:
    """Catalogue with the schema's columns and dtypes, sorted on every column (item id first)."""
    catalog = coerce_catalog(df)
    return catalog.sort_values(list(CATALOG_SORT), kind="mergesort", na_position="last").reset_index(
        drop=True
    )


def read_batch(batch_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The canonical events and catalogue of a batch folder (``.parquet`` or ``.csv`` files)."""
    if batch_dir.is_file():
        raise RecopsError(
            f"{batch_dir} is a file; a batch folder (holding events and catalog files) is expected"
        )
    if not batch_dir.is_dir():
        raise RecopsError(f"batch folder not found: {batch_dir}")
    # The gate's reader: unreadable files are clear `BadBatchFile` errors, CSV cells stay text until coerced.
    events = canonical_events(read_table(batch_file(batch_dir, EVENTS_FILE)))
    catalog = canonical_catalog(read_table(batch_file(batch_dir, CATALOG_FILE)))
    return events, catalog


def table_hash(df: pd.DataFrame) -> str:
    """SHA-256 of a table's column names, dtypes and values (row order matters, index does not)."""
    digest = hashlib.sha256()
    for name, dtype in df.dtypes.items():
        digest.update(f"{name}:{dtype};".encode())
    digest.update(str(len(df)).encode())
    if len(df):
        digest.update(pd.util.hash_pandas_object(df, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def content_hash(events: pd.DataFrame, catalog: pd.DataFrame) -> str:
    """One hash for a canonical batch: equal iff both canonical tables are equal."""
    return hashlib.sha256(f"{table_hash(events)}:{table_hash(catalog)}".encode()).hexdigest()


def write_parquet(df: pd.DataFrame, path: Path, *, tmp_dir: Path | None = None) -> None:
    """Write ``df`` atomically with fixed pyarrow options (same frame and library versions -> same bytes).

    ``tmp_dir`` (same filesystem) holds the temporary file, e.g. the staging folder beside ``data/``.
    """
    _write_parquet(df, path, tmp_dir=tmp_dir)


def write_canonical_batch(folder: Path, events: pd.DataFrame, catalog: pd.DataFrame) -> None:
    """Write canonical ``events.parquet`` and ``catalog.parquet`` into an existing ``folder``."""
    write_parquet(events, folder / f"{EVENTS_FILE}.parquet")
    write_parquet(catalog, folder / f"{CATALOG_FILE}.parquet")


def published_content_hash(folder: Path) -> str | None:
    """Content hash of a published batch folder, or ``None`` if it is missing or unreadable."""
    try:
        events = canonical_events(read_published_table(folder / f"{EVENTS_FILE}.parquet"))
        catalog = canonical_catalog(read_published_table(folder / f"{CATALOG_FILE}.parquet"))
    except (OSError, ValueError, RecopsError):
        return None
    return content_hash(events, catalog)
