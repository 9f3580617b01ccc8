"""Cutting loaded tables into landing batches and writing them with the one batch writer.

Batches are folders ``out_dir/<batch_id>/`` with ``events.parquet``, ``catalog.parquet`` and
``manifest.json`` (the batch's event-time window), written by :func:`pipelines.batch_io.write_batch_files`.
Daily batches are cut by UTC day; each day's catalogue holds the items its events reference plus the items
created that day, so the union of all batches (what :func:`pipelines.datastore.read_published` builds) is
the whole catalogue without writing a growing snapshot every day.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.errors import RecopsError
from core.schema import coerce_catalog, coerce_events
from pipelines.batch_io import MANIFEST_FILE, batch_files, same_content, write_batch_files
from pipelines.datastore import check_batch_id

__all__ = ["MANIFEST_FILE", "batch_manifest", "write_batches"]


def batch_manifest(
    batch_id: str,
    events: pd.DataFrame,
    catalog: pd.DataFrame,
    start: pd.Timestamp,
    end: pd.Timestamp,
    source: str | None,
) -> dict[str, Any]:
    """A batch's ``manifest.json``: id, source, row counts, the UTC event-time window (end exclusive)."""
    return {
        "batch_id": batch_id,
        "source": source,
        "rows": len(events),
        "catalog_rows": len(catalog),
        "window_start": start.isoformat(),
        "window_end": end.isoformat(),
    }


def write_batches(
    events: pd.DataFrame,
    catalog: pd.DataFrame,
    out_dir: Path,
    *,
    daily: bool,
    batch_id: str | None = None,
    source: str | None = None,
    progress: bool = False,
) -> list[Path]:
    """Write events and catalogue as landing batches ``out_dir/<batch_id>/``.

    Args:
        events: schema events (coerced again here).
        catalog: schema catalogue.
        out_dir: parent folder of the batch folders (created if needed).
        daily: one batch per UTC day ``YYYY-MM-DD``; its catalogue holds the items its events reference
            plus the items created that day (items created before the first day go to the first batch,
            after the last day to the last). Otherwise one batch with everything.
        batch_id: name of the single batch (default: the last event day, ``YYYY-MM-DD``); not allowed with
            ``daily``.
        source: recorded in the manifest.
        progress: show a progress bar.

    Returns:
        The batch folders in batch order, including ones that already held identical content.

    Raises:
        RecopsError: no events, a bad batch id, tables that break the schema's column rules, or an existing
            batch folder with different content (nothing is written in these cases).
    """
    from tqdm import tqdm

    events = coerce_events(events).sort_values("ts", kind="stable").reset_index(drop=True)
    catalog = coerce_catalog(catalog).sort_values("item_id", kind="stable").reset_index(drop=True)
    if events.empty:
        raise RecopsError("no events to write")
    if daily and batch_id is not None:
        raise RecopsError("a batch id names a single batch: drop --batch-id or use --single-batch")
    out_dir = Path(out_dir)
    day = events["ts"].dt.floor("D")
    first, last = day.iloc[0], day.iloc[-1]
    plan: list[tuple[str, pd.DataFrame, pd.DataFrame, pd.Timestamp, pd.Timestamp]] = []
    if daily:
        created_day = catalog["created_at"].dt.floor("D").clip(lower=first, upper=last)
        day_values = day.to_numpy()
        days = pd.unique(day_values)
        starts = np.searchsorted(day_values, days, side="left")
        ends = np.searchsorted(day_values, days, side="right")
        # each event's row in the catalogue, found once (a per-day isin over text ids is slow)
        item_rows = pd.Index(catalog["item_id"]).get_indexer(events["item_id"])
        for d, lo, hi in zip(days, starts, ends, strict=True):
            stamp = pd.Timestamp(d)
            stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp
            ev = events.iloc[lo:hi].reset_index(drop=True)
            referenced = np.zeros(len(catalog), dtype=bool)
            rows = item_rows[lo:hi]
            referenced[rows[rows >= 0]] = True
            cat = catalog[referenced | (created_day == stamp).to_numpy()].reset_index(drop=True)
            plan.append((stamp.strftime("%Y-%m-%d"), ev, cat, stamp, stamp + pd.Timedelta(days=1)))
    else:
        name = check_batch_id(batch_id) if batch_id is not None else last.strftime("%Y-%m-%d")
        plan.append((name, events, catalog, first, last + pd.Timedelta(days=1)))

    # Every batch is built and checked before the first is written: one conflict writes nothing.
    payloads: list[tuple[Path, dict[str, bytes]]] = []
    for name, ev, cat, start, end in tqdm(plan, desc="batches", unit="batch", disable=not progress):
        files = batch_files(ev, cat, batch_manifest(name, ev, cat, start, end, source))
        target = out_dir / name
        if target.exists() and not same_content(target, files):
            raise RecopsError(
                f"batch folder {target} already exists with different content; "
                "remove it or choose another --out"
            )
        payloads.append((target, files))
    out_dir.mkdir(parents=True, exist_ok=True)
    for target, files in payloads:
        write_batch_files(target, files, if_exists="refuse")
    return [target for target, _ in payloads]
