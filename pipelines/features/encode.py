"""Dense integer indices for items and users, and integer codes for event types.

Items are indexed over the whole catalogue sorted by ``item_id`` and users over the cleaned events' users
sorted by ``user_id``, so the same data always gives the same indices whatever the row order.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from core.errors import RecopsError
from core.schema import CATALOG_COLUMN_NAMES, EVENT_TYPES

#: Integer code of each event type: its position in :data:`core.schema.EVENT_TYPES`.
EVENT_TYPE_CODES = {name: code for code, name in enumerate(EVENT_TYPES)}


def prepare_catalog(catalog: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """The catalogue sorted by ``item_id``, one row per item, plus counts of what was dropped.

    Rows without an ``item_id`` are dropped; when an id occurs twice the last row wins (as in
    :func:`pipelines.datastore.read_published`).

    Raises:
        RecopsError: when a catalogue column is missing or no item is left.
    """
    missing = [c for c in CATALOG_COLUMN_NAMES if c not in catalog.columns]
    if missing:
        raise RecopsError(f"catalog lacks column(s) {', '.join(missing)}: pass pipelines.datastore output")
    n_in = len(catalog)
    cat = catalog.loc[catalog["item_id"].notna(), list(CATALOG_COLUMN_NAMES)]
    n_null = n_in - len(cat)
    cat = cat.drop_duplicates("item_id", keep="last")
    n_dup = n_in - n_null - len(cat)
    cat = cat.sort_values("item_id", kind="stable").reset_index(drop=True)
    if cat.empty:
        raise RecopsError("the catalogue holds no item: cannot index items")
    counts = {"catalog_in": n_in, "catalog_dropped_null_id": n_null, "catalog_dropped_duplicate_id": n_dup}
    return cat, counts


def encode_items(item_ids: pd.Series, catalogue_ids: pd.Index) -> NDArray[np.int64]:
    """Index of each id in ``catalogue_ids`` (sorted, unique); -1 for ids outside the catalogue or null."""
    codes = catalogue_ids.get_indexer(pd.Index(item_ids.astype(catalogue_ids.dtype)))
    return np.asarray(codes, dtype=np.int64)


def encode_event_types(event_types: pd.Series) -> NDArray[np.int8]:
    """Code of each event type (see :data:`EVENT_TYPE_CODES`); -1 for unknown or null types."""
    codes = pd.Index(EVENT_TYPES, dtype="string").get_indexer(pd.Index(event_types.astype("string")))
    return np.asarray(codes, dtype=np.int8)


def factorize_sorted(values: pd.Series) -> tuple[NDArray[np.int64], NDArray[np.str_]]:
    """Dense codes of ``values`` in sorted order of the distinct values, and those values as strings."""
    codes, uniques = pd.factorize(values, sort=True)
    labels = np.asarray(pd.Index(uniques).astype(str), dtype=np.str_)
    return np.asarray(codes, dtype=np.int64), labels


def category_codes(values: pd.Series) -> tuple[NDArray[np.int32], list[str]]:
    """Codes of a text attribute (sorted distinct values; -1 for null) and the sorted values."""
    codes, uniques = pd.factorize(values, sort=True, use_na_sentinel=True)
    return np.asarray(codes, dtype=np.int32), [str(u) for u in uniques]


def price_buckets(prices: pd.Series, n_buckets: int) -> NDArray[np.int8]:
    """Quantile bucket ``0..n_buckets-1`` of each price over the known prices; -1 where price is unknown."""
    values = prices.to_numpy(dtype=np.float64, na_value=np.nan)
    known = np.isfinite(values)
    out = np.full(len(values), -1, dtype=np.int8)
    if not known.any():
        return out
    edges = np.quantile(values[known], np.linspace(0, 1, n_buckets + 1)[1:-1])
    out[known] = np.searchsorted(edges, values[known], side="right").astype(np.int8)
    return out
