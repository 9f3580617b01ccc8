"""Read the published, validated batches under ``data/`` (the layer tracked by ``data.dvc``).

Layout: ``data/<batch_id>/events.parquet`` and ``data/<batch_id>/catalog.parquet``; batch ids sort in time
order (daily batches are ``YYYY-MM-DD``). Published data is never edited in place; see ``pipelines.publish``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from core.errors import RecopsError
from core.schema import CATALOG_FILE, EVENTS_FILE, coerce_catalog, coerce_events

BATCH_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def check_batch_id(batch_id: str) -> str:
    """Return ``batch_id`` if it is a safe folder name, else raise a clear error."""
    if not BATCH_ID.match(batch_id):
        raise RecopsError(
            f"invalid batch id {batch_id!r}: use letters, digits, '.', '_' or '-' (max 128, no leading dot)"
        )
    return batch_id


def published_batches(data_dir: Path) -> list[Path]:
    """Published batch folders in batch-id order (folders holding an events file)."""
    if not data_dir.is_dir():
        return []
    return sorted(
        p
        for p in data_dir.iterdir()
        if p.is_dir() and BATCH_ID.match(p.name) and (p / f"{EVENTS_FILE}.parquet").is_file()
    )


def read_published(data_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """All published events (schema dtypes, ``batch_id`` column added) and the latest catalogue.

    The catalogue is the union of every batch's snapshot where the newest batch wins for each item, so
    price and stock reflect the latest state while items that left the feed keep their attributes.
    """
    batches = published_batches(data_dir)
    if not batches:
        raise RecopsError(
            f"no published batches in {data_dir}: run `recops data generate` and `recops publish`"
        )
    events, catalogs = [], []
    for batch in batches:
        ev = coerce_events(pd.read_parquet(batch / f"{EVENTS_FILE}.parquet"))
        ev["batch_id"] = batch.name
        events.append(ev)
        cat_path = batch / f"{CATALOG_FILE}.parquet"
        if cat_path.is_file():
            cat = coerce_catalog(pd.read_parquet(cat_path))
            cat["batch_id"] = batch.name
            catalogs.append(cat)
    all_events = pd.concat(events, ignore_index=True)
    catalog = pd.concat(catalogs, ignore_index=True) if catalogs else coerce_catalog(pd.DataFrame())
    catalog = catalog.drop_duplicates("item_id", keep="last").drop(columns="batch_id").reset_index(drop=True)
    return all_events, catalog
