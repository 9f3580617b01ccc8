"""Generic loader: any CSV/TSV or Parquet event log (and optional product table) into the recops schema.

A column mapping names the source column of each schema field, e.g.
``user_id=customer,item_id=sku,ts=time,event_type=action`` (``user_id``, ``item_id`` and ``ts`` are
required). Fields without a column are filled in:

* ``event_type``: the constant ``event_type`` argument (default ``purchase``); a mapped column may hold codes
  translated by ``event_type_map`` (e.g. ``{"0": "view", "1": "purchase"}``);
* ``event_id``: deterministic hash of (pseudonymised user, item, type, ts, repeat number), also for rows whose
  mapped event id is empty; repeated event ids are refused;
* ``session_id``: a user's events split by silences longer than 30 minutes (``<user>:<n>``), also for rows
  whose mapped session id is empty;
* ``price``, ``quantity``: null;
* catalogue (no ``catalog_path``): the items seen, category and brand ``"unknown"``, price null,
  ``in_stock`` True, ``created_at`` = first event of the item. With a catalogue file, only ``item_id`` must
  be mapped; items of the events missing from it are added the same way, and a missing or empty
  ``created_at`` is the first event of the item (the first event overall for items never seen).

Anonymous rows: a user id that is empty or a null token (``NA``, ``N/A``, ``null``, ``None``, ``nan``) is
no user id. ``anonymous="auto"`` (the default) gives such rows a user per session when ``session_id`` is
mapped and drops them otherwise; ``session``, ``drop`` and ``refuse`` choose one way. Repeats: rows that
repeat (user, item, type, ts) at coarse time resolution (dates without times, whole minutes) are merged
into one event with the summed quantity (``repeats="auto"``; ``sum`` and ``keep`` choose one way). Both
are counted in the :class:`~pipelines.datasets.loaders.finishing.LoadNotes` passed as ``notes``.

Files without timestamps (the SASRec / BERT4Rec data files: ``user item`` per line, whitespace separated,
no header, each user's rows already in chronological order): ``header=("user", "item")`` names the columns
of a file without a header line, ``sep=WHITESPACE`` splits on runs of spaces and tabs, and
``ts_from_row_order=True`` (``--ts-from-row-order``; ``ts`` must not be mapped) synthesises the clock: a
user's *k*-th row in file order (``k`` = 0, 1, ...) happens at :data:`ROW_ORDER_START` (2000-01-01T00:00Z)
+ ``k`` x ``row_step_seconds`` (default 60 s). Per user, time strictly increases in file order, so the
leave-one-out split by time is the split by file order; every user starts at the same instant, so such data
is meant for ``features.protocol: loo`` (a global temporal split says nothing about it). The default step
is above the features step's ``dedup_seconds`` (two rows on one item stay two events) and below its
30-minute session gap (a user's rows form one session, one sequence).

Timestamps: ``ts_unit`` ``iso`` (ISO-8601 text, a date alone is midnight, naive = UTC; Parquet datetime
columns as they are), ``s`` or ``ms`` (unix epoch numbers); the catalogue's ``created_at`` uses the same
unit. Every value is checked under the schema's column rules (see
:mod:`pipelines.datasets.loaders.parsing`), the ones the validation gate checks: missing item ids or
timestamps, unparseable or mixed timestamp formats, NaN/infinite/negative prices, fractional quantities,
unknown event types, over-long text and spreadsheet-formula text all raise :class:`DataFileError` naming
the file and column; zero prices and quantities are recorded as unknown. Duplicate item ids in the
catalogue file are refused.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

import numpy as np
import pandas as pd

from core.schema import EVENT_TYPES
from pipelines.datasets.loaders.common import (
    SESSION_GAP_MINUTES,
    AnonymousPolicy,
    DataFileError,
    LoadNotes,
    RepeatPolicy,
    finish,
    parse_bools,
    parse_event_types,
    parse_ids,
    parse_prices,
    parse_quantities,
    parse_text,
    parse_timestamps,
    read_table,
)
from pipelines.datasets.loaders.parsing import TS_MAX

EVENT_FIELDS: Final = (
    "user_id",
    "item_id",
    "ts",
    "event_type",
    "session_id",
    "price",
    "quantity",
    "event_id",
)
REQUIRED_EVENT_FIELDS: Final = ("user_id", "item_id", "ts")
CATALOG_FIELDS: Final = ("item_id", "category", "brand", "price", "in_stock", "created_at")
REQUIRED_CATALOG_FIELDS: Final = ("item_id",)
DEFAULT_EVENT_TYPE: Final = "purchase"
#: ``sep`` value that splits text rows on runs of spaces and tabs (the SASRec / BERT4Rec file format).
WHITESPACE: Final = "whitespace"
#: The synthetic clock of ``ts_from_row_order``: a user's first row happens here...
ROW_ORDER_START: Final = pd.Timestamp("2000-01-01", tz="UTC")
#: ...and each later row of the user this many seconds after the previous one.
ROW_STEP_SECONDS: Final = 60.0


def parse_mapping(
    text: str, *, allowed: tuple[str, ...], required: tuple[str, ...], option: str = "--map"
) -> dict[str, str]:
    """Parse ``field=COLUMN,field=COLUMN`` into ``{field: column}``.

    Raises:
        DataFileError: malformed pairs, unknown or repeated fields, or required fields missing.
    """
    mapping: dict[str, str] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        field, sep, column = part.partition("=")
        field, column = field.strip(), column.strip()
        if not sep or not field or not column:
            raise DataFileError(f"{option}: {part!r} is not FIELD=COLUMN")
        if field not in allowed:
            raise DataFileError(f"{option}: unknown field {field!r}; fields: {', '.join(allowed)}")
        if field in mapping:
            raise DataFileError(f"{option}: field {field!r} is mapped twice")
        mapping[field] = column
    missing = [f for f in required if f not in mapping]
    if missing:
        raise DataFileError(f"{option}: required field(s) not mapped: {', '.join(missing)}")
    return mapping


def parse_event_type_map(text: str) -> dict[str, str]:
    """Parse ``"0=view,1=purchase"`` into ``{"0": "view", "1": "purchase"}`` (targets must be event types)."""
    mapping: dict[str, str] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        raw, sep, target = part.partition("=")
        raw, target = raw.strip(), target.strip().lower()
        if not sep or not raw:
            raise DataFileError(f"--event-type-map: {part!r} is not VALUE=TYPE")
        if target not in EVENT_TYPES:
            raise DataFileError(
                f"--event-type-map: {target!r} is not an event type ({', '.join(EVENT_TYPES)})"
            )
        mapping[raw] = target
    return mapping


def load_generic(
    path: Path,
    *,
    mapping: Mapping[str, str],
    key: str | None = None,
    event_type: str | None = None,
    event_type_map: Mapping[str, str] | None = None,
    catalog_path: Path | None = None,
    catalog_mapping: Mapping[str, str] | None = None,
    ts_unit: str = "iso",
    encoding: str | None = None,
    session_gap_minutes: float = SESSION_GAP_MINUTES,
    anonymous: AnonymousPolicy = "auto",
    repeats: RepeatPolicy = "auto",
    notes: LoadNotes | None = None,
    header: Sequence[str] | None = None,
    sep: str | None = None,
    ts_from_row_order: bool = False,
    row_step_seconds: float = ROW_STEP_SECONDS,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Load an event file (and optionally a catalogue file) as schema ``(events, catalog)``.

    Args:
        path: the events file (CSV/TSV with a header, or Parquet).
        mapping: schema field -> source column (see :data:`EVENT_FIELDS`).
        key: pseudonymisation key for user ids; None keeps the raw ids.
        event_type: the type of every event when no ``event_type`` column is mapped (default purchase).
        event_type_map: raw value -> event type, for a mapped ``event_type`` column.
        catalog_path: optional product table.
        catalog_mapping: schema field -> column of the product table (see :data:`CATALOG_FIELDS`).
        ts_unit: ``iso``, ``s`` or ``ms``.
        encoding: text encoding of CSV files (default UTF-8).
        session_gap_minutes: silence that starts a new session when no session column is mapped.
        anonymous: rows without a user id: ``auto``, ``session``, ``drop`` or ``refuse`` (module docstring).
        repeats: rows repeating (user, item, type, ts): ``auto``, ``sum`` or ``keep`` (module docstring).
        notes: receives the counts of anonymous and merged rows, when given.
        header: column names of a text file without a header line (its first line is data).
        sep: delimiter of a text file (default: sniffed among ``, ; TAB |``); :data:`WHITESPACE` splits on
            runs of spaces and tabs.
        ts_from_row_order: the file has no timestamps and each user's rows are in chronological order:
            synthesise them (module docstring); ``ts`` must then not be mapped.
        row_step_seconds: seconds between a user's consecutive rows under ``ts_from_row_order``.

    Raises:
        DataFileError: bad mapping, missing columns, unreadable files or bad values (message names the
            file and the column).
    """
    path = Path(path)
    mapping = _check_mapping(mapping, EVENT_FIELDS, required_event_fields(ts_from_row_order), "--map")
    if ts_from_row_order and "ts" in mapping:
        raise DataFileError("--ts-from-row-order synthesises the timestamps: do not map ts as well")
    if not row_step_seconds > 0 or not math.isfinite(row_step_seconds):
        raise DataFileError(f"--row-step-seconds must be a positive number, got {row_step_seconds}")
    if "event_type" in mapping and event_type is not None:
        raise DataFileError("give either an event_type column in --map or --event-type, not both")
    constant_type = (event_type or DEFAULT_EVENT_TYPE).strip().lower()
    if constant_type not in EVENT_TYPES:
        raise DataFileError(f"--event-type {event_type!r} is not one of {', '.join(EVENT_TYPES)}")
    raw = _read_mapped(path, mapping, encoding, header=header, sep=sep)

    def col(field: str) -> pd.Series:
        return raw[mapping[field]]

    user_id = parse_ids(col("user_id"), mapping["user_id"], path, allow_missing=True)
    events = pd.DataFrame(
        {
            "user_id": user_id,
            "item_id": parse_ids(col("item_id"), mapping["item_id"], path),
            "ts": (
                row_order_clock(user_id, row_step_seconds, path)
                if ts_from_row_order
                else parse_timestamps(col("ts"), mapping["ts"], path, unit=ts_unit)
            ),
        }
    )
    if "event_type" in mapping:
        events["event_type"] = parse_event_types(
            col("event_type"), mapping["event_type"], path, event_type_map
        )
    else:
        events["event_type"] = constant_type
    if "session_id" in mapping:
        events["session_id"] = parse_ids(col("session_id"), mapping["session_id"], path, allow_missing=True)
    if "event_id" in mapping:
        events["event_id"] = parse_ids(col("event_id"), mapping["event_id"], path, allow_missing=True)
    if "price" in mapping:
        events["price"] = parse_prices(col("price"), mapping["price"], path)
    if "quantity" in mapping:
        events["quantity"] = parse_quantities(col("quantity"), mapping["quantity"], path)

    catalog = None
    if catalog_path is not None:
        catalog = _load_catalog(
            Path(catalog_path), catalog_mapping or {"item_id": "item_id"}, ts_unit, encoding
        )
    elif catalog_mapping:
        raise DataFileError("--catalog-map needs --catalog FILE")
    return finish(
        events,
        catalog,
        key=key,
        session_gap_minutes=session_gap_minutes,
        anonymous=anonymous,
        repeats=repeats,
        notes=notes,
        source=path,
    )


