"""Shared helpers of the dataset loaders, gathered in one import (each lives in its own module).

* :mod:`~pipelines.datasets.loaders.reading`: reading source files (CSV/TSV sniffed, Parquet) with clear
  errors (:class:`DataFileError`), and where the public raw data lives (:func:`shared_data_dir`);
* :mod:`~pipelines.datasets.loaders.parsing`: parsing columns into schema values under the schema's column
  rules (the ones the validation gate checks);
* :mod:`~pipelines.datasets.loaders.finishing`: anonymous rows, sessions, repeats at coarse time
  resolution, event ids and the catalogue (:func:`finish`, :class:`LoadNotes`);
* :mod:`~pipelines.datasets.loaders.batches`: cutting the tables into landing batches written by the one
  batch writer of :mod:`pipelines.batch_io` (:func:`write_batches`).
"""

from __future__ import annotations

from pipelines.datasets.loaders.batches import MANIFEST_FILE, write_batches
from pipelines.datasets.loaders.finishing import (
    ANONYMOUS_POLICIES,
    REPEAT_POLICIES,
    SESSION_GAP_MINUTES,
    AnonymousPolicy,
    LoadNotes,
    RepeatPolicy,
    complete_catalog,
    finish,
    hash_event_ids,
    limit_days,
    merge_repeats,
    sessionize,
    time_resolution,
)
from pipelines.datasets.loaders.parsing import (
    MAX_STRING_LENGTH,
    TS_MAX,
    TS_MIN,
    TS_UNITS,
    UNKNOWN,
    check_text,
    parse_bools,
    parse_event_types,
    parse_ids,
    parse_prices,
    parse_quantities,
    parse_text,
    parse_timestamps,
)
from pipelines.datasets.loaders.reading import DataFileError, read_table, require_columns, shared_data_dir

__all__ = [
    "ANONYMOUS_POLICIES",
    "MANIFEST_FILE",
    "MAX_STRING_LENGTH",
    "REPEAT_POLICIES",
    "SESSION_GAP_MINUTES",
    "TS_MAX",
    "TS_MIN",
    "TS_UNITS",
    "UNKNOWN",
    "AnonymousPolicy",
    "DataFileError",
    "LoadNotes",
    "RepeatPolicy",
    "check_text",
    "complete_catalog",
    "finish",
    "hash_event_ids",
    "limit_days",
    "merge_repeats",
    "parse_bools",
    "parse_event_types",
    "parse_ids",
    "parse_prices",
    "parse_quantities",
    "parse_text",
    "parse_timestamps",
    "read_table",
    "require_columns",
    "sessionize",
    "shared_data_dir",
    "time_resolution",
    "write_batches",
]
