"""Small event tables written by hand for the features tests."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import pandas as pd

from core.schema import coerce_events
from tests.factories import make_catalog

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def events_frame(rows: Iterable[tuple[str, str, str, float]]) -> pd.DataFrame:
    """Events from ``(user_id, item_id, event_type, seconds after 2026-01-01 UTC)`` tuples."""
    rows = list(rows)
    return coerce_events(
        pd.DataFrame(
            {
                "event_id": [f"e{i}" for i in range(len(rows))],
                "user_id": [r[0] for r in rows],
                "item_id": [r[1] for r in rows],
                "event_type": [r[2] for r in rows],
                "ts": [T0 + timedelta(seconds=r[3]) for r in rows],
                "session_id": ["src"] * len(rows),
            }
        )
    )


DAY = 86_400.0


def catalog(n_items: int = 20) -> pd.DataFrame:
    """The factory catalogue: items ``i00000..``, categories ``cat0..cat4``."""
    return make_catalog(n_items=n_items)