def required_event_fields(ts_from_row_order: bool = False) -> tuple[str, ...]:
    """The event fields ``--map`` must name (no ``ts`` when the clock comes from the row order)."""
    if ts_from_row_order:
        return tuple(f for f in REQUIRED_EVENT_FIELDS if f != "ts")
    return REQUIRED_EVENT_FIELDS


def row_order_clock(user_id: pd.Series, step_seconds: float, source: object) -> pd.Series:
    """Synthetic timestamps for rows in chronological order per user: a user's *k*-th row (file order, from
    0) at :data:`ROW_ORDER_START` + ``k`` x ``step_seconds``; rows without a user id count as one user.

    Raises:
        DataFileError: when a user has so many rows that the clock would pass 2100.
    """
    position = user_id.groupby(user_id.to_numpy(), sort=False, dropna=False).cumcount().to_numpy(np.int64)
    step_us = round(step_seconds * 1_000_000)
    limit_us = (TS_MAX - ROW_ORDER_START).value // 1000
    longest = int(position.max(initial=0))
    if longest * step_us >= limit_us:
        raise DataFileError(
            f"{source}: a user has {longest + 1:,} rows: at {step_seconds:g} s per row the synthetic clock "
            "would pass 2100; lower --row-step-seconds"
        )
    offsets = pd.to_timedelta(position * step_us, unit="us")
    return pd.Series(ROW_ORDER_START + offsets, index=user_id.index).astype("datetime64[us, UTC]")


