"""The pure features step: published events and catalogue in, :class:`FeatureSet` out."""

from __future__ import annotations

import numpy as np
import pandas as pd

from core.schema import EVENT_TYPES
from pipelines.features.clean import clean_events, deduplicate
from pipelines.features.encode import prepare_catalog
from pipelines.features.featureset import EVENT_FRAME_DTYPES, FeatureSet
from pipelines.features.sessions import sessionize
from pipelines.features.split import (
    NOT_COMPUTED,
    TEST,
    US_PER_DAY,
    SplitInfo,
    leave_last_out_labels,
    split_counts,
    temporal_boundaries,
    temporal_labels,
)
from pipelines.features.stats import content_columns, interaction_columns
from pipelines.params import FeatureParams

US = 1_000_000


def build_features(events: pd.DataFrame, catalog: pd.DataFrame, params: FeatureParams) -> FeatureSet:
    """Clean, deduplicate, sessionise, weight, encode and split the events; build the item table.

    Args:
        events: all published events (``pipelines.datastore.read_published``; extra columns are ignored).
        catalog: the catalogue snapshot; it defines the item index (sorted by ``item_id``).
        params: the ``features`` section of ``params.yaml``.
    Returns:
        The feature set. ``summary`` counts what each step kept and dropped.
    Raises:
        RecopsError: on missing columns, when nothing is usable, or when the split leaves no training data.
    """
    cat, catalog_counts = prepare_catalog(catalog)
    clean, counts = clean_events(events, pd.Index(cat["item_id"].array))
    keep = deduplicate(clean, params.dedup_seconds)
    counts["dropped_repeat"] = int((~keep).sum())
    clean = clean.take(keep)
    n_users, n_items = len(clean.user_ids), len(cat)

    # (user, time) order: sessions, leave-last-out.
    by_user = np.lexsort((clean.event_type, clean.item, clean.ts_us, clean.user))
    user_sorted = clean.user[by_user]
    session = np.empty(len(clean), dtype=np.int64)
    session[by_user] = sessionize(user_sorted, clean.ts_us[by_user], params.session_gap_minutes * 60)
    loo = np.empty(len(clean), dtype=np.int8)
    loo[by_user] = leave_last_out_labels(user_sorted, clean.item[by_user])
    del by_user, user_sorted

    counts_by_protocol = {"loo": split_counts(clean.user, loo)}
    if params.protocol == "temporal":
        valid_start, test_start, end = temporal_boundaries(clean.ts_us, params.test_days, params.valid_days)
        temporal = temporal_labels(clean.ts_us, valid_start, test_start)
        counts_by_protocol = {"temporal": split_counts(clean.user, temporal), **counts_by_protocol}
        pre_test = clean.ts_us < test_start
    else:  # loo: no time cut; the training cut-offs are the end of the data (see SplitInfo)
        end = (int(clean.ts_us.max()) // US_PER_DAY + 1) * US_PER_DAY
        valid_start = test_start = end
        temporal = np.full(len(clean), NOT_COMPUTED, dtype=np.int8)
        pre_test = loo != TEST
    weight_of_type = np.array([params.event_weights[t] for t in EVENT_TYPES], dtype=np.float32)
    weight = weight_of_type[clean.event_type]

    by_time = np.lexsort((clean.event_type, clean.item, clean.user, clean.ts_us))
    frame = pd.DataFrame(
        {
            "user_idx": clean.user[by_time],
            "item_idx": clean.item[by_time],
            "event_type": clean.event_type[by_time],
            "weight": weight[by_time],
            "ts": clean.ts_us[by_time] // US,
            "session_idx": session[by_time],
            "split": temporal[by_time],
            "loo_split": loo[by_time],
        }
    ).astype(EVENT_FRAME_DTYPES)

    table = content_columns(cat)
    stats = interaction_columns(
        clean.item, clean.user, clean.event_type, weight, clean.ts_us, n_items, test_start,
        params.recent_windows_days, keep=pre_test,
    )  # fmt: skip
    table = pd.concat([table, stats], axis=1)

    split_info = SplitInfo(
        min_ts=int(clean.ts_us.min()) // US,
        max_ts=int(clean.ts_us.max()) // US,
        valid_start=valid_start // US,
        test_start=test_start // US,
        end=end // US,
        valid_days=params.valid_days,
        test_days=params.test_days,
        counts=counts_by_protocol,
        protocol=params.protocol,
    )
    summary = {
        **catalog_counts,
        **counts,
        "events_out": len(frame),
        "users": n_users,
        "items": n_items,
        "items_with_events": int(np.count_nonzero(np.bincount(clean.item, minlength=n_items))),
        "sessions": int(session.max()) + 1,
        "protocol": params.protocol,
        **counts_by_protocol,
    }
    return FeatureSet(
        events=frame,
        item_ids=np.asarray(cat["item_id"].astype(str), dtype=np.str_),
        user_ids=clean.user_ids,
        item_table=table,
        split_info=split_info,
        summary=summary,
        params=params,
    )
