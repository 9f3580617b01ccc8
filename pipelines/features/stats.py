"""Per-item table: catalogue attributes, content codes and interaction statistics.

Statistics use only events before the test split (before the temporal test boundary; under leave-one-out,
every event but each user's held-out last interaction), so they can feed a model that is evaluated on the
test split without leaking it; recency windows are measured back from the boundary (the data's end under
leave-one-out).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from core.schema import EVENT_TYPES
from pipelines.features.encode import category_codes, price_buckets

N_PRICE_BUCKETS = 10
US_PER_DAY = 86_400 * 1_000_000


def content_columns(catalog: pd.DataFrame) -> pd.DataFrame:
    """Catalogue attributes (sorted by ``item_id``) plus ``item_idx``, category/brand codes and price bucket.

    Codes index the sorted distinct values; -1 marks an unknown category, brand or price.
    """
    table = pd.DataFrame({"item_idx": np.arange(len(catalog), dtype=np.int32)})
    for column in ("item_id", "category", "brand", "price", "in_stock", "created_at"):
        table[column] = catalog[column].to_numpy() if column == "in_stock" else catalog[column].array
    table["category_idx"], _ = category_codes(catalog["category"])
    table["brand_idx"], _ = category_codes(catalog["brand"])
    table["price_bucket"] = price_buckets(catalog["price"], N_PRICE_BUCKETS)
    return table


def interaction_columns(
    item: NDArray[np.int64],
    user: NDArray[np.int64],
    event_type: NDArray[np.int8],
    weight: NDArray[np.float32],
    ts_us: NDArray[np.int64],
    n_items: int,
    boundary_us: int,
    windows_days: Sequence[int],
    keep: NDArray[np.bool_] | None = None,
) -> pd.DataFrame:
    """Per-item statistics of the events strictly before ``boundary_us`` (and, if given, where ``keep``).

    ``keep`` leaves out the held-out events of a protocol that does not cut by time (leave-one-out).

    Columns: ``n_<event type>`` counts, ``n_events``, ``n_users`` (distinct), ``popularity`` (sum of event
    weights), ``popularity_<d>d`` (weights within ``d`` days before the boundary), ``first_seen`` and
    ``last_seen`` (UTC, NaT for items never seen).
    """
    before = ts_us < boundary_us if keep is None else keep & (ts_us < boundary_us)
    item, user, ts_us = item[before], user[before], ts_us[before]
    event_type, weight = event_type[before], weight[before]
    out: dict[str, object] = {}
    for code, name in enumerate(EVENT_TYPES):
        out[f"n_{name}"] = np.bincount(item[event_type == code], minlength=n_items).astype(np.int64)
    out["n_events"] = np.bincount(item, minlength=n_items).astype(np.int64)
    n_u = int(user.max()) + 1 if len(user) else 1
    pairs = np.unique(item * n_u + user)  # distinct (item, user) pairs
    out["n_users"] = np.bincount(pairs // n_u, minlength=n_items).astype(np.int64)
    out["popularity"] = np.bincount(item, weights=weight, minlength=n_items).astype(np.float64)
    for days in windows_days:
        recent = ts_us >= boundary_us - days * US_PER_DAY
        out[f"popularity_{days}d"] = np.bincount(item[recent], weights=weight[recent], minlength=n_items)
    first = np.full(n_items, np.iinfo(np.int64).max, dtype=np.int64)
    last = np.full(n_items, np.iinfo(np.int64).min, dtype=np.int64)
    np.minimum.at(first, item, ts_us)
    np.maximum.at(last, item, ts_us)
    seen = first <= last
    out["first_seen"] = _utc(np.where(seen, first, 0), seen)
    out["last_seen"] = _utc(np.where(seen, last, 0), seen)
    return pd.DataFrame(out)


def _utc(us: NDArray[np.int64], valid: NDArray[np.bool_]) -> pd.Series:
    values = pd.Series(pd.to_datetime(us, unit="us", utc=True)).astype("datetime64[us, UTC]")
    return values.where(valid)