def _check_mapping(
    mapping: Mapping[str, str], allowed: tuple[str, ...], required: tuple[str, ...], option: str
) -> dict[str, str]:
    unknown = [f for f in mapping if f not in allowed]
    if unknown:
        raise DataFileError(f"{option}: unknown field(s) {', '.join(unknown)}; fields: {', '.join(allowed)}")
    missing = [f for f in required if f not in mapping]
    if missing:
        raise DataFileError(f"{option}: required field(s) not mapped: {', '.join(missing)}")
    return dict(mapping)


def _read_mapped(
    path: Path,
    mapping: Mapping[str, str],
    encoding: str | None,
    *,
    header: Sequence[str] | None = None,
    sep: str | None = None,
) -> pd.DataFrame:
    names = [c.strip() for c in header] if header is not None else None
    if names is not None and (not names or not all(names) or len(set(names)) != len(names)):
        raise DataFileError(f"--header: give distinct, non-empty column names, got {list(header or [])}")
    raw = read_table(path, encoding=encoding, sep=r"\s+" if sep == WHITESPACE else sep, names=names)
    missing = [f"{column!r} (for {field})" for field, column in mapping.items() if column not in raw.columns]
    if missing:
        have = ", ".join(repr(str(c)) for c in list(raw.columns)[:20])
        raise DataFileError(
            f"{path}: mapped column(s) not in the file: {', '.join(missing)}; the file has: {have}"
        )
    return raw


