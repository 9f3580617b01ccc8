"""Shared helpers of the dataset loaders: reading files, parsing columns, finishing tables, writing batches.

Reading (:func:`read_table`) never guesses silently: CSV cells are read as text (only empty cells are
missing, so ``nan``, ``inf`` or ``NULL`` reach the parsers as written), Parquet columns keep their stored
types, and every problem raises :class:`DataFileError` with a message that names the file and, where it
applies, the column and the first offending rows (1-based data rows, the header not counted).

Text rules for every string field a loader takes into the schema (ids, session, category, brand):

* at most :data:`MAX_STRING_LENGTH` characters;
* values that a spreadsheet would run as a formula (first character ``=``, ``+``, ``-``, ``@``, tab or
  carriage return) are **refused**, unless the whole value is a plain number such as ``-1`` or ``+3.5``.
  Refusing (instead of quoting) keeps ids unchanged, so events and catalogue still join.

Batches (:func:`write_batches`) are folders ``out_dir/<batch_id>/`` with ``events.parquet``,
``catalog.parquet`` and ``manifest.json`` (the batch's event-time window). Daily batches are cut by UTC day;
each day's catalogue holds the items its events reference plus the items created that day, so the union of
all batches (what :func:`pipelines.datastore.read_published` builds) is the whole catalogue without writing a
growing snapshot every day.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final, Literal, cast

import numpy as np
import pandas as pd

from core.errors import RecopsError
from core.privacy import pseudonymize
from core.schema import (
    CATALOG_COLUMN_NAMES,
    CATALOG_FILE,
    EVENT_TYPES,
    EVENTS_FILE,
    coerce_catalog,
    coerce_events,
)
from pipelines.datastore import check_batch_id

#: Longest text accepted in any id, session, category or brand field.
MAX_STRING_LENGTH: Final = 1024
#: First characters that make a spreadsheet evaluate a cell (OWASP "CSV injection").
FORMULA_PREFIXES: Final = ("=", "+", "-", "@", "\t", "\r")
#: Gap that starts a new session when a source has no session ids.
SESSION_GAP_MINUTES: Final = 30.0
#: Category and brand of items whose source says nothing about them.
UNKNOWN: Final = "unknown"
#: Timestamps outside [1970-01-01, 2100-01-01) are refused (usually a wrong ``--ts-unit``).
TS_MIN: Final = pd.Timestamp("1970-01-01", tz="UTC")
TS_MAX: Final = pd.Timestamp("2100-01-01", tz="UTC")
MANIFEST_FILE: Final = "manifest.json"

TsUnit = Literal["s", "ms", "iso"]
TS_UNITS: Final[tuple[str, ...]] = ("s", "ms", "iso")

_PARQUET_MAGIC: Final = b"PAR1"
_PARQUET_SUFFIXES: Final = (".parquet", ".pq")
_CSV_DELIMITERS: Final = ",;\t|"
_NUMBER: Final = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_EXAMPLES: Final = 3


class DataFileError(RecopsError, ValueError):
    """An input file cannot be loaded; the message names the file and, where it applies, the column."""


# --------------------------------------------------------------------------------------------- locations


def shared_data_dir() -> Path:
    """Folder of the public raw datasets: ``$RECOPS_SHARED_DATA``, else ``<repo>/../shared/data/raw``.

    A checkout nested deeper (e.g. a CI clone in a sub-folder) also finds the first ``shared/data/raw`` next
    to one of its ancestors; when none exists the conventional path is returned for the error message.
    """
    env = os.environ.get("RECOPS_SHARED_DATA")
    if env:
        return Path(env).expanduser()
    repo = Path(__file__).resolve().parents[3]
    for folder in (repo, *repo.parents):
        candidate = folder.parent / "shared" / "data" / "raw"
        if candidate.is_dir():
            return candidate
    return repo.parent / "shared" / "data" / "raw"


# --------------------------------------------------------------------------------------------- reading


def read_table(
    path: Path,
    *,
    encoding: str | None = None,
    sep: str | None = None,
    names: Sequence[str] | None = None,
    columns: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Read a CSV/TSV text file or a Parquet file into a DataFrame, with clear errors.

    Parquet is recognised by its suffix (``.parquet``, ``.pq``) or its magic bytes; anything else is read as
    delimited text whose delimiter is sniffed among ``, ; TAB |`` unless ``sep`` is given.

    Args:
        path: the file.
        encoding: text encoding of a CSV file; default UTF-8 (a UTF-8 byte-order mark is accepted).
        sep: the delimiter of a text file (skips sniffing).
        names: column names of a text file without a header line.
        columns: columns that must be present; only these are returned.

    Returns:
        The table. Text columns hold strings (empty cells are missing); Parquet columns keep their types,
        except float columns holding NaN (not null), which come back as objects so NaN stays visible.

    Raises:
        DataFileError: missing, empty (0 bytes), header-only, undecodable, ragged or corrupt file, or a
            required column is absent.
    """
    path = Path(path)
    if path.is_dir():
        raise DataFileError(f"{path}: is a folder, expected a file")
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            head = fh.read(65536)
    except FileNotFoundError as exc:
        raise DataFileError(f"{path}: file not found") from exc
    except OSError as exc:
        raise DataFileError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
    if size == 0:
        raise DataFileError(f"{path}: file is empty (0 bytes)")
    if path.suffix.lower() in _PARQUET_SUFFIXES or head.startswith(_PARQUET_MAGIC):
        df = _read_parquet(path, columns)
    else:
        df = _read_text(path, head, encoding=encoding, sep=sep, names=names)
        if columns is not None:
            require_columns(df, columns, path)
            df = df[list(columns)]
    if df.empty:
        raise DataFileError(f"{path}: has a header but no data rows")
    return df


