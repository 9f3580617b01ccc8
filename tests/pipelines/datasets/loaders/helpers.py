"""Helpers of the loader tests: where the public raw data lives and schema assertions."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from core.schema import (
    CATALOG_COLUMN_NAMES,
    EVENT_COLUMN_NAMES,
    EVENT_TYPES,
    coerce_catalog,
    coerce_events,
)
from pipelines.datasets.loaders.common import shared_data_dir

REPO = Path(__file__).resolve().parents[4]
TEST_KEY = "loader-tests-key"


def raw_data_dir() -> Path:
    """``$RECOPS_SHARED_DATA`` or ``<repo>/../shared/data/raw`` (see ``shared_data_dir``)."""
    return shared_data_dir()


def assert_schema(events: pd.DataFrame, catalog: pd.DataFrame) -> None:
    """Both tables already have exactly the schema's columns and dtypes, and they fit each other."""
    assert tuple(events.columns) == EVENT_COLUMN_NAMES
    assert tuple(catalog.columns) == CATALOG_COLUMN_NAMES
    pd.testing.assert_frame_equal(coerce_events(events), events)
    pd.testing.assert_frame_equal(coerce_catalog(catalog), catalog)
    assert str(events["ts"].dtype) == "datetime64[us, UTC]"
    assert set(events["event_type"].unique()) <= set(EVENT_TYPES)
    for column in ("event_id", "user_id", "item_id", "session_id", "event_type"):
        assert events[column].notna().all(), column
    assert events["event_id"].is_unique
    assert events["ts"].is_monotonic_increasing
    assert catalog["item_id"].is_unique
    assert set(events["item_id"]) <= set(catalog["item_id"])
    for column in ("category", "brand", "created_at"):
        assert catalog[column].notna().all(), column
    # created_at never after the item's first event
    first = events.groupby("item_id")["ts"].min()
    created = catalog.set_index("item_id")["created_at"].reindex(first.index)
    assert (created <= first).all()
    prices = events["price"].dropna()
    assert (prices >= 0).all() and prices.map(lambda p: p != float("inf")).all()
