"""Cleaning and deduplication of events."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.errors import RecopsError
from pipelines.features.clean import clean_events, deduplicate
from pipelines.features.encode import prepare_catalog
from tests.pipelines.features.frames import catalog, events_frame


def _catalogue_ids() -> pd.Index:
    cat, _ = prepare_catalog(catalog())
    return pd.Index(cat["item_id"].array)


def test_clean_drops_each_kind_of_unusable_row_and_counts_it() -> None:
    ev = events_frame(
        [
            ("u1", "i00001", "view", 0),
            ("u1", "i00001", "view", 10),  # repeated event id below
            ("u2", "not-in-catalogue", "view", 20),
            ("u3", "i00002", "teleport", 30),
            ("u4", "i00003", "click", 40),
        ]
    )
    ev.loc[1, "event_id"] = "e0"
    ev.loc[4, "user_id"] = pd.NA
    clean, counts = clean_events(ev, _catalogue_ids())
    assert counts == {
        "events_in": 5,
        "dropped_null_field": 1,
        "dropped_unknown_event_type": 1,
        "dropped_unknown_item": 1,
        "dropped_duplicate_event_id": 1,
    }
    assert len(clean) == 1
    # Only u1 is left, so only u1 gets a user index; item i00001 is index 1 of the sorted catalogue.
    assert clean.user_ids.tolist() == ["u1"]
    assert clean.user.tolist() == [0] and clean.item.tolist() == [1]


def test_user_index_follows_sorted_ids_not_row_order() -> None:
    ev = events_frame(
        [("zed", "i00001", "view", 0), ("amy", "i00002", "view", 1), ("bob", "i00003", "view", 2)]
    )
    clean, _ = clean_events(ev, _catalogue_ids())
    assert clean.user_ids.tolist() == ["amy", "bob", "zed"]
    assert clean.user.tolist() == [2, 0, 1]


def test_clean_refuses_when_nothing_is_usable() -> None:
    ev = events_frame([("u1", "unknown", "view", 0)])
    with pytest.raises(RecopsError, match="no usable event"):
        clean_events(ev, _catalogue_ids())


def test_clean_names_missing_columns() -> None:
    with pytest.raises(RecopsError, match="item_id"):
        clean_events(
            pd.DataFrame({"user_id": ["u"], "ts": pd.to_datetime(["2026-01-01"], utc=True)}), _catalogue_ids()
        )


def _dedup(rows: list[tuple[str, str, str, float]], window: float) -> list[bool]:
    clean, _ = clean_events(events_frame(rows), _catalogue_ids())
    return deduplicate(clean, window).tolist()


def test_repeats_closer_than_the_window_merge_into_the_first() -> None:
    rows = [
        ("u1", "i00001", "view", 0.0),
        ("u1", "i00001", "view", 1.5),  # 1.5 s after the previous: repeat
        ("u1", "i00001", "view", 4.0),  # 2.5 s after the previous: new event
        ("u1", "i00001", "click", 4.5),  # other type: never a repeat of a view
        ("u2", "i00001", "view", 1.0),  # other user
        ("u1", "i00002", "view", 1.0),  # other item
    ]
    assert _dedup(rows, 2.0) == [True, False, True, True, True, True]


def test_window_edge_is_exclusive_and_bursts_chain() -> None:
    # exactly 2.0 s apart: not closer than the window, kept
    assert _dedup([("u1", "i00001", "view", 0.0), ("u1", "i00001", "view", 2.0)], 2.0) == [True, True]
    # a burst every second for 5 s collapses to its first event (each is a repeat of the one before)
    burst = [("u1", "i00001", "view", float(s)) for s in range(6)]
    assert _dedup(burst, 2.0) == [True, False, False, False, False, False]


def test_zero_window_still_merges_exact_copies_only() -> None:
    rows = [("u1", "i00001", "view", 0.0), ("u1", "i00001", "view", 0.0), ("u1", "i00001", "view", 0.001)]
    assert _dedup(rows, 0.0) == [True, False, True]


def test_dedup_does_not_depend_on_row_order() -> None:
    rows = [("u1", "i00001", "view", float(s) * 0.7) for s in range(10)] + [("u2", "i00002", "click", 3.0)]
    forward = np.array(_dedup(rows, 2.0))
    backward = np.array(_dedup(rows[::-1], 2.0))[::-1]
    assert forward.tolist() == backward.tolist()
    assert forward.sum() == 2  # one event per (user, item, type)