def require_columns(df: pd.DataFrame, columns: Sequence[str], source: object) -> None:
    """Raise :class:`DataFileError` naming every column of ``columns`` that ``df`` lacks."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        have = ", ".join(repr(str(c)) for c in list(df.columns)[:20])
        raise DataFileError(
            f"{source}: missing column(s) {', '.join(repr(c) for c in missing)} (the file has: {have})"
        )


def _read_parquet(path: Path, columns: Sequence[str] | None) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    try:
        schema_names = pq.read_schema(path).names
        if columns is not None:
            missing = [c for c in columns if c not in schema_names]
            if missing:
                raise DataFileError(
                    f"{path}: missing column(s) {', '.join(repr(c) for c in missing)} "
                    f"(the file has: {', '.join(repr(c) for c in schema_names[:20])})"
                )
        table = pq.read_table(path, columns=list(columns) if columns is not None else None)
    except DataFileError:
        raise
    except (pa.ArrowException, OSError, ValueError) as exc:
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise DataFileError(f"{path}: not a readable Parquet file (truncated or corrupt?): {reason}") from exc
    df = table.to_pandas()
    # pandas turns both null and NaN into NaN: keep NaN (a bad value) apart from null (a missing value).
    for name in table.column_names:
        column = table.column(name)
        if pa.types.is_floating(column.type) and pc.any(pc.is_nan(column)).as_py():
            df[name] = pd.Series(column.to_pylist(), index=df.index, dtype=object)
    return cast(pd.DataFrame, df)


def _read_text(
    path: Path, head: bytes, *, encoding: str | None, sep: str | None, names: Sequence[str] | None
) -> pd.DataFrame:
    codec = encoding or "utf-8-sig"
    if encoding is None and head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise DataFileError(
            f"{path}: file is UTF-16 encoded (byte-order mark); "
            "re-encode it as UTF-8 or pass --encoding utf-16"
        )
    try:
        sample = head.decode(codec, errors="ignore")
    except LookupError as exc:
        raise DataFileError(f"{path}: unknown encoding {codec!r}") from exc
    if "\x00" in sample:
        raise DataFileError(
            f"{path}: holds NUL bytes (binary data, or UTF-16 without a byte-order mark?); "
            "pass the right --encoding"
        )
    delimiter = sep or _sniff_delimiter(sample)
    try:
        df = pd.read_csv(
            path,
            sep=delimiter,
            header=None if names is not None else "infer",
            names=list(names) if names is not None else None,
            dtype=str,
            keep_default_na=False,
            na_values=[""],
            encoding=codec,
            encoding_errors="strict",
            skip_blank_lines=True,
            engine="c",
        )
    except UnicodeDecodeError as exc:
        raise DataFileError(
            f"{path}: not valid {encoding or 'UTF-8'} "
            f"(byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); "
            "re-encode the file as UTF-8 or pass --encoding (e.g. latin-1)"
        ) from exc
    except pd.errors.EmptyDataError as exc:
        raise DataFileError(f"{path}: no header and no rows") from exc
    except pd.errors.ParserError as exc:
        raise DataFileError(
            f"{path}: not a well-formed delimited file: {str(exc).splitlines()[0][:200]}"
        ) from exc
    except OSError as exc:
        raise DataFileError(f"{path}: cannot be read ({exc})") from exc
    df.columns = [str(c).strip() for c in df.columns]
    duplicated = sorted({c for c in df.columns if list(df.columns).count(c) > 1})
    if duplicated:
        raise DataFileError(f"{path}: duplicate column name(s) {', '.join(map(repr, duplicated))}")
    return df


def _sniff_delimiter(sample: str) -> str:
    lines = [line for line in sample.splitlines()[:50] if line.strip()]
    if not lines:
        return ","
    if len(lines) > 1 and len(sample) == 65536:
        lines = lines[:-1]  # the last line of a truncated sample may be cut
    try:
        return csv.Sniffer().sniff("\n".join(lines), delimiters=_CSV_DELIMITERS).delimiter
    except csv.Error:
        counts = {d: lines[0].count(d) for d in _CSV_DELIMITERS}
        best = max(counts, key=lambda d: counts[d])
        return best if counts[best] > 0 else ","


# --------------------------------------------------------------------------------------------- parsing


def _rows(mask: np.ndarray | pd.Series) -> str:
    """The first few 1-based data rows where ``mask`` holds, as text."""
    positions = np.flatnonzero(np.asarray(mask, dtype=bool))
    shown = ", ".join(str(p + 1) for p in positions[:_EXAMPLES])
    more = f" and {len(positions) - _EXAMPLES} more" if len(positions) > _EXAMPLES else ""
    return f"row(s) {shown}{more}"


def _examples(series: pd.Series, mask: np.ndarray | pd.Series) -> str:
    values = pd.Series(series.to_numpy()[np.asarray(mask, dtype=bool)][:_EXAMPLES])
    return ", ".join(repr(_shorten(str(v))) for v in values)


def _shorten(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _where(source: object, column: str) -> str:
    return f"{source}: column {column!r}"


def check_text(values: pd.Series, column: str, source: object) -> None:
    """Refuse over-long text and spreadsheet-formula text (see the module docstring).

    Raises:
        DataFileError: naming the column, the first rows and the values.
    """
    text = values.astype("string")
    uniques = pd.Series(text.dropna().unique(), dtype="string")
    if uniques.empty:
        return
    if int(uniques.str.len().max()) > MAX_STRING_LENGTH:
        lengths = text.str.len().fillna(0).to_numpy()
        too_long = lengths > MAX_STRING_LENGTH
        raise DataFileError(
            f"{_where(source, column)}: value(s) longer than {MAX_STRING_LENGTH} characters "
            f"at {_rows(too_long)} "
            f"(longest: {int(lengths.max()):,} characters)"
        )
    first = uniques.str.slice(0, 1)
    suspicious = uniques[first.isin(FORMULA_PREFIXES).fillna(False).to_numpy(dtype=bool)]
    if suspicious.empty:
        return
    formulas = {v for v in suspicious.tolist() if not _NUMBER.match(str(v).strip())}
    if formulas:
        mask = text.isin(sorted(formulas)).fillna(False).to_numpy(dtype=bool)
        raise DataFileError(
            f"{_where(source, column)}: spreadsheet-formula text refused at {_rows(mask)} "
            f"({_examples(text, mask)}); "
            "values may not start with =, +, -, @, tab or carriage return unless they are plain numbers"
        )


def parse_ids(series: pd.Series, column: str, source: object) -> pd.Series:
    """Ids as strings: integers as written, integral floats without ``.0``, text stripped.

    Raises:
        DataFileError: missing values, non-integral float ids, or text refused by :func:`check_text`.
    """
    if pd.api.types.is_bool_dtype(series):
        raise DataFileError(f"{_where(source, column)}: holds booleans, not ids")
    if pd.api.types.is_integer_dtype(series) and not series.isna().any():
        return series.astype("string")
    if pd.api.types.is_float_dtype(series):
        missing = series.isna().to_numpy()
        if missing.any():
            raise DataFileError(
                f"{_where(source, column)}: {int(missing.sum()):,} missing value(s) at {_rows(missing)}"
            )
        values = series.to_numpy(dtype="float64")
        fractional = values != np.round(values)
        if fractional.any():
            raise DataFileError(f"{_where(source, column)}: non-integral numeric ids at {_rows(fractional)}")
        return pd.Series(values.astype(np.int64), index=series.index).astype("string")
    text = series.astype("string").str.strip()
    missing = (text.isna() | (text == "")).to_numpy(dtype=bool)
    if missing.any():
        raise DataFileError(
            f"{_where(source, column)}: {int(missing.sum()):,} missing value(s) at {_rows(missing)}"
        )
    check_text(text, column, source)
    return text


def parse_text(series: pd.Series, column: str, source: object, *, default: str = UNKNOWN) -> pd.Series:
    """Free text (category, brand): stripped, missing or empty values replaced by ``default``."""
    text = series.astype("string").str.strip()
    text = text.mask(text == "", pd.NA).fillna(default)
    check_text(text, column, source)
    return text


def parse_timestamps(series: pd.Series, column: str, source: object, unit: str = "iso") -> pd.Series:
    """Timestamps as ``datetime64[us, UTC]``.

    Args:
        series: the raw column.
        column: its name (for messages).
        source: the file (for messages).
        unit: ``"iso"`` for ISO-8601 text (naive values are UTC; datetime columns are accepted as they are),
            ``"s"`` or ``"ms"`` for unix epoch numbers (fractions allowed, kept to the microsecond).

    Raises:
        DataFileError: missing values, values that do not parse (mixed formats in one column), numbers
            where ISO text was expected, or times outside 1970..2100 (usually a wrong unit).
    """
    if unit not in TS_UNITS:
        raise DataFileError(f"unknown timestamp unit {unit!r}: use one of {', '.join(TS_UNITS)}")
    missing = series.isna().to_numpy(dtype=bool)
    if series.dtype == object or pd.api.types.is_string_dtype(series):
        missing = missing | (series.astype("string").str.strip() == "").fillna(True).to_numpy(dtype=bool)
    if missing.any():
        raise DataFileError(
            f"{_where(source, column)}: {int(missing.sum()):,} missing timestamp(s) at {_rows(missing)}"
        )
    if isinstance(series.dtype, pd.DatetimeTZDtype):
        parsed = series.dt.tz_convert("UTC")
    elif pd.api.types.is_datetime64_dtype(series):
        parsed = series.dt.tz_localize("UTC")
    elif unit == "iso":
        if pd.api.types.is_numeric_dtype(series):
            raise DataFileError(
                f"{_where(source, column)}: holds numbers, not ISO-8601 text; "
                "pass --ts-unit s or --ts-unit ms"
            )
        text = series.astype("string").str.strip()
        parsed = pd.to_datetime(text, utc=True, format="ISO8601", errors="coerce")
        bad = parsed.isna().to_numpy(dtype=bool)
        if bad.any():
            hint = (
                "; numbers need --ts-unit s or ms"
                if bool(text[bad].str.fullmatch(r"\d+(\.\d+)?").all())
                else ""
            )
            raise DataFileError(
                f"{_where(source, column)}: {int(bad.sum()):,} value(s) are not ISO-8601 timestamps "
                "(mixed formats?) "
                f"at {_rows(bad)}: {_examples(text, bad)}{hint}"
            )
    else:
        numbers = _numbers(series)
        bad = np.isnan(numbers) | ~np.isfinite(numbers)
        if bad.any():
            raise DataFileError(
                f"{_where(source, column)}: {int(bad.sum()):,} value(s) are not epoch numbers ({unit}) at "
                f"{_rows(bad)}: {_examples(series, bad)}"
            )
        scale = 1_000_000 if unit == "s" else 1_000
        limit = TS_MAX.value // 1000  # microseconds
        micros = np.round(numbers * scale)
        out_of_range = (micros < 0) | (micros >= limit)
        if out_of_range.any():
            raise DataFileError(
                f"{_where(source, column)}: epoch values outside 1970..2100 at {_rows(out_of_range)} "
                f"({_examples(series, out_of_range)}); is --ts-unit {unit} right?"
            )
        parsed = pd.Series(pd.to_datetime(micros.astype(np.int64), unit="us", utc=True), index=series.index)
    parsed = parsed.astype("datetime64[us, UTC]")
    out_of_range = ((parsed < TS_MIN) | (parsed >= TS_MAX)).to_numpy(dtype=bool)
    if out_of_range.any():
        raise DataFileError(
            f"{_where(source, column)}: timestamps outside 1970..2100 at {_rows(out_of_range)}"
        )
    return cast(pd.Series, parsed)


def _numbers(series: pd.Series) -> np.ndarray:
    """Float values of a numeric or text column (text that is not a number becomes NaN; caller checks)."""
    if pd.api.types.is_bool_dtype(series):
        return np.full(len(series), np.nan)
    if pd.api.types.is_numeric_dtype(series) and series.dtype != object:
        return np.asarray(series.to_numpy(dtype="float64", na_value=np.nan), dtype="float64")
    if series.dtype == object:
        converted = pd.to_numeric(
            series.map(lambda v: v.strip() if isinstance(v, str) else v), errors="coerce"
        )
    else:
        converted = pd.to_numeric(series.astype("string").str.strip(), errors="coerce")
    return np.asarray(converted.to_numpy(dtype="float64", na_value=np.nan), dtype="float64")


def _present(series: pd.Series) -> np.ndarray:
    """Cells that hold a value (not null, not empty text); a float NaN kept by :func:`read_table` counts."""
    if series.dtype == object:
        return np.array(
            [not (v is None or (isinstance(v, str) and not v.strip())) for v in series], dtype=bool
        )
    present = series.notna().to_numpy(dtype=bool)
    if pd.api.types.is_string_dtype(series):
        present = present & (series.astype("string").str.strip() != "").fillna(False).to_numpy(dtype=bool)
    return present


def parse_prices(series: pd.Series, column: str, source: object) -> pd.Series:
    """Prices as float64: missing cells stay missing; NaN, infinite, negative or non-numeric values raise."""
    present = _present(series)
    numbers = _numbers(series)
    not_number = present & np.isnan(numbers)
    if series.dtype != object and pd.api.types.is_string_dtype(series):
        text = series.astype("string").str.strip().str.lower()
        nan_text = text.isin(["nan", "+nan", "-nan"]).fillna(False).to_numpy(dtype=bool)
        if (not_number & ~nan_text).any():
            bad = not_number & ~nan_text
            raise DataFileError(
                f"{_where(source, column)}: not a number at {_rows(bad)}: {_examples(series, bad)}"
            )
    elif series.dtype == object:
        is_float = np.array([isinstance(v, float) for v in series], dtype=bool)
        if (not_number & ~is_float).any():
            bad = not_number & ~is_float
            raise DataFileError(
                f"{_where(source, column)}: not a number at {_rows(bad)}: {_examples(series, bad)}"
            )
    nonfinite = present & ~np.isfinite(numbers)
    if nonfinite.any():
        raise DataFileError(
            f"{_where(source, column)}: NaN or infinite price(s) at {_rows(nonfinite)}: "
            f"{_examples(series, nonfinite)}"
        )
    negative = present & (numbers < 0)
    if negative.any():
        raise DataFileError(
            f"{_where(source, column)}: negative price(s) at {_rows(negative)}: {_examples(series, negative)}"
        )
    return pd.Series(np.where(present, numbers, np.nan), index=series.index, dtype="float64")


def parse_quantities(series: pd.Series, column: str, source: object) -> pd.Series:
    """Quantities as Int64: missing cells stay missing; fractions, negatives and non-numbers raise."""
    present = _present(series)
    numbers = _numbers(series)
    bad = present & (~np.isfinite(numbers) | (numbers != np.round(numbers)) | (numbers < 0))
    if bad.any():
        raise DataFileError(
            f"{_where(source, column)}: quantities must be whole numbers >= 0; bad value(s) at {_rows(bad)}: "
            f"{_examples(series, bad)}"
        )
    values = pd.array(np.where(present, numbers, 0).astype(np.int64), dtype="Int64")
    values[~present] = pd.NA
    return pd.Series(values, index=series.index)


_BOOLS: Final[Mapping[str, bool]] = {
    "true": True, "false": False, "1": True, "0": False, "yes": True, "no": False,
    "t": True, "f": False, "y": True, "n": False, "1.0": True, "0.0": False,
}  # fmt: skip


def parse_bools(series: pd.Series, column: str, source: object) -> pd.Series:
    """Booleans from bool columns or text (true/false, 1/0, yes/no, t/f, y/n); other values raise."""
    if pd.api.types.is_bool_dtype(series) and not series.isna().any():
        return series.astype(bool)
    text = series.astype("string").str.strip().str.lower()
    mapped = text.map(_BOOLS)
    bad = mapped.isna().to_numpy(dtype=bool)
    if bad.any():
        raise DataFileError(
            f"{_where(source, column)}: not a boolean (true/false, 1/0, yes/no) at {_rows(bad)}: "
            f"{_examples(series, bad)}"
        )
    return mapped.astype(bool)


def parse_event_types(
    series: pd.Series, column: str, source: object, mapping: Mapping[str, str] | None = None
) -> pd.Series:
    """Event types: raw values are stripped, translated by ``mapping`` (raw -> type), then lower-cased.

    Raises:
        DataFileError: missing values or types outside :data:`core.schema.EVENT_TYPES`.
    """
    text = series.astype("string").str.strip()
    if mapping:
        text = text.map(lambda v: mapping.get(v, v) if isinstance(v, str) else v).astype("string")
    text = text.str.lower()
    bad = (~text.isin(EVENT_TYPES)).fillna(True).to_numpy(dtype=bool)
    if bad.any():
        unknown = sorted({str(v) for v in text[bad].tolist()})[:5]
        raise DataFileError(
            f"{_where(source, column)}: unknown event type(s) {', '.join(map(repr, unknown))} "
            f"at {_rows(bad)}; allowed: {', '.join(EVENT_TYPES)} "
            '(translate codes with --event-type-map, e.g. "0=view,1=purchase")'
        )
    return text


# --------------------------------------------------------------------------------------------- finishing


def _micros(ts: pd.Series) -> np.ndarray:
    """Microseconds since the epoch of a timestamp column."""
    return np.asarray(ts.astype("datetime64[us, UTC]").astype("int64").to_numpy(), dtype=np.int64)


def sessionize(user_ids: pd.Series, ts: pd.Series, gap_minutes: float = SESSION_GAP_MINUTES) -> pd.Series:
    """Session ids ``<user_id>:<n>``: a user's events are one session until a silence longer than the gap.

    ``n`` counts a user's sessions from 0 in time order, so the ids are deterministic.
    """
    users = user_ids.astype("string").to_numpy(dtype=object)
    codes, _ = pd.factorize(users, sort=False)
    micros = _micros(ts)
    order = np.lexsort((micros, codes))
    c, t = codes[order], micros[order]
    new = np.ones(len(order), dtype=bool)
    if len(order) > 1:
        gap = int(gap_minutes * 60 * 1_000_000)
        new[1:] = (c[1:] != c[:-1]) | ((t[1:] - t[:-1]) > gap)
    session_number = pd.Series(new.astype(np.int64)).groupby(c).cumsum().to_numpy() - 1
    numbers = np.empty(len(order), dtype=np.int64)
    numbers[order] = session_number
    return user_ids.astype("string") + ":" + pd.Series(numbers, index=user_ids.index).astype("string")


def hash_event_ids(events: pd.DataFrame, prefix: str = "e") -> pd.Series:
    """Deterministic event ids: a 64-bit hash of (user, item, type, ts, n-th repeat of that tuple).

    Computed after pseudonymisation, so the ids do not reveal raw user ids.
    """
    keys = pd.DataFrame(
        {
            "user_id": events["user_id"].astype("string"),
            "item_id": events["item_id"].astype("string"),
            "event_type": events["event_type"].astype("string"),
            "ts": _micros(events["ts"]),
        }
    )
    keys["repeat"] = keys.groupby(list(keys.columns), sort=False).cumcount()
    hashes = pd.util.hash_pandas_object(keys, index=False).to_numpy()
    return pd.Series([f"{prefix}{h:016x}" for h in hashes.tolist()], index=events.index, dtype="string")


def complete_catalog(events: pd.DataFrame, catalog: pd.DataFrame | None) -> pd.DataFrame:
    """The catalogue of ``catalog``'s items plus every item of ``events`` it lacks.

    Added items (and missing attributes) get category and brand ``"unknown"``, price null, ``in_stock``
    True and ``created_at`` = first time the item is seen in ``events`` (the first event overall for items
    never seen).
    """
    first_seen = events.groupby("item_id", sort=True)["ts"].min()
    if catalog is None or catalog.empty:
        catalog = pd.DataFrame({"item_id": pd.Series([], dtype="string")})
    catalog = catalog.copy()
    catalog["item_id"] = catalog["item_id"].astype("string")
    extra = first_seen.index[~first_seen.index.isin(catalog["item_id"])]
    catalog = pd.concat(
        [catalog, pd.DataFrame({"item_id": pd.Series(extra, dtype="string")})], ignore_index=True
    )
    for name, default in (("category", UNKNOWN), ("brand", UNKNOWN), ("in_stock", True)):
        if name not in catalog.columns:
            catalog[name] = default
        else:
            catalog[name] = catalog[name].astype(object).where(catalog[name].notna(), default)
    if "price" not in catalog.columns:
        catalog["price"] = np.nan
    seen = catalog["item_id"].map(first_seen)
    fallback = events["ts"].min()
    if "created_at" not in catalog.columns:
        catalog["created_at"] = seen.fillna(fallback)
    else:
        created = catalog["created_at"].astype("datetime64[us, UTC]")
        catalog["created_at"] = created.fillna(seen).fillna(fallback)
    catalog["in_stock"] = catalog["in_stock"].astype(bool)
    return catalog[list(CATALOG_COLUMN_NAMES)]


def finish(
    events: pd.DataFrame,
    catalog: pd.DataFrame | None,
    *,
    key: str | None,
    session_gap_minutes: float = SESSION_GAP_MINUTES,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Turn parsed events and catalogue into schema tables.

    Pseudonymises ``user_id`` when ``key`` is given, sessionizes events without ``session_id`` (gap rule),
    hashes missing ``event_id`` values (:func:`hash_event_ids`), completes the catalogue
    (:func:`complete_catalog`), coerces both tables to the schema and sorts events by time (stable, so
    source order breaks ties) and the catalogue by item id.
    """
    events = events.copy()
    events["user_id"] = events["user_id"].astype("string")
    if key is not None:
        events["user_id"] = pseudonymize(events["user_id"], key)
    if "session_id" not in events.columns or events["session_id"].isna().all():
        events["session_id"] = sessionize(events["user_id"], events["ts"], session_gap_minutes)
    if "event_id" not in events.columns or events["event_id"].isna().all():
        events["event_id"] = hash_event_ids(events)
    out = coerce_events(events)
    out = out.sort_values("ts", kind="stable").reset_index(drop=True)
    cat = coerce_catalog(complete_catalog(out, catalog))
    cat = cat.sort_values("item_id", kind="stable").reset_index(drop=True)
    return out, cat