def _load_catalog(path: Path, mapping: Mapping[str, str], ts_unit: str, encoding: str | None) -> pd.DataFrame:
    mapping = _check_mapping(mapping, CATALOG_FIELDS, REQUIRED_CATALOG_FIELDS, "--catalog-map")
    raw = _read_mapped(path, mapping, encoding)
    item_column = mapping["item_id"]
    catalog = pd.DataFrame({"item_id": parse_ids(raw[item_column], item_column, path)})
    duplicated = catalog["item_id"].duplicated(keep=False).to_numpy()
    if duplicated.any():
        examples = ", ".join(repr(v) for v in catalog["item_id"][duplicated].unique()[:3])
        raise DataFileError(
            f"{path}: column {item_column!r}: duplicate item id(s) {examples}; give one row per item"
        )
    for field in ("category", "brand"):
        if field in mapping:
            catalog[field] = parse_text(raw[mapping[field]], mapping[field], path)
    if "price" in mapping:
        catalog["price"] = parse_prices(raw[mapping["price"]], mapping["price"], path)
    if "in_stock" in mapping:
        catalog["in_stock"] = parse_bools(raw[mapping["in_stock"]], mapping["in_stock"], path)
    if "created_at" in mapping:
        column = raw[mapping["created_at"]]
        given = (column.notna() & (column.astype("string").str.strip() != "").fillna(False)).to_numpy(
            dtype=bool
        )
        # Empty cells mean "unknown": a placeholder keeps row numbers in messages right, then becomes NaT
        # (complete_catalog fills it with the item's first event).
        placeholder = "1970-01-01" if ts_unit == "iso" else "0"
        filled = column.astype(object).where(given, placeholder)
        parsed = parse_timestamps(filled, mapping["created_at"], path, unit=ts_unit)
        catalog["created_at"] = parsed.where(given)
    return catalog
