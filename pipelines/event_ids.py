"""Event ids are unique across the published data, whatever the batches are called.

The gate checks uniqueness inside one batch and, for daily batches, that events fall on the batch's day. A
batch named otherwise (``backfill-3``, ``2026-01-05-resend``) has no time window, so a copy of a published
day under another name would double its events. :class:`PublishedEventIds` holds the event ids of every
published batch (read once per publish run, one column per file) and refuses a batch whose ids are already
published in *another* batch, naming that batch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from core.errors import RecopsError
from core.schema import EVENTS_FILE
from pipelines.datastore import published_batches, read_published_table


class DuplicateEvents(RecopsError):
    """A batch holds event ids that another published batch already holds."""


class PublishedEventIds:
    """The event ids of the batches under ``data_dir``, kept up to date as a publish run places batches."""

    def __init__(self, data_dir: Path) -> None:
        self._data_dir = data_dir
        self._by_batch: dict[str, np.ndarray] | None = None

    def _load(self) -> dict[str, np.ndarray]:
        if self._by_batch is None:
            self._by_batch = {
                batch.name: read_published_table(batch / f"{EVENTS_FILE}.parquet", ["event_id"])["event_id"]
                .astype(str)
                .to_numpy()
                for batch in published_batches(self._data_dir)
            }
        return self._by_batch

    def clashes(self, batch_id: str, event_ids: pd.Series) -> dict[str, int]:
        """Other published batches holding any of ``event_ids``: batch id -> how many of them."""
        by_batch = {b: ids for b, ids in self._load().items() if b != batch_id and len(ids)}
        if not by_batch or event_ids.empty:
            return {}
        known = pd.Series(np.concatenate(list(by_batch.values())))
        holders = np.repeat(np.array(list(by_batch), dtype=object), [len(v) for v in by_batch.values()])
        hit = known.isin(pd.Index(event_ids.astype(str).unique())).to_numpy(dtype=bool)
        counts = pd.Series(holders[hit]).value_counts()
        return {str(b): int(n) for b, n in counts.items()}

    def refuse_duplicates(self, batch_id: str, event_ids: pd.Series) -> None:
        """Raise :class:`DuplicateEvents` if another published batch holds any of these event ids."""
        found = self.clashes(batch_id, event_ids)
        if found:
            total = sum(found.values())
            where = ", ".join(f"{b} ({n})" for b, n in sorted(found.items())[:5])
            raise DuplicateEvents(
                f"batch {batch_id} holds {total} event id(s) already published in batch(es) {where}; nothing "
                "was published. Event ids must be unique across the published data: if this is a re-send of "
                f"a published batch, publish it under that batch's id (with --replace if it changed), or "
                f"unpublish the other one first (`recops data unpublish <batch>`)"
            )

    def placed(self, batch_id: str, event_ids: pd.Series) -> None:
        """Record that ``batch_id`` now holds ``event_ids`` (after a publish or replace)."""
        self._load()[batch_id] = event_ids.astype(str).to_numpy()