def limit_days(events: pd.DataFrame, catalog: pd.DataFrame, days: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Keep the first ``days`` UTC calendar days of events (from the first event's day).

    The catalogue keeps the items those events reference and the items created before the cut.
    """
    if days < 1:
        raise RecopsError(f"--limit-days must be >= 1 (got {days})")
    if events.empty:
        return events, catalog
    cut = events["ts"].min().floor("D") + pd.Timedelta(days=days)
    kept = events[events["ts"] < cut].reset_index(drop=True)
    keep_items = catalog["item_id"].isin(kept["item_id"]) | (catalog["created_at"] < cut)
    return kept, catalog[keep_items].reset_index(drop=True)


# --------------------------------------------------------------------------------------------- batches


def write_batches(
    events: pd.DataFrame,
    catalog: pd.DataFrame,
    out_dir: Path,
    *,
    daily: bool,
    batch_id: str | None = None,
    source: str | None = None,
    progress: bool = False,
) -> list[Path]:
    """Write events and catalogue as landing batches ``out_dir/<batch_id>/``.

    Each batch folder gets ``events.parquet``, ``catalog.parquet`` and ``manifest.json`` (``batch_id``,
    ``source``, ``rows``, ``window_start``, ``window_end``: the UTC event-time window, end exclusive).

    Args:
        events: schema events (coerced again here).
        catalog: schema catalogue.
        out_dir: parent folder of the batch folders (created if needed).
        daily: one batch per UTC day ``YYYY-MM-DD``; its catalogue holds the items its events reference
            plus the items created that day (items created before the first day go to the first batch,
            after the last day to the last). Otherwise one batch with everything.
        batch_id: name of the single batch (default: the last event day, ``YYYY-MM-DD``); not allowed with
            ``daily``.
        source: recorded in the manifest.
        progress: show a progress bar.

    Returns:
        The batch folders in batch order, including ones that already held identical content.

    Raises:
        RecopsError: no events, a bad batch id, or an existing batch folder with different content
            (nothing is written in that case).
    """
    from tqdm import tqdm

    events = coerce_events(events).sort_values("ts", kind="stable").reset_index(drop=True)
    catalog = coerce_catalog(catalog).sort_values("item_id", kind="stable").reset_index(drop=True)
    if events.empty:
        raise RecopsError("no events to write")
    if daily and batch_id is not None:
        raise RecopsError("a batch id names a single batch: drop --batch-id or use --single-batch")
    out_dir = Path(out_dir)
    day = events["ts"].dt.floor("D")
    first, last = day.iloc[0], day.iloc[-1]
    plan: list[tuple[str, pd.DataFrame, pd.DataFrame, pd.Timestamp, pd.Timestamp]] = []
    if daily:
        created_day = catalog["created_at"].dt.floor("D").clip(lower=first, upper=last)
        day_values = day.to_numpy()
        days = pd.unique(day_values)
        starts = np.searchsorted(day_values, days, side="left")
        ends = np.searchsorted(day_values, days, side="right")
        for d, lo, hi in zip(days, starts, ends, strict=True):
            stamp = pd.Timestamp(d)
            stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp
            ev = events.iloc[lo:hi].reset_index(drop=True)
            cat = catalog[catalog["item_id"].isin(ev["item_id"]) | (created_day == stamp)].reset_index(
                drop=True
            )
            plan.append((stamp.strftime("%Y-%m-%d"), ev, cat, stamp, stamp + pd.Timedelta(days=1)))
    else:
        name = check_batch_id(batch_id) if batch_id is not None else last.strftime("%Y-%m-%d")
        plan.append((name, events, catalog, first, last + pd.Timedelta(days=1)))

    payloads: list[tuple[Path, dict[str, bytes]]] = []
    for name, ev, cat, start, end in tqdm(plan, desc="batches", unit="batch", disable=not progress):
        manifest = {
            "batch_id": name,
            "source": source,
            "rows": len(ev),
            "catalog_rows": len(cat),
            "window_start": start.isoformat(),
            "window_end": end.isoformat(),
        }
        files = {
            f"{EVENTS_FILE}.parquet": _parquet_bytes(ev),
            f"{CATALOG_FILE}.parquet": _parquet_bytes(cat),
            MANIFEST_FILE: (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode("utf-8"),
        }
        target = out_dir / name
        if target.exists() and not _same_content(target, files):
            raise RecopsError(
                f"batch folder {target} already exists with different content; "
                "remove it or choose another --out"
            )
        payloads.append((target, files))

    out_dir.mkdir(parents=True, exist_ok=True)
    for target, files in payloads:
        if target.exists():
            continue  # identical content already there
        tmp = out_dir / f".{target.name}.tmp-{os.getpid()}"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        for file_name, data in files.items():
            (tmp / file_name).write_bytes(data)
        os.replace(tmp, target)
    return [target for target, _ in payloads]


def _parquet_bytes(df: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    df.to_parquet(buffer, index=False)
    return buffer.getvalue()


def _same_content(folder: Path, files: Mapping[str, bytes]) -> bool:
    if not folder.is_dir():
        return False
    present = {p.name for p in folder.iterdir()}
    if present != set(files):
        return False
    return all((folder / name).read_bytes() == data for name, data in files.items())
