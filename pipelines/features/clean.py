"""Cleaning: keep events that can be indexed, then merge near-duplicate events.

Everything works on integer codes (see :mod:`pipelines.features.encode`), never on Python objects per row.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from core.errors import RecopsError
from pipelines.features.encode import encode_event_types, encode_items

REQUIRED_EVENT_FIELDS = ("user_id", "item_id", "event_type", "ts")
US_PER_SECOND = 1_000_000


@dataclass(frozen=True)
class EncodedEvents:
    """Cleaned events as parallel integer arrays (row order of the input, minus dropped rows)."""

    user: NDArray[np.int64]  # dense user index, users sorted by user_id
    item: NDArray[np.int64]  # item index into the sorted catalogue
    event_type: NDArray[np.int8]  # code into core.schema.EVENT_TYPES
    ts_us: NDArray[np.int64]  # unix microseconds, UTC
    user_ids: NDArray[np.str_]  # user index -> user_id

    def __len__(self) -> int:
        return len(self.user)

    def take(self, index: NDArray[np.int64] | NDArray[np.bool_]) -> EncodedEvents:
        """The events selected by a boolean mask or an index array (users are not re-indexed)."""
        return EncodedEvents(
            self.user[index], self.item[index], self.event_type[index], self.ts_us[index], self.user_ids
        )


def timestamps_us(ts: pd.Series) -> NDArray[np.int64]:
    """UTC timestamps as unix microseconds (NaT becomes the minimum int64)."""
    if not isinstance(ts.dtype, pd.DatetimeTZDtype):
        raise RecopsError(f"events.ts must be timezone-aware UTC datetimes, got {ts.dtype}")
    return np.asarray(ts.dt.as_unit("us").array.asi8, dtype=np.int64)


def clean_events(events: pd.DataFrame, catalogue_ids: pd.Index) -> tuple[EncodedEvents, dict[str, int]]:
    """Drop events that cannot be used and encode the rest.

    In order: rows with a null user, item, event type or timestamp; rows whose event type is not one of
    ``EVENT_TYPES``; rows whose item is not in the catalogue; repeated ``event_id``s (the first is kept).

    Args:
        events: events with the schema dtypes (``pipelines.datastore.read_published`` output).
        catalogue_ids: the sorted, unique catalogue item ids.
    Returns:
        The encoded events and the number of rows each rule dropped.
    Raises:
        RecopsError: when a required column is missing or no event survives.
    """
    missing = [c for c in REQUIRED_EVENT_FIELDS if c not in events.columns]
    if missing:
        raise RecopsError(f"events lack column(s) {', '.join(missing)}: pass pipelines.datastore output")
    n_in = len(events)
    ts_us = timestamps_us(events["ts"])
    null = events["user_id"].isna().to_numpy() | events["item_id"].isna().to_numpy()
    null |= events["event_type"].isna().to_numpy() | events["ts"].isna().to_numpy()
    type_code = encode_event_types(events["event_type"])
    unknown_type = ~null & (type_code < 0)
    item = encode_items(events["item_id"], catalogue_ids)
    unknown_item = ~null & ~unknown_type & (item < 0)
    keep = ~(null | unknown_type | unknown_item)
    dup_event_id = np.zeros(n_in, dtype=bool)
    if "event_id" in events.columns:
        ids = events["event_id"]
        dup_event_id = (
            keep
            & ids.notna().to_numpy()
            & ids.where(pd.Series(keep, index=ids.index)).duplicated().to_numpy()
        )
        keep &= ~dup_event_id
    user_codes, user_labels = _factorize_users(events["user_id"], keep)
    counts = {
        "events_in": n_in,
        "dropped_null_field": int(null.sum()),
        "dropped_unknown_event_type": int(unknown_type.sum()),
        "dropped_unknown_item": int(unknown_item.sum()),
        "dropped_duplicate_event_id": int(dup_event_id.sum()),
    }
    kept = EncodedEvents(user_codes[keep], item[keep], type_code[keep], ts_us[keep], user_labels)
    if not len(kept):
        raise RecopsError(f"no usable event among {n_in}: {counts}")
    return kept, counts


def _factorize_users(
    user_ids: pd.Series, keep: NDArray[np.bool_]
) -> tuple[NDArray[np.int64], NDArray[np.str_]]:
    """Dense user codes over the kept rows' users, in sorted ``user_id`` order."""
    codes, uniques = pd.factorize(user_ids, sort=True)
    codes = np.asarray(codes, dtype=np.int64)
    used = np.zeros(len(uniques), dtype=bool)
    used[codes[keep]] = True
    remap = np.cumsum(used, dtype=np.int64) - 1
    labels = np.asarray(pd.Index(uniques)[used].astype(str), dtype=np.str_)
    return np.where(keep, remap[np.maximum(codes, 0)], -1), labels


def deduplicate(ev: EncodedEvents, window_seconds: float) -> NDArray[np.bool_]:
    """Mask of events to keep after merging repeats of the same (user, item, event type).

    An event is a repeat when the previous event with the same user, item and type happened less than
    ``window_seconds`` earlier, or at the very same microsecond (so ``0`` still merges exact copies). The
    rule chains: a burst of clicks one second apart collapses to its first click even if it lasts longer
    than the window.
    """
    if not len(ev):
        return np.zeros(0, dtype=bool)
    order = np.lexsort((ev.ts_us, ev.event_type, ev.item, ev.user))
    u, i, t, ts = ev.user[order], ev.item[order], ev.event_type[order], ev.ts_us[order]
    same_key = np.zeros(len(order), dtype=bool)
    same_key[1:] = (u[1:] == u[:-1]) & (i[1:] == i[:-1]) & (t[1:] == t[:-1])
    gap = np.zeros(len(order), dtype=np.int64)
    gap[1:] = ts[1:] - ts[:-1]
    window_us = round(window_seconds * US_PER_SECOND)
    repeat = same_key & ((gap < window_us) | (gap == 0))
    keep = np.empty(len(order), dtype=bool)
    keep[order] = ~repeat
    return keep
