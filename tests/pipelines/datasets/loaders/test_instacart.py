"""Instacart sample loader: counts of SOURCE.md and the synthetic clock."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from pipelines.datasets.loaders.instacart import ANCHOR_LAST_DAY, load_instacart
from tests.pipelines.datasets.loaders.helpers import assert_schema


@pytest.fixture(scope="module")
def csv_path(raw_dir: Path) -> Path:
    return raw_dir / "instacart-sample" / "df_sample.csv"


@pytest.fixture(scope="module")
def loaded(csv_path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    return load_instacart(csv_path.parent, key=None)


@pytest.fixture(scope="module")
def raw(csv_path: Path) -> pd.DataFrame:
    return pd.read_csv(csv_path)


def test_counts_match_source_md(loaded: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    events, catalog = loaded
    assert len(events) == 150_000
    assert events["user_id"].nunique() == 593
    assert events["item_id"].nunique() == 14_190
    assert events["session_id"].nunique() == 15_183
    assert len(catalog) == 14_190


def test_schema_and_mapping(loaded: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    events, catalog = loaded
    assert_schema(events, catalog)
    assert (events["event_type"] == "purchase").all()
    assert events["price"].isna().all() and events["quantity"].isna().all()
    assert (catalog["category"] == "unknown").all() and catalog["price"].isna().all()


def test_clock_follows_order_number_and_ends_on_anchor(
    loaded: tuple[pd.DataFrame, pd.DataFrame], raw: pd.DataFrame
) -> None:
    events, _ = loaded
    orders = raw.drop_duplicates("order_id")[["order_id", "user_id", "order_number", "order_hour_of_day"]]
    first_ts = events.groupby("session_id")["ts"].min()
    orders = orders.assign(ts=orders["order_id"].astype(str).map(first_ts).to_numpy())
    orders = orders.sort_values(["user_id", "order_number"])
    gaps = orders.groupby("user_id")["ts"].diff().dropna()
    assert (gaps >= pd.Timedelta(hours=1)).all()  # strictly later, at least one hour, in order_number order
    last = orders.groupby("user_id")["ts"].max()
    assert (last.dt.floor("D") >= ANCHOR_LAST_DAY).all()
    # Most last orders sit exactly on the anchor day at their own hour (bumps are rare).
    on_anchor = orders.groupby("user_id").tail(1)
    exact = on_anchor["ts"] == ANCHOR_LAST_DAY + pd.to_timedelta(on_anchor["order_hour_of_day"], unit="h")
    assert exact.mean() > 0.9


def test_days_since_prior_order_spacing(loaded: tuple[pd.DataFrame, pd.DataFrame], raw: pd.DataFrame) -> None:
    events, _ = loaded
    orders = raw.drop_duplicates("order_id").sort_values(["user_id", "order_number"])
    first_ts = events.groupby("session_id")["ts"].min()
    day = orders["order_id"].astype(str).map(first_ts).dt.floor("D")
    day_gap = day.groupby(orders["user_id"].to_numpy()).diff().dt.days
    expected = orders["days_since_prior_order"]
    mask = day_gap.notna() & (orders["order_hour_of_day"].groupby(orders["user_id"].to_numpy()).diff() >= 0)
    matches = (day_gap[mask] == expected[mask]).mean()
    assert matches > 0.99


def test_items_in_basket_order(loaded: tuple[pd.DataFrame, pd.DataFrame], raw: pd.DataFrame) -> None:
    events, _ = loaded
    order_id = str(raw["order_id"].iloc[0])
    basket = events[events["session_id"] == order_id].sort_values("ts")
    expected = raw[raw["order_id"] == raw["order_id"].iloc[0]].sort_values("add_to_cart_order")
    assert basket["item_id"].tolist() == expected["product_id"].astype(str).tolist()
    assert basket["ts"].diff().dropna().eq(pd.Timedelta(seconds=1)).all()
