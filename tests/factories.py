"""Small, valid-by-construction batches for tests (the real generator is tested on its own)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from core.schema import EVENT_TYPES, coerce_catalog, coerce_events


def make_catalog(n_items: int = 50, seed: int = 0, created: date = date(2025, 12, 1)) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return coerce_catalog(
        pd.DataFrame(
            {
                "item_id": [f"i{i:05d}" for i in range(n_items)],
                "category": [f"cat{i % 5}" for i in range(n_items)],
                "brand": [f"brand{i % 7}" for i in range(n_items)],
                "price": np.round(rng.uniform(1, 100, n_items), 2),
                "in_stock": rng.random(n_items) > 0.1,
                "created_at": [datetime(created.year, created.month, created.day, tzinfo=UTC)] * n_items,
            }
        )
    )


def make_events(
    day: date = date(2026, 1, 1), n: int = 500, n_users: int = 40, n_items: int = 50, seed: int = 0
) -> pd.DataFrame:
    """``n`` events inside the UTC day ``day`` over users ``u0..`` and the items of :func:`make_catalog`."""
    rng = np.random.default_rng(seed)
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    seconds = np.sort(rng.integers(0, 86_399, n))
    types = rng.choice(EVENT_TYPES, n, p=[0.6, 0.25, 0.1, 0.05])
    users = rng.integers(0, n_users, n)
    prices = np.round(rng.uniform(1, 100, n), 2)
    return coerce_events(
        pd.DataFrame(
            {
                "event_id": [f"{day.isoformat()}-{seed}-{i}" for i in range(n)],
                "user_id": [f"u{u}" for u in users],
                "item_id": [f"i{i:05d}" for i in rng.integers(0, n_items, n)],
                "event_type": types,
                "ts": [start + timedelta(seconds=int(s)) for s in seconds],
                "session_id": [f"s{u}-{day.isoformat()}" for u in users],
                "price": prices,
                "quantity": pd.array(np.where(types == "purchase", 1, pd.NA), dtype="Int64"),
            }
        )
    )


def write_batch(
    root: Path,
    day: date = date(2026, 1, 1),
    events: pd.DataFrame | None = None,
    catalog: pd.DataFrame | None = None,
) -> Path:
    """Write a batch folder ``root/YYYY-MM-DD`` and return it."""
    batch = root / day.isoformat()
    batch.mkdir(parents=True, exist_ok=True)
    (events if events is not None else make_events(day)).to_parquet(batch / "events.parquet", index=False)
    (catalog if catalog is not None else make_catalog()).to_parquet(batch / "catalog.parquet", index=False)
    return batch
