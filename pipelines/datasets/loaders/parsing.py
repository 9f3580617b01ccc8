"""Parsing the columns of source files into schema values, with the schema's column rules applied.

Every parser names the file, the column and the first offending rows (1-based data rows, the header not
counted) in the :class:`~pipelines.datasets.loaders.reading.DataFileError` it raises. The rules are
:mod:`core.schema`'s, the same ones the validation gate checks, so what a parser accepts the gate accepts:

* ids and free text: at most :data:`core.schema.MAX_TEXT_LENGTH` characters; spreadsheet-formula text (a
  leading ``=``, ``+``, ``-``, ``@``, tab or carriage return, unless the whole value is a plain number such
  as ``-1``) is **refused** rather than quoted, so ids stay unchanged and events and catalogue still join;
* ids: empty cells and the null tokens (``NA``, ``N/A``, ``null``, ``None``, ``nan``, any case) are
  missing values, never an id; free text (category, brand) that is missing becomes ``"unknown"``;
* timestamps: ISO 8601 (:data:`core.schema.TIMESTAMP_PATTERN`, a date alone is midnight UTC) or epoch
  numbers;
* prices: a zero price is recorded as unknown (null; the gate wants prices > 0), negative ones are refused;
  quantities: whole numbers, a zero quantity is recorded as unknown (the gate wants >= 1).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, cast

import numpy as np
import pandas as pd

from core.schema import (
    BOOL_TEXT,
    EVENT_TYPES,
    MAX_TEXT_LENGTH,
    null_id_mask,
    parse_timestamp_text,
    too_long_mask,
    unsafe_text_mask,
)
from pipelines.datasets.loaders.reading import DataFileError

#: Longest text accepted in any id, session, category or brand field (the schema's rule).
MAX_STRING_LENGTH: Final = MAX_TEXT_LENGTH
#: Category and brand of items whose source says nothing about them.
UNKNOWN: Final = "unknown"
#: Timestamps outside [1970-01-01, 2100-01-01) are refused (usually a wrong ``--ts-unit``).
TS_MIN: Final = pd.Timestamp("1970-01-01", tz="UTC")
TS_MAX: Final = pd.Timestamp("2100-01-01", tz="UTC")
TS_UNITS: Final[tuple[str, ...]] = ("s", "ms", "iso")
_EXAMPLES: Final = 3


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
    """Refuse over-long text and spreadsheet-formula or blank text (the schema's rules, see above).

    Raises:
        DataFileError: naming the column, the first rows and the values.
    """
    text = values.astype("string")
    uniques = pd.Series(text.dropna().unique(), dtype="string")
    if uniques.empty:
        return
    if bool(too_long_mask(uniques).any()):
        lengths = text.str.len().fillna(0).to_numpy()
        too_long = lengths > MAX_TEXT_LENGTH
        raise DataFileError(
            f"{_where(source, column)}: value(s) longer than {MAX_TEXT_LENGTH} characters "
            f"at {_rows(too_long)} "
            f"(longest: {int(lengths.max()):,} characters)"
        )
    unsafe = uniques[unsafe_text_mask(uniques).to_numpy(dtype=bool)]
    if unsafe.empty:
        return
    mask = text.isin(unsafe.tolist()).fillna(False).to_numpy(dtype=bool)
    raise DataFileError(
        f"{_where(source, column)}: spreadsheet-formula or blank text refused at {_rows(mask)} "
        f"({_examples(text, mask)}); "
        "values may not start with =, +, -, @, tab or carriage return unless they are plain numbers"
    )


def parse_ids(series: pd.Series, column: str, source: object, *, allow_missing: bool = False) -> pd.Series:
    """Ids as strings: integers as written, integral floats without ``.0``, text stripped.

    Empty cells and null tokens (``NA``, ``null``, ...) are missing values.

    Args:
        series: the raw column.
        column: its name (for messages).
        source: the file (for messages).
        allow_missing: return missing ids as ``<NA>`` instead of refusing them.

    Raises:
        DataFileError: missing values (unless allowed), non-integral float ids, or text refused by
            :func:`check_text`.
    """
    if pd.api.types.is_bool_dtype(series):
        raise DataFileError(f"{_where(source, column)}: holds booleans, not ids")
    if pd.api.types.is_integer_dtype(series) and not series.isna().any():
        return series.astype("string")
    if pd.api.types.is_float_dtype(series):
        missing = series.isna().to_numpy()
        _refuse_missing(missing, column, source, allow_missing)
        values = series.to_numpy(dtype="float64")
        present = ~missing
        fractional = present & (values != np.round(np.nan_to_num(values)))
        if fractional.any():
            raise DataFileError(f"{_where(source, column)}: non-integral numeric ids at {_rows(fractional)}")
        out = pd.Series(pd.NA, index=series.index, dtype="string")
        out[present] = pd.Series(values[present].astype(np.int64)).astype("string").to_numpy()
        return out
    text = series.astype("string").str.strip()
    missing = null_id_mask(text).to_numpy(dtype=bool)
    _refuse_missing(missing, column, source, allow_missing)
    text = text.mask(missing, pd.NA)
    check_text(text, column, source)
    return text


def _refuse_missing(missing: np.ndarray, column: str, source: object, allowed: bool) -> None:
    if missing.any() and not allowed:
        raise DataFileError(
            f"{_where(source, column)}: {int(missing.sum()):,} missing value(s) "
            f"(empty, or a null token such as NA or null) at {_rows(missing)}"
        )


def parse_text(series: pd.Series, column: str, source: object, *, default: str = UNKNOWN) -> pd.Series:
    """Free text (category, brand): stripped; missing, empty or null-token values become ``default``."""
    text = series.astype("string").str.strip()
    text = text.mask(null_id_mask(text), pd.NA).fillna(default)
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
        parsed = parse_timestamp_text(text)  # the schema's rule, the one the gate checks
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
    """Prices as float64: missing cells stay missing and zero prices become missing (a zero price says
    nothing about the price; the gate wants prices > 0); NaN, infinite, negative or non-numeric values
    raise."""
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
    known = present & (numbers > 0)
    return pd.Series(np.where(known, numbers, np.nan), index=series.index, dtype="float64")


def parse_quantities(series: pd.Series, column: str, source: object) -> pd.Series:
    """Quantities as Int64: missing cells stay missing and zero quantities become missing (the gate wants
    quantities >= 1); fractions, negatives and non-numbers raise."""
    present = _present(series)
    numbers = _numbers(series)
    bad = present & (~np.isfinite(numbers) | (numbers != np.round(numbers)) | (numbers < 0))
    if bad.any():
        raise DataFileError(
            f"{_where(source, column)}: quantities must be whole numbers >= 0; bad value(s) at {_rows(bad)}: "
            f"{_examples(series, bad)}"
        )
    known = present & (numbers > 0)
    values = pd.array(np.where(known, numbers, 0).astype(np.int64), dtype="Int64")
    values[~known] = pd.NA
    return pd.Series(values, index=series.index)


def parse_bools(series: pd.Series, column: str, source: object) -> pd.Series:
    """Booleans from bool columns or text (true/false, 1/0, yes/no, t/f, y/n); other values raise."""
    if pd.api.types.is_bool_dtype(series) and not series.isna().any():
        return series.astype(bool)
    text = series.astype("string").str.strip().str.lower()
    mapped = text.map(BOOL_TEXT)
    bad = mapped.isna().to_numpy(dtype=bool)
    if bad.any():
        raise DataFileError(
            f"{_where(source, column)}: not a boolean (true/false, 1/0, yes/no, t/f) at {_rows(bad)}: "
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
